#!/usr/bin/env python3
"""Integration tests of sendmail(1), the submission command (issue 8).

farmd runs an smtpserver farm that also listens on unix:public/submit, the
socket sendmail speaks SMTP to.  A stand-in router (a Python unix socket
server at run/private/router) answers RouteRequests with OK and the
smtpserver's recipient checks (VerifyRequest) with OK, or with 550 5.1.1
for local parts starting "nosuch" and 451 for "tempfail".  The built
tools/sendmail runs with -C <test config> -o run_directory=<run dir>; the
tests read what it queued back from the queue files (envelope and content)
and check its exit statuses.  Python 3 standard library only; prints
"N passed, N failed".
"""

import ctypes
import os
import pwd
import re
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_SRCDIR = os.path.abspath(os.environ.get("top_srcdir") or os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(TOP_SRCDIR, "tests", "smtpserver"))
import smtplib_helpers as H  # noqa: E402
from smtplib_helpers import Queue, farmlib, wait_until  # noqa: E402
import zfproto as P  # noqa: E402

SENDMAIL = os.path.join(H.TOP_BUILDDIR, "tools", "sendmail")
HOST = "mx.example.test"
OK, TEMPFAIL, PERMFAIL = 1, 2, 3
VERIFY, VERIFY_REPLY = 22, 23
SANITIZERS = bool(os.environ.get("ZF_SANITIZERS"))
EX_USAGE, EX_DATAERR, EX_NOUSER, EX_UNAVAILABLE = 64, 65, 67, 69
EX_SOFTWARE, EX_TEMPFAIL, EX_CONFIG = 70, 75, 78
LOGIN = pwd.getpwuid(os.getuid()).pw_name
PR_SET_CHILD_SUBREAPER = 36

FD = QUEUE = ROUTER = None
LAST_LOG = ""


class FakeRouter(P.FrameServer):
    """RouteReply OK for every RouteRequest; VerifyReply by local part."""

    def __init__(self, path):
        super().__init__(path, self.answer)

    def answer(self, f):
        if P.ROUTE in f:
            return P.frame(f[2][0], P.ROUTE_REPLY, P.pb_varint(1, OK) + P.pb_varint(3, 1))
        if VERIFY in f:
            addr = P.fields(f[VERIFY][0])[1][0].decode()
            if addr.startswith("nosuch"):
                body = (P.pb_varint(1, PERMFAIL) + P.pb_varint(2, 550) + P.pb_bytes(3, "5.1.1")
                        + P.pb_bytes(4, "no such user"))
            elif addr.startswith("tempfail"):
                body = P.pb_varint(1, TEMPFAIL) + P.pb_varint(2, 451)
            else:
                body = P.pb_varint(1, OK)
            return P.frame(f[2][0], VERIFY_REPLY, body)
        return None

    def verified(self):
        with self.lock:
            return [P.fields(f[VERIFY][0])[1][0].decode() for f in self.frames if VERIFY in f]


def setUpModule():
    global FD, QUEUE, ROUTER
    if not os.access(SENDMAIL, os.X_OK) or H.binaries_missing():
        raise unittest.SkipTest("not built")
    FD = farmlib.FarmdInstance(tag="sendmail")
    g = dict(H.BASE_GLOBALS)
    g.update({"router_endpoint": "unix:private/router", "smtpd_verify_recipients": "yes",
              "myhostname": HOST, "message_size_limit": "64m", "log_level": "info"})
    FD.write_config([H.smtp_farm("smtpserver", H.free_port(),
                                 extra_listen="submit=unix:public/submit")], g)
    os.makedirs(os.path.join(FD.run, "private"), mode=0o700, exist_ok=True)
    ROUTER = FakeRouter(os.path.join(FD.run, "private", "router"))
    try:
        FD.start()
        wait_until(lambda: os.path.exists(os.path.join(FD.run, "public", "submit")), 10,
                   what="the submit socket")
    except Exception:
        sys.stderr.write(FD.log())
        FD.cleanup()
        raise
    QUEUE = Queue(os.path.join(FD.run, "queue"))


def tearDownModule():
    global LAST_LOG
    if FD is not None:
        LAST_LOG = FD.log()
        FD.cleanup()
    if ROUTER is not None:
        ROUTER.close()


# ---- running sendmail ----

def env_for(extra=None):
    env = dict(os.environ)
    for k in ("NAME", "ZFARM_CONFIG"):
        env.pop(k, None)
    env.update(extra or {})
    return env


