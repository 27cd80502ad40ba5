#!/usr/bin/env python3
"""Integration tests of the local transport farm (issue 7, "local").

farmd runs an smtpserver farm (messages go into the queue over SMTP, no
router) and three local farms (transport/local), client_limit 1 and
process_limit 4 each:
  local        home_mailbox Maildir/ (the default)
  localmbox    home_mailbox Mail/inbox (an mbox below a directory to make)
  localnoowner local_virtual_owner empty
with mail_directory $run_directory/mail (the default), virtual users from
local_recipient_maps and local_virtual_owner = nobody (used only when the
test runs as root).  The test plays the scheduler: DeliveryRequest frames
on the farms' sockets, DeliveryReply read back, mailboxes checked on disk
(Maildir files and mbox messages parsed with Python's email package).

Runs as root (CI) and not: as root virtual mail, files and commands
belong to nobody and passwd users' mail to them; otherwise everything is
the test's own.  Python 3 standard library only; prints "N passed, N
failed".
"""

import email
import email.policy
import fcntl
import os
import pwd
import re
import socket
import stat
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_SRCDIR = os.path.abspath(os.environ.get("top_srcdir") or os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(TOP_SRCDIR, "tests", "smtpserver"))
import smtplib_helpers as H  # noqa: E402
from smtplib_helpers import Raw, farmlib, qid_of  # noqa: E402
import zfproto as P  # noqa: E402

LOCAL = os.path.join(H.TOP_BUILDDIR, "transport", "local")
OK, TEMPFAIL, PERMFAIL = 1, 2, 3
ROOT = os.geteuid() == 0
NOBODY = pwd.getpwnam("nobody") if ROOT else None
# Whom virtual users' mail, files and commands belong to.
OWNER_UID = NOBODY.pw_uid if ROOT else os.geteuid()
LOCK_LIMIT = 2          # local_lock_time_limit, seconds
COMMAND_LIMIT = 2       # local_command_time_limit, seconds
SANITIZERS = bool(os.environ.get("ZF_SANITIZERS"))

FD = PORT = None
LAST_LOG = ""
OUT = None   # a directory every identity may write (command and file targets)


def setUpModule():
    global FD, PORT, OUT
    if not os.access(LOCAL, os.X_OK) or H.binaries_missing():
        raise unittest.SkipTest("not built")
    FD = farmlib.FarmdInstance(tag="local")
    if ROOT:
        os.chmod(FD.tmp, 0o755)  # nobody walks to run/mail and out/
    OUT = os.path.join(FD.tmp, "out")
    os.mkdir(OUT)
    os.chmod(OUT, 0o1777)
    PORT = H.free_port()
    g = dict(H.BASE_GLOBALS)
    g.update({"smtpd_verify_recipients": "no", "myhostname": "mx.example.test",
              "local_recipient_maps": "inline:{alice, bob, carol, erin, frank, grace, "
                                      "heidi, ivan}",
              "local_virtual_owner": "nobody",
              "local_lock_time_limit": "%ds" % LOCK_LIMIT,
              "local_command_time_limit": "%ds" % COMMAND_LIMIT,
              "message_size_limit": str(20 * 1024 * 1024),
              "log_level": "info"})

    def local_farm(name, args=None):
        p = {"listen": "unix:private/%s" % name, "program": LOCAL, "process_limit": 4,
             "client_limit": 1}
        if args:
            p["args"] = args
        return farmlib.farm_section(name, **p)

    FD.write_config([
        H.smtp_farm("smtpserver", PORT),
        local_farm("local"),
        local_farm("localmbox", "-o home_mailbox=Mail/inbox"),
        local_farm("localnoowner", "-o local_virtual_owner="),
    ], g)
    H.start_instance(FD, [PORT], ["local", "localmbox", "localnoowner"])


def tearDownModule():
    global LAST_LOG
    if FD is not None:
        LAST_LOG = FD.log()
        FD.cleanup()