def sendmail(args, data=b"", env=None, config=True):
    """Run sendmail; (exit status, stdout, stderr)."""
    if isinstance(data, str):
        data = data.encode()
    cmd = [SENDMAIL]
    if config:
        cmd += ["-C", FD.conf, "-o", "run_directory=" + FD.run]
    p = subprocess.run(cmd + list(args), input=data, capture_output=True, env=env_for(env),
                       cwd=FD.tmp, timeout=120)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


class Msg:
    """A queued message: envelope fields and content."""

    def __init__(self, qid):
        env, self.content = QUEUE.read(qid)
        f = P.fields(env)
        self.qid = qid
        self.sender = f.get(7, [b""])[0].decode()
        self.recipients = [P.fields(r)[1][0].decode() for r in f.get(8, [])]
        self.notify = [P.fields(r).get(3, [0])[0] for r in f.get(8, [])]
        self.envid = f.get(9, [b""])[0].decode()
        self.ret = f.get(10, [b""])[0].decode()
        self.body_type = f.get(12, [b""])[0].decode()
        head, _, self.body = self.content.partition(b"\r\n\r\n")
        self.header = head.decode("utf-8", "replace") + "\r\n"

    def fields(self, name):
        """The values of the header fields called name (unfolded)."""
        out = []
        for m in re.finditer(r"^%s:[ \t]*(.*(?:\r\n[ \t].*)*)\r\n" % re.escape(name),
                             self.header, re.I | re.M):
            out.append(re.sub(r"\r\n", "", m.group(1)))
        return out


class Case(unittest.TestCase):
    def submit(self, args, data, want=0, env=None):
        """sendmail that must queue one message: (Msg, stderr)."""
        before = QUEUE.msg_ids()
        rc, out, err = sendmail(args, data, env=env)
        self.assertEqual(rc, want,
                         "sendmail %s: got status %d, want %d\n%s" % (args, rc, want, err))
        new = QUEUE.msg_ids() - before
        self.assertEqual(len(new), 1, "got %d new messages, want 1" % len(new))
        m = Msg(new.pop())
        self.assertNotRegex(m.content, rb"\r(?!\n)|(?<!\r)\n", "bare CR or LF in the content")
        return m, err

    def refuse(self, args, data, want):
        """sendmail that must queue nothing and exit with want: stderr."""
        before = QUEUE.msg_ids()
        rc, out, err = sendmail(args, data)
        self.assertEqual(rc, want,
                         "sendmail %s: got status %d, want %d\n%s" % (args, rc, want, err))
        self.assertEqual(QUEUE.msg_ids() - before, set(), "a message was queued")
        return err


# ---- recipients ----

class T01Recipients(Case):
    def test_arguments(self):
        m, _ = self.submit(["alice@example.test", "bob@remote.test"],
                           "Subject: args\n\nHello.\n")
        self.assertEqual(m.sender, "%s@%s" % (LOGIN, HOST))
        self.assertEqual(m.recipients, ["alice@example.test", "bob@remote.test"])
        self.assertEqual(m.fields("Subject"), ["args"])
        self.assertEqual(m.body, b"Hello.\r\n")
        self.assertTrue(m.header.startswith("Received: from localhost"), m.header)

    def test_lists_duplicates_and_bare_names(self):
        m, _ = self.submit(["alice@example.test, Bob <bob@remote.test>", "alice@example.test",
                            "carol"], "Subject: x\n\nx\n")
        self.assertEqual(m.recipients, ["alice@example.test", "bob@remote.test",
                                        "carol@" + HOST])
        m, _ = self.submit(["-i", "--", "-dash@example.test"], "Subject: x\n\nx\n")
        self.assertEqual(m.recipients, ["-dash@example.test"])

    def test_myorigin_qualifies_bare_names(self):
        m, _ = self.submit(["-o", "myorigin=example.test", "carol"], "Subject: x\n\nx\n")
        self.assertEqual(m.recipients, ["carol@example.test"])
        self.assertEqual(m.sender, LOGIN + "@example.test")

    def test_extract_to_cc_bcc(self):
        msg = ("From: Sender <s@example.test>\n"
               "To: \"Doe, John\" <john@example.test>, plain@example.test (a comment),\n"
               "\tcontinued@example.test\n"
               "Cc: Friends: one@remote.test, \"Two T.\" <two@remote.test>;,\n"
               "  undisclosed-recipients:;\n"
               "Bcc: hidden@example.test\n"
               "Subject: extract\n"
               "bcc: <@route.test,@r2.test:routed@remote.test>\n"
               "\n"
               "To: body@example.test\n")
        m, _ = self.submit(["-t", "arg@example.test"], msg)
        self.assertEqual(sorted(m.recipients), sorted([
            "arg@example.test", "john@example.test", "plain@example.test",
            "continued@example.test", "one@remote.test", "two@remote.test",
            "hidden@example.test", "routed@remote.test"]))
        self.assertEqual(m.fields("Bcc"), [])
        self.assertEqual(len(m.fields("To")), 1)
        self.assertIn("continued@example.test", m.fields("To")[0])
        self.assertEqual(m.fields("From"), ["Sender <s@example.test>"])
        self.assertIn(b"To: body@example.test", m.body)

    def test_extract_resent(self):
        msg = ("To: old@example.test\nResent-To: new@example.test\n"
               "Resent-Bcc: newhidden@example.test\n\nresent\n")
        m, _ = self.submit(["-t"], msg)
        self.assertEqual(sorted(m.recipients), ["new@example.test", "newhidden@example.test"])
        self.assertEqual(m.fields("Resent-Bcc"), [])
        self.assertEqual(m.fields("To"), ["old@example.test"])

    def test_bcc_removed_without_t(self):
        m, _ = self.submit(["alice@example.test"], "Bcc: hidden@example.test\nSubject: b\n\nx\n")
        self.assertEqual(m.fields("Bcc"), [])
        self.assertEqual(m.recipients, ["alice@example.test"])