def sock(farm):
    return os.path.join(FD.run, "private", farm)


def mail_dir(*parts):
    return os.path.join(FD.run, "mail", *parts)


# ---- messages into the queue ----

def send(body="Hello.\r\n", sender="s@example.test", rcpts=("x@example.test",),
         headers="", subject="test"):
    """A message into the queue over SMTP; its queue ID.  body uses CR LF."""
    with Raw(PORT, timeout=60) as r:
        r.send("EHLO x\r\n")
        r.reply()
        assert r.cmd("MAIL FROM:<%s>" % sender).startswith("250")
        for a in rcpts:
            assert r.cmd("RCPT TO:<%s>" % a).startswith("250")
        assert r.cmd("DATA").startswith("354")
        stuffed = re.sub(r"(?m)^\.", "..", body)
        r.send(("From: Sender <%s>\r\nTo: x@example.test\r\nSubject: %s\r\n%s"
                "Message-ID: <%s@example.test>\r\n\r\n" % (sender or "nobody", subject,
                                                          headers, time.time())
                + stuffed + ".\r\n").encode("utf-8"))
        code, lines = r.reply()
        assert code == 250, lines
        return qid_of(lines[-1])


# ---- the scheduler's side ----

def rcpt(index, address, user="", orig=""):
    m = P.pb_varint(1, index) + P.pb_bytes(2, address) + P.pb_bytes(5, user)
    if orig:
        m += P.pb_bytes(6, orig)
    return m


def user_rcpt(index, address, orig=""):
    """A local user recipient as the router makes it."""
    local = address.split("@")[0].lower()
    return rcpt(index, address, user=local.split("+")[0], orig=orig)


def request(qid, rcpts, sender="s@example.test"):
    return (P.pb_bytes(1, P.queue_ref(qid)) + P.pb_bytes(2, "local") + P.pb_bytes(3, "")
            + P.pb_bytes(4, sender) + b"".join(P.pb_bytes(5, r) for r in rcpts))


class Sched(P.TransportClient):
    """One connection to a local farm, as the scheduler keeps it; deliver()
    gives {index: (status, enhanced, text)} and sets self.relay."""

    def __init__(self, farm="local", timeout=60.0):
        super().__init__(sock(farm), timeout)

    def deliver(self, rq):
        rep = super().deliver(rq)
        self.relay = rep["relay"]
        return {r["index"]: (r["status"], r["enhanced"], r["text"]) for r in rep["results"]}


def deliver(qid, rcpts, farm="local", sender="s@example.test"):
    """{index: (status, enhanced code, text)} of one request on a fresh connection."""
    with Sched(farm) as s:
        return s.deliver(request(qid, rcpts, sender))


# ---- mailboxes ----

def maildir_new(user, box="Maildir"):
    d = mail_dir(user, box, "new")
    return sorted(os.path.join(d, n) for n in os.listdir(d)) if os.path.isdir(d) else []


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def parse(data):
    return email.message_from_bytes(data, policy=email.policy.default)


def mbox_messages(path):
    """mboxrd: [(From_ line, unquoted message bytes)]."""
    data = read_bytes(path)
    assert data.startswith(b"From "), data[:40]
    out, cur, from_line, prev_blank = [], [], None, True
    for line in data.split(b"\n")[:-1]:
        if line.startswith(b"From ") and prev_blank:
            if from_line is not None:
                out.append((from_line, b"\n".join(cur[:-1]) + b"\n"))  # drop the blank
            from_line, cur = line, []
        else:
            if re.match(rb"^>+From ", line):
                line = line[1:]
            cur.append(line)
        prev_blank = line == b""
    out.append((from_line, b"\n".join(cur[:-1]) + b"\n"))
    return out


def owner(path):
    return os.lstat(path).st_uid


def local_pids(qid):
    return set(int(p) for p in re.findall(r"local\[(\d+)\]: [a-z]*:? ?%s: to=" % qid, FD.log()))


# ---- tests ----

class T01Maildir(unittest.TestCase):
    def test_delivered_with_headers(self):
        qid = send(body="Line one.\r\nFrom the start\r\n.dot line\r\nLast.\r\n",
                   subject="maildir one")
        before = maildir_new("alice")
        res = deliver(qid, [user_rcpt(3, "Alice+Ext@Example.test")])
        self.assertEqual(res, {3: (OK, "2.0.0", "delivered to maildir")})
        new = [p for p in maildir_new("alice") if p not in before]
        self.assertEqual(len(new), 1)
        data = read_bytes(new[0])
        self.assertNotIn(b"\r", data)
        self.assertTrue(data.startswith(b"Return-Path: <s@example.test>\n"
                                        b"Delivered-To: alice+ext@example.test\nReceived: "), data[:200])
        m = re.search(r",S=(\d+)$", new[0])
        self.assertIsNotNone(m, new[0])
        self.assertEqual(int(m.group(1)), len(data))
        self.assertIn(".mx.example.test,S=", new[0])
        msg = parse(data)
        self.assertEqual(str(msg["Subject"]), "maildir one")
        self.assertEqual(msg.get_content(), "Line one.\nFrom the start\n.dot line\nLast.\n")
        FD.wait_log(r"%s: to=<Alice\+Ext@Example\.test>, relay=local, delay=[\d.]+, "
                    r"dsn=2\.0\.0, status=sent \(delivered to maildir\)" % qid)

    def test_directories_made(self):
        qid = send(subject="dirs")
        self.assertEqual(deliver(qid, [user_rcpt(0, "heidi@example.test")])[0][0], OK)
        for sub in ("tmp", "new", "cur"):
            st = os.stat(mail_dir("heidi", "Maildir", sub))
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o700, sub)
            self.assertEqual(st.st_uid, OWNER_UID, sub)
        self.assertEqual(owner(mail_dir("heidi")), OWNER_UID)
        self.assertEqual(stat.S_IMODE(os.stat(mail_dir("heidi")).st_mode), 0o700)
        self.assertEqual(os.listdir(mail_dir("heidi", "Maildir", "tmp")), [])
        f = maildir_new("heidi")
        self.assertEqual(len(f), 1)
        self.assertEqual(owner(f[0]), OWNER_UID)
        self.assertEqual(stat.S_IMODE(os.stat(f[0]).st_mode), 0o600)

    def test_same_user_twice_two_copies(self):
        qid = send(subject="twice")
        before = maildir_new("alice")
        res = deliver(qid, [user_rcpt(0, "alice+a@example.test"),
                            user_rcpt(1, "alice+b@example.test"),
                            user_rcpt(2, "bob@example.test")])
        self.assertEqual(sorted(res), [0, 1, 2])
        self.assertTrue(all(r[0] == OK for r in res.values()), res)
        new = [p for p in maildir_new("alice") if p not in before]
        self.assertEqual(len(new), 2)
        dts = sorted(str(parse(read_bytes(p))["Delivered-To"]) for p in new)
        self.assertEqual(dts, ["alice+a@example.test", "alice+b@example.test"])

    def test_passwd_user(self):
        # nobody is in passwd: as root its mail is written as nobody, else as us.
        qid = send(subject="passwd user")
        res = deliver(qid, [user_rcpt(0, "nobody@example.test")])
        self.assertEqual(res[0][:2], (OK, "2.0.0"), res)
        f = maildir_new("nobody")
        self.assertEqual(len(f), 1)
        want = pwd.getpwnam("nobody").pw_uid if ROOT else os.geteuid()
        self.assertEqual(owner(f[0]), want)
        self.assertEqual(owner(mail_dir("nobody", "Maildir")), want)

    def test_virtual_without_owner_is_self(self):
        # local_virtual_owner empty: the transport's own identity, root or not.
        qid = send(subject="no owner")
        res = deliver(qid, [user_rcpt(0, "ivan@example.test")], farm="localnoowner")
        self.assertEqual(res[0][:2], (OK, "2.0.0"), res)
        f = maildir_new("ivan")
        self.assertEqual(len(f), 1)
        self.assertEqual(owner(f[0]), os.geteuid())