# ---- sender and added header fields ----

class T02Sender(Case):
    def test_f_and_full_name(self):
        m, _ = self.submit(["-f", "me@example.test", "-F", 'Joe "Q" Public',
                            "alice@example.test"], "Subject: f\n\nx\n")
        self.assertEqual(m.sender, "me@example.test")
        self.assertEqual(m.fields("From"), ['"Joe \\"Q\\" Public" <me@example.test>'])

    def test_f_attached_r_and_name_env(self):
        m, _ = self.submit(["-fme@example.test", "alice@example.test"], "Subject: f\n\nx\n",
                           env={"NAME": "Env Name"})
        self.assertEqual(m.sender, "me@example.test")
        self.assertEqual(m.fields("From"), ['"Env Name" <me@example.test>'])
        m, _ = self.submit(["-r", "<other@example.test>", "alice@example.test"], "\nx\n")
        self.assertEqual(m.sender, "other@example.test")
        self.assertEqual(m.fields("From"), ["other@example.test"])

    def test_null_sender(self):
        m, _ = self.submit(["-f", "<>", "alice@example.test"], "Subject: n\n\nx\n")
        self.assertEqual(m.sender, "")

    def test_added_only_when_missing(self):
        m, _ = self.submit(["alice@example.test"], "Subject: none\n\nx\n")
        self.assertEqual(m.fields("From"), ["%s@%s" % (LOGIN, HOST)])
        self.assertEqual(len(m.fields("Date")), 1)
        self.assertRegex(m.fields("Date")[0],
                         r"^\w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}")
        self.assertRegex(m.fields("Message-ID")[0], r"^<\d+\.\d+\.[0-9a-f]{16}@%s>$"
                         % re.escape(HOST))
        given = ("from: Given <g@example.test>\nDate: Mon, 23 Nov 2026 10:00:00 +0000\n"
                 "Message-Id: <given@example.test>\nSubject: all\n\nx\n")
        m, _ = self.submit(["-F", "Ignored", "alice@example.test"], given)
        self.assertEqual(m.fields("From"), ["Given <g@example.test>"])
        self.assertEqual(m.fields("Date"), ["Mon, 23 Nov 2026 10:00:00 +0000"])
        self.assertEqual(m.fields("Message-ID"), ["<given@example.test>"])

    def test_no_header_at_all(self):
        m, _ = self.submit(["alice@example.test"], "just a body line\nsecond\n")
        self.assertEqual(len(m.fields("From")), 1)
        self.assertEqual(m.body, b"just a body line\r\nsecond\r\n")

    def test_mbox_from_line_dropped(self):
        m, _ = self.submit(["alice@example.test"],
                           "From someone Mon Nov 23 10:00:00 2026\nSubject: mbox\n\nx\n")
        self.assertNotIn("From someone", m.header)
        self.assertEqual(m.fields("Subject"), ["mbox"])


# ---- content ----