class T02Refusals(unittest.TestCase):
    def test_unknown_user(self):
        qid = send(subject="unknown")
        res = deliver(qid, [user_rcpt(0, "nosuchuser@example.test")])
        self.assertEqual(res[0][:2], (PERMFAIL, "5.1.1"))
        self.assertIn("unknown user", res[0][2])
        self.assertFalse(os.path.exists(mail_dir("nosuchuser")))
        FD.wait_log(r"%s: to=<nosuchuser@example\.test>, relay=local, delay=[\d.]+, "
                    r"dsn=5\.1\.1, status=bounced \(unknown user" % qid)

    def test_root_refused(self):
        qid = send(subject="root")
        res = deliver(qid, [user_rcpt(0, "root@example.test"), user_rcpt(1, "bob@example.test")])
        self.assertEqual(res[0], (PERMFAIL, "5.7.1",
                                  "mail for root is not delivered; alias root to a user"))
        self.assertEqual(res[1][0], OK)  # the other recipient is not held up
        self.assertFalse(os.path.exists(mail_dir("root")))

    def test_delivered_to_loop(self):
        qid = send(headers="Delivered-To: other@example.test\r\n"
                           "Delivered-To:  Alice@Example.TEST \r\n", subject="loop")
        before = maildir_new("alice")
        res = deliver(qid, [user_rcpt(0, "alice@example.test"),
                            user_rcpt(1, "alice+x@example.test")])
        self.assertEqual(res[0], (PERMFAIL, "5.4.6", "mail forwarding loop for alice@example.test"))
        self.assertEqual(res[1][0], OK)   # another address: no loop
        self.assertEqual(len(maildir_new("alice")), len(before) + 1)

    def test_gone_message(self):
        qid = send(subject="gone")
        gone = qid[:11] + "ZZZZZ"
        res = deliver(gone, [user_rcpt(0, "alice@example.test")])
        self.assertEqual(res[0][:2], (PERMFAIL, "5.3.0"))


class T03Mbox(unittest.TestCase):
    BODY_LINES = ["From here to there", ">From quoted once", ">>From twice", "From",
                  "From  two blanks", "not From at start", ".", ""]

    def test_quoting_round_trip(self):
        body = "\r\n".join(self.BODY_LINES) + "\r\n"
        q1 = send(body=body, subject="mbox 1")
        q2 = send(body="second\r\n", sender="", subject="mbox 2")
        for q, s in ((q1, "s@example.test"), (q2, "")):
            res = deliver(q, [user_rcpt(0, "bob@example.test")], farm="localmbox", sender=s)
            self.assertEqual(res, {0: (OK, "2.0.0", "delivered to mailbox")})
        path = mail_dir("bob", "Mail", "inbox")
        self.assertEqual(owner(path), OWNER_UID)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(mail_dir("bob", "Mail")).st_mode), 0o700)
        raw = read_bytes(path)
        self.assertNotIn(b"\r", raw)
        self.assertIn(b"\n>From here to there\n>>From quoted once\n>>>From twice\nFrom\n"
                      b">From  two blanks\n", raw)
        msgs = mbox_messages(path)
        self.assertEqual(len(msgs), 2)
        self.assertRegex(msgs[0][0].decode(),
                         r"^From s@example\.test [A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d "
                         r"\d\d:\d\d:\d\d \d{4}$")
        self.assertTrue(msgs[1][0].startswith(b"From MAILER-DAEMON "), msgs[1][0])
        m1 = parse(msgs[0][1])
        self.assertEqual(str(m1["Return-Path"]), "<s@example.test>")
        self.assertEqual(str(m1["Delivered-To"]), "bob@example.test")
        self.assertEqual(m1.get_content(), "\n".join(self.BODY_LINES) + "\n")
        m2 = parse(msgs[1][1])
        self.assertEqual(str(m2["Return-Path"]), "<>")
        self.assertEqual(m2.get_content(), "second\n")
        self.assertFalse(os.path.exists(path + ".lock"))

    def test_symlink_refused(self):
        os.makedirs(mail_dir("frank", "Mail"), exist_ok=True)
        if ROOT:
            os.chown(mail_dir("frank"), OWNER_UID, -1)
            os.chown(mail_dir("frank", "Mail"), OWNER_UID, -1)
        target = os.path.join(OUT, "frank-target")
        with open(target, "w") as f:
            f.write("untouched\n")
        os.chmod(target, 0o666)
        os.symlink(target, mail_dir("frank", "Mail", "inbox"))
        qid = send(subject="symlink")
        res = deliver(qid, [user_rcpt(0, "frank@example.test")], farm="localmbox")
        self.assertEqual(res[0][:2], (PERMFAIL, "5.2.0"), res)
        self.assertIn("symbolic link", res[0][2])
        self.assertEqual(read_bytes(target), b"untouched\n")
        self.assertFalse(os.path.exists(mail_dir("frank", "Mail", "inbox.lock")))

    def _grace_mbox(self):
        path = mail_dir("grace", "Mail", "inbox")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not os.path.exists(path):
            open(path, "w").close()
        if ROOT:
            for p in (mail_dir("grace"), mail_dir("grace", "Mail"), path):
                os.chown(p, OWNER_UID, -1)
        return path

    def test_fcntl_lock_held(self):
        path = self._grace_mbox()
        qid = send(subject="locked")
        with open(path, "r+") as f:
            fcntl.lockf(f, fcntl.LOCK_EX)
            t0 = time.monotonic()
            res = deliver(qid, [user_rcpt(0, "grace@example.test")], farm="localmbox")
            took = time.monotonic() - t0
        self.assertEqual(res[0][:2], (TEMPFAIL, "4.2.0"), res)
        self.assertIn("mailbox is locked", res[0][2])
        self.assertGreaterEqual(took, LOCK_LIMIT * 0.9)
        self.assertLess(took, LOCK_LIMIT + 8)
        self.assertEqual(os.path.getsize(path), 0)
        self.assertFalse(os.path.exists(path + ".lock"))
        # released: delivered
        res = deliver(qid, [user_rcpt(0, "grace@example.test")], farm="localmbox")
        self.assertEqual(res[0][0], OK, res)

    def test_dotlock_held(self):
        path = self._grace_mbox()
        size = os.path.getsize(path)
        with open(path + ".lock", "w") as f:
            f.write("12345\n")
        try:
            qid = send(subject="dotlocked")
            t0 = time.monotonic()
            res = deliver(qid, [user_rcpt(0, "grace@example.test")], farm="localmbox")
            took = time.monotonic() - t0
            self.assertEqual(res[0][:2], (TEMPFAIL, "4.2.0"), res)
            self.assertIn("mailbox is locked", res[0][2])
            self.assertLess(took, LOCK_LIMIT + 8)
            self.assertTrue(os.path.exists(path + ".lock"))  # not ours to remove
            self.assertEqual(os.path.getsize(path), size)
        finally:
            os.unlink(path + ".lock")