class T03Content(Case):
    def test_lone_dot_ends_input(self):
        m, _ = self.submit(["alice@example.test"], "Subject: d\n\nline1\n.\nafter\n")
        self.assertEqual(m.body, b"line1\r\n")
        m, _ = self.submit(["alice@example.test"], "Subject: d\r\n\r\nline1\r\n.\r\nafter\r\n")
        self.assertEqual(m.body, b"line1\r\n")
        m, _ = self.submit(["alice@example.test"], "Subject: d\n\nline1\n.")
        self.assertEqual(m.body, b"line1\r\n")

    def test_lone_dot_in_header_ends_input(self):
        m, _ = self.submit(["alice@example.test"], "Subject: early\n.\nTo: x@y.test\n\nbody\n")
        self.assertEqual(m.fields("Subject"), ["early"])
        self.assertEqual(m.fields("To"), [])
        self.assertEqual(m.body, b"")

    def test_dots_kept_with_i(self):
        data = "Subject: d\n\nline1\n.\n..two\n.x\nend\n."
        want = b"line1\r\n.\r\n..two\r\n.x\r\nend\r\n.\r\n"
        for flag in ("-i", "-oi"):
            m, _ = self.submit([flag, "alice@example.test"], data)
            self.assertEqual(m.body, want, flag)

    def test_dot_lines_without_i(self):
        m, _ = self.submit(["alice@example.test"], "Subject: d\n\n..two\n.x\n. \nend\n")
        self.assertEqual(m.body, b"..two\r\n.x\r\n. \r\nend\r\n")

    def test_line_ends(self):
        data = b"Subject: crlf\r\nX-Mixed: a\rb\n\nlf\ncrlf\r\nbare\rcr\r\r\nlast"
        m, _ = self.submit(["alice@example.test"], data)
        self.assertEqual(m.fields("X-Mixed"), ["ab"])
        self.assertEqual(m.body, b"lf\r\ncrlf\r\nbarecr\r\nlast\r\n")

    def test_long_line_broken(self):
        m, _ = self.submit(["alice@example.test"], "Subject: long\n\n" + "x" * 2500 + "\n")
        lines = m.body.split(b"\r\n")
        self.assertEqual(lines[0], b"x" * 998)
        self.assertEqual(lines[1], b" " + b"x" * 997)
        self.assertEqual(lines[2], b" " + b"x" * 505)

    def test_header_ended_by_body_line(self):
        m, _ = self.submit(["alice@example.test"], "Subject: s\nnot a header line\nmore\n")
        self.assertEqual(m.fields("Subject"), ["s"])
        self.assertEqual(m.body, b"not a header line\r\nmore\r\n")

    def test_nul_refused(self):
        err = self.refuse(["alice@example.test"], b"Subject: nul\n\na\0b\n", EX_DATAERR)
        self.assertIn("NUL", err)

    def test_big_message_streamed(self):
        """20 MB through a pipe: sendmail's memory stays small."""
        line = b"y" * 76 + b"\n"
        count = 20 * 1024 * 1024 // len(line) // 1024 * 1024
        small, big = os.path.join(FD.tmp, "small.eml"), os.path.join(FD.tmp, "big.eml")
        with open(small, "wb") as f:
            f.write(b"Subject: small\n\n" + line)
        with open(big, "wb") as f:
            f.write(b"Subject: big\n\n")
            for _ in range(count // 1024):
                f.write(line * 1024)
        rss = {}
        try:
            for name, path in (("small", small), ("big", big)):
                before = QUEUE.msg_ids()
                status, rss[name] = run_measured(
                    [SENDMAIL, "-C", FD.conf, "-o", "run_directory=" + FD.run,
                     "alice@example.test"], path)
                self.assertEqual(status, 0, name)
                new = QUEUE.msg_ids() - before
                self.assertEqual(len(new), 1)
        finally:
            os.unlink(small)
            os.unlink(big)
        m = Msg(new.pop())
        self.assertEqual(m.body, (b"y" * 76 + b"\r\n") * count)
        self.assertLess(rss["big"] - rss["small"], 8 * 1024, rss)
        if not SANITIZERS:
            self.assertLess(rss["big"], 20 * 1024, rss)


def run_measured(cmd, stdin_path):
    """Run cmd with stdin from stdin_path: (exit status, its peak RSS in KB).

    A child forked by this Python process would count Python's own RSS in
    its ru_maxrss (the peak survives execve), so cmd runs as a grandchild
    that sh forks, and this process reaps it as a child subreaper (Linux
    prctl) to read its rusage with os.wait4."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise unittest.SkipTest("no PR_SET_CHILD_SUBREAPER")
    try:
        sh = subprocess.Popen(["/bin/sh", "-c", 'f=$1; shift; "$@" <"$f" >/dev/null & echo $!',
                               "sh", stdin_path] + cmd, stdout=subprocess.PIPE,
                              env=env_for(), cwd=FD.tmp)
        pid = int(sh.stdout.readline())
        sh.stdout.close()
        sh.wait()
        _, status, usage = os.wait4(pid, 0)
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss


# ---- modes ----

class T04Modes(Case):
    def test_verify(self):
        before = QUEUE.msg_ids()
        rc, out, err = sendmail(["-bv", "alice@example.test", "bob@remote.test"])
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, "alice@example.test... deliverable\n"
                              "bob@remote.test... deliverable\n")
        self.assertIn("alice@example.test", ROUTER.verified())
        rc, out, err = sendmail(["-bv", "alice@example.test", "nosuch@example.test"])
        self.assertEqual(rc, EX_UNAVAILABLE, err)
        lines = out.splitlines()
        self.assertEqual(lines[0], "alice@example.test... deliverable")
        self.assertRegex(lines[1], r"^nosuch@example.test\.\.\. undeliverable: 550 5\.1\.1 .*"
                                   r"no such user")
        self.assertEqual(QUEUE.msg_ids() - before, set())

    def test_verify_extract(self):
        rc, out, err = sendmail(["-bv", "-t"], "To: alice@example.test, nosuch2@example.test\n\n")
        self.assertEqual(rc, EX_UNAVAILABLE, err)
        self.assertIn("nosuch2@example.test... undeliverable", out)

    def test_smtp_session(self):
        dialogue = ("EHLO client.test\r\nMAIL FROM:<bs@example.test>\r\n"
                    "RCPT TO:<alice@example.test>\r\nDATA\r\n")
        before = QUEUE.msg_ids()
        p = subprocess.Popen([SENDMAIL, "-C", FD.conf, "-o", "run_directory=" + FD.run, "-bs"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env_for(),
                             cwd=FD.tmp)
        out = b""

        def reply():
            nonlocal out
            while not re.search(rb"(^|\r\n)\d{3} [^\r\n]*\r\n$", out):
                d = p.stdout.read1(65536)
                if not d:
                    raise AssertionError("EOF, got %r" % out)
                out += d
            r, out = out, b""
            return r.decode()

        self.assertTrue(reply().startswith("220 "))
        for line, code in zip(dialogue.split("\r\n"), ("250", "250", "250", "354")):
            p.stdin.write((line + "\r\n").encode())
            p.stdin.flush()
            got = reply()
            self.assertTrue(got.splitlines()[-1].startswith(code), (line, got))
        p.stdin.write(b"Subject: bs\r\n\r\nvia -bs\r\n.\r\n")
        p.stdin.flush()
        self.assertIn("queued as", reply())
        p.stdin.write(b"QUIT\r\n")
        p.stdin.close()
        self.assertTrue(reply().startswith("221"))
        self.assertEqual(p.wait(30), 0)
        p.stdout.close()
        new = QUEUE.msg_ids() - before
        self.assertEqual(len(new), 1)
        m = Msg(new.pop())
        self.assertEqual(m.sender, "bs@example.test")
        self.assertEqual(m.body, b"via -bs\r\n")

    def test_smtp_session_stdin_closed(self):
        """End of stdin half-closes: the server ends the session, sendmail exits 0."""
        rc, out, err = sendmail(["-bs"], b"NOOP\r\n")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"^220 .*\r\n250 ")

    def test_verbose(self):
        m, err = self.submit(["-v", "alice@example.test"], "Subject: v\n\nx\n")
        self.assertIn(">>> MAIL FROM:<%s@%s>" % (LOGIN, HOST), err)
        self.assertIn("<<< 250", err)
        self.assertIn("queued as %s" % m.qid, err)

    def test_dsn_options(self):
        m, _ = self.submit(["-N", "success,delay", "-R", "hdrs", "-V", "env+1 x", "-B", "8bitmime",
                            "alice@example.test"], "Subject: dsn\n\nx\n")
        self.assertEqual(m.envid, "env+1 x")
        self.assertEqual(m.ret, "HDRS")
        self.assertEqual(m.body_type, "8BITMIME")
        self.assertEqual(m.notify, [2 | 8])
        m, _ = self.submit(["-N", "never", "alice@example.test"], "Subject: dsn\n\nx\n")
        self.assertEqual(m.notify, [1])

    def test_ignored_options(self):
        m, _ = self.submit(["-oem", "-odb", "-m", "-U", "-Am", "-h", "5", "alice@example.test"],
                           "Subject: ign\n\nx\n")
        self.assertEqual(m.recipients, ["alice@example.test"])

    def test_zfarm_config_env(self):
        env = {"ZFARM_CONFIG": FD.conf}
        before = QUEUE.msg_ids()
        p = subprocess.run([SENDMAIL, "alice@example.test"], input=b"Subject: env\n\nx\n",
                           capture_output=True, env=env_for(env), cwd=FD.tmp)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(len(QUEUE.msg_ids() - before), 1)


# ---- exit statuses ----

class T05Status(Case):
    def test_socket_missing(self):
        before = QUEUE.msg_ids()
        rc, _, err = sendmail(["-o", "run_directory=" + os.path.join(FD.tmp, "nowhere"),
                               "alice@example.test"], "Subject: x\n\nx\n")
        self.assertEqual(rc, EX_TEMPFAIL, err)
        self.assertIn("mail system is not running", err)
        self.assertEqual(QUEUE.msg_ids() - before, set())

    def test_header_too_big(self):
        data = "Subject: big\nX-Big: " + "z" * (1024 * 1024 + 10) + "\n\nx\n"
        err = self.refuse(["alice@example.test"], data, EX_DATAERR)
        self.assertIn("header", err)
        data = "Subject: big\n" + "X-Many: 0123456789\n" * 60000 + "\nx\n"
        self.refuse(["alice@example.test"], data, EX_DATAERR)

    def test_big_first_body_line_is_not_header(self):
        line = b"body " + b"z" * (1024 * 1024 + 10)
        m, _ = self.submit(["alice@example.test"], b"Subject: s\n" + line + b"\n")
        self.assertEqual(m.fields("Subject"), ["s"])
        self.assertEqual(m.body.replace(b"\r\n ", b""), line + b"\r\n")

    def test_no_recipients(self):
        err = self.refuse([], "Subject: x\n\nx\n", EX_USAGE)
        self.assertIn("no recipients specified", err)
        err = self.refuse(["-t"], "Subject: x\nTo: undisclosed-recipients:;\n\nx\n", EX_USAGE)
        self.assertIn("no recipients specified", err)

    def test_some_recipients_refused(self):
        m, err = self.submit(["alice@example.test", "nosuch@example.test", "bob@remote.test"],
                             "Subject: partial\n\nx\n", want=EX_NOUSER)
        self.assertEqual(m.recipients, ["alice@example.test", "bob@remote.test"])
        self.assertRegex(err, r"<nosuch@example.test>: refused: 550 5\.1\.1")

    def test_all_recipients_refused(self):
        err = self.refuse(["nosuch@example.test", "nosuch3@example.test"], "Subject: x\n\nx\n",
                          EX_NOUSER)
        self.assertIn("no recipient was accepted", err)

    def test_tempfail_recipient_sends_nothing(self):
        err = self.refuse(["alice@example.test", "tempfail@example.test"], "Subject: x\n\nx\n",
                          EX_TEMPFAIL)
        self.assertIn("<tempfail@example.test>: temporarily refused: 451", err)

    def test_sender_refused(self):
        err = self.refuse(["-f", "x@@example.test", "alice@example.test"],
                          "Subject: x\n\nx\n", EX_UNAVAILABLE)
        self.assertIn("refused", err)

    def test_usage_errors(self):
        for args, text in ((["-q"], "zfqueue flush"), (["-q1h"], "zfqueue flush"),
                           (["-bp"], "mailq"), (["-c", "x", "a@b.test"], "-C"),
                           (["-Z", "a@b.test"], "unknown option -Z"),
                           (["-N", "sometimes", "a@b.test"], "-N"),
                           (["-R", "most", "a@b.test"], "-R"), (["-f"], "needs a value")):
            err = self.refuse(args, "", EX_USAGE)
            self.assertIn(text, err, args)

    def test_bad_config(self):
        rc, _, err = sendmail(["-C", os.path.join(FD.tmp, "missing.conf"), "a@example.test"],
                              "x\n", config=False)
        self.assertEqual(rc, EX_CONFIG, err)


if __name__ == "__main__":
    farmlib.run_tests("sendmail", lambda test: LAST_LOG or FD.log())