class T04Concurrency(unittest.TestCase):
    N, CONNS = 20, 4

    def _run(self, user, farm):
        # ~200 KB each, every line naming its message: interleaving shows.
        qids = []
        for i in range(self.N):
            line = "message %02d line %%05d xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n" % i
            body = "".join(line % k for k in range(3000))
            qids.append(send(body=body, subject="concurrent %02d" % i))
        errors, results = [], {}
        # All connections open before any delivery: with client_limit 1
        # they are served by CONNS different processes at once.
        together = threading.Barrier(self.CONNS, timeout=60)

        def worker(part):
            try:
                with Sched(farm) as s:
                    together.wait()
                    for i in part:
                        results[i] = s.deliver(request(qids[i], [user_rcpt(0, user + "@example.test")]))
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))

        ts = [threading.Thread(target=worker, args=(range(k, self.N, self.CONNS),))
              for k in range(self.CONNS)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        self.assertEqual(errors, [])
        self.assertEqual(sorted(results), list(range(self.N)))
        for i, r in results.items():
            self.assertEqual(r[0][0], OK, (i, r))
        pids = set()
        for q in qids:
            pids |= local_pids(q)
        self.assertGreaterEqual(len(pids), 2, "deliveries by processes %s" % pids)
        return qids

    def _check(self, i, data):
        msg = parse(data)
        subj = str(msg["Subject"])
        self.assertTrue(subj.startswith("concurrent "), subj)
        n = int(subj.split()[1])
        lines = msg.get_content().split("\n")
        self.assertEqual(lines[-1], "")
        self.assertEqual(len(lines) - 1, 3000, subj)
        for k, line in enumerate(lines[:-1]):
            if not line.startswith("message %02d line %05d " % (n, k)):
                self.fail("%s: line %d is %r" % (subj, k, line[:60]))
        return n

    def test_one_mbox_from_four_processes(self):
        self._run("carol", "localmbox")
        msgs = mbox_messages(mail_dir("carol", "Mail", "inbox"))
        self.assertEqual(len(msgs), self.N)
        seen = sorted(self._check(i, m) for i, (_, m) in enumerate(msgs))
        self.assertEqual(seen, list(range(self.N)))

    def test_one_maildir_from_four_processes(self):
        self._run("erin", "local")
        files = maildir_new("erin")
        self.assertEqual(len(files), self.N)
        seen = sorted(self._check(i, read_bytes(p)) for i, p in enumerate(files))
        self.assertEqual(seen, list(range(self.N)))
        self.assertEqual(os.listdir(mail_dir("erin", "Maildir", "tmp")), [])


class T05Big(unittest.TestCase):
    def test_5mb_streamed(self):
        line = "%07d " + "y" * 70 + "\r\n"
        nlines = 5 * 1024 * 1024 // 78 + 100  # 78 bytes a line once stored with LF
        body = "".join(line % k for k in range(nlines))
        qid = send(body=body, subject="big")
        before = maildir_new("alice")
        with Sched("local") as s:
            res = s.deliver(request(qid, [user_rcpt(0, "alice+big@example.test")]))
            self.assertEqual(res[0][0], OK, res)
            pids = local_pids(qid)
            hwm = None
            for pid in pids:
                try:
                    with open("/proc/%d/status" % pid) as f:
                        for ln in f:
                            if ln.startswith("VmHWM:"):
                                hwm = int(ln.split()[1])
                except OSError:
                    pass
        new = [p for p in maildir_new("alice") if p not in before]
        self.assertEqual(len(new), 1)
        data = read_bytes(new[0])
        self.assertGreater(len(data), 5 * 1024 * 1024)
        self.assertTrue(data.endswith((line % (nlines - 1)).replace("\r\n", "\n").encode()))
        self.assertIsNotNone(hwm, "no VmHWM for the local processes %s" % pids)
        if not SANITIZERS:
            self.assertLess(hwm, 30 * 1024, "the transport's VmHWM is %d kB" % hwm)


class T06FileAndCommand(unittest.TestCase):
    def test_file_target(self):
        path = os.path.join(OUT, "archive.mbox")
        qid = send(body="From archive\r\nbody\r\n", subject="to a file")
        res = deliver(qid, [rcpt(0, path, orig="Archive@Example.test")])
        self.assertEqual(res, {0: (OK, "2.0.0", "delivered to file: " + path)})
        self.assertEqual(owner(path), OWNER_UID)
        msgs = mbox_messages(path)
        self.assertEqual(len(msgs), 1)
        m = parse(msgs[0][1])
        self.assertEqual(str(m["Delivered-To"]), "archive@example.test")
        self.assertEqual(m.get_content(), "From archive\nbody\n")
        FD.wait_log(r"%s: to=<%s>, orig_to=<Archive@Example\.test>, relay=local, delay=[\d.]+, "
                    r"dsn=2\.0\.0, status=sent" % (qid, re.escape(path)))

    def test_dev_null(self):
        qid = send(subject="to /dev/null")
        self.assertEqual(deliver(qid, [rcpt(0, "/dev/null", orig="x@example.test")])[0][0], OK)

    def test_command(self):
        envf, msgf = os.path.join(OUT, "cmd.env"), os.path.join(OUT, "cmd.msg")
        cmd = ('|printf "%%s\\n" "$SENDER" "$RECIPIENT" "$USER" "$EXTENSION" "$SHELL" '
               '"$PATH" "$LOGNAME" > %s; cat > %s' % (envf, msgf))
        qid = send(body="piped\r\n", subject="to a command")
        res = deliver(qid, [rcpt(0, cmd, orig="List+Ext@example.test")])
        self.assertEqual(res[0][:2], (OK, "2.0.0"), res)
        self.assertTrue(res[0][2].startswith("delivered to command: printf"), res[0][2])
        with open(envf) as f:
            self.assertEqual(f.read().split("\n")[:7],
                             ["s@example.test", "List+Ext@example.test", "List", "Ext",
                              "/bin/sh", "/usr/bin:/bin", "List"])
        data = read_bytes(msgf)
        self.assertTrue(data.startswith(b"Return-Path: <s@example.test>\n"
                                        b"Delivered-To: list+ext@example.test\n"), data[:100])
        self.assertTrue(data.endswith(b"\n\npiped\n"), data[-40:])
        self.assertEqual(owner(msgf), OWNER_UID)

    def test_command_status(self):
        qid = send(subject="command status")
        res = deliver(qid, [rcpt(0, "|echo busy; exit 75", orig="a@example.test"),
                            rcpt(1, "|echo no such list >&2; exit 67", orig="b@example.test"),
                            rcpt(2, "|/nonexistent/program", orig="c@example.test")])
        self.assertEqual(res[0][:2], (TEMPFAIL, "4.3.0"))
        self.assertIn("busy", res[0][2])
        self.assertEqual(res[1][:2], (PERMFAIL, "5.3.0"))
        self.assertIn("status 67: no such list", res[1][2])
        self.assertEqual(res[2][:2], (PERMFAIL, "5.3.0"))

    def test_command_time_limit(self):
        qid = send(subject="command slow")
        t0 = time.monotonic()
        res = deliver(qid, [rcpt(0, "|sleep 30", orig="a@example.test")])
        took = time.monotonic() - t0
        self.assertEqual(res[0][:2], (PERMFAIL, "5.3.0"), res)
        self.assertIn("time limit", res[0][2])
        self.assertLess(took, COMMAND_LIMIT + 8)

    def test_no_owner(self):
        # local_virtual_owner empty: never as root; otherwise as ourselves.
        path = os.path.join(OUT, "noowner.mbox")
        qid = send(subject="no owner")
        res = deliver(qid, [rcpt(0, path, orig="a@example.test"),
                            rcpt(1, "|cat > /dev/null", orig="b@example.test")],
                      farm="localnoowner")
        if ROOT:
            for i in (0, 1):
                self.assertEqual(res[i][:2], (TEMPFAIL, "4.3.5"), res)
                self.assertIn("local_virtual_owner is not set", res[i][2])
            self.assertFalse(os.path.exists(path))
        else:
            self.assertEqual([res[0][0], res[1][0]], [OK, OK], res)


if __name__ == "__main__":
    farmlib.run_tests("local", lambda test: LAST_LOG or FD.log())
