#!/usr/bin/env python3
"""Integration tests of the pipe transport farm (issue 7).

farmd runs an smtpserver farm (messages go into the queue over SMTP) and
three pipe farms (transport/pipe):
  pipe      argv with every macro, default flags (RD): one run per recipient
  pipeall   no recipient macro, pipe_flags = R: one run for all recipients
  pipebad   argv names a program that does not exist
The command is a Python script the test writes into its temp dir.  Each
run records argv, stdin, uid/gids, environment and its parent's pid in
RECORDS/<queue id>.<pid>.json (+ .stdin) and then behaves by the
recipient's local part (the sender's in pipeall): exitN exits N, kill
kills itself with SIGTERM, sleep sleeps past pipe_time_limit (2s), say and
fail print, noread exits 0 without reading stdin.  The test plays the
scheduler: DeliveryRequest frames to the farm's socket, DeliveryReply
checked.  Python 3 standard library only; prints "N passed, N failed".
"""

import hashlib
import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import tempfile
import shutil
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_SRCDIR = os.path.abspath(os.environ.get("top_srcdir") or os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(TOP_SRCDIR, "tests", "smtpserver"))
import smtplib_helpers as H  # noqa: E402
from smtplib_helpers import Raw, Queue, farmlib, qid_of, wait_until  # noqa: E402
import zfproto as P  # noqa: E402

PIPE = os.path.join(H.TOP_BUILDDIR, "transport", "pipe")
OK, TEMPFAIL, PERMFAIL = 1, 2, 3
TIME_LIMIT = 2

FD = PORT = QUEUE = None
SCRIPT_DIR = RECORDS = SCRIPT = None
LAST_LOG = ""

# Every macro, one word each, plus words that mix macros and text.
MACRO_WORDS = ["qid=${queue_id}", "sender=${sender}", "rcpt=${recipient}",
               "orig=${original_recipient}", "user=${user}", "ext=${extension}",
               "mailbox=${mailbox}", "domain=${domain}", "nexthop=${nexthop}",
               "client=${client_address}", "clientname=${client_hostname}",
               "size=${size}", "mix=${user}@${domain}:$$x", "$$"]

COMMAND = r'''#!%(python)s
import json, os, signal, sys, time
args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
# the environment as exec'd (Python itself adds LC_CTYPE to os.environ)
with open("/proc/self/environ", "rb") as f:
    env = dict(e.decode().split("=", 1) for e in f.read().split(b"\0") if e)
key = args.get("mailbox") or args.get("sender", "").split("@")[0]
data = b"" if key == "noread" else sys.stdin.buffer.read()
name = os.path.join(%(records)r, "%%s.%%d" %% (args.get("qid", "none"), os.getpid()))
with open(name + ".stdin", "wb") as f:
    f.write(data)
rec = {"argv": sys.argv, "uid": os.getuid(), "gid": os.getgid(),
       "groups": sorted(os.getgroups()), "env": env, "ppid": os.getppid(),
       "pid": os.getpid(), "cwd": os.getcwd(), "umask": os.umask(0o77)}
with open(name + ".tmp", "w") as f:
    json.dump(rec, f)
os.rename(name + ".tmp", name + ".json")
if key.startswith("exit"):
    sys.exit(int(key[4:]))
if key == "kill":
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10)
if key == "sleep":
    time.sleep(30)
if key == "say":
    print("hello from the command")
    print("second line")
if key == "fail":
    sys.stderr.write("mailbox full\n")
    sys.exit(1)
sys.exit(0)
'''


def conf_argv(words):
    """An argv value as zfarm.conf wants it: $ doubled (the file expands $name)."""
    return " ".join(w.replace("$", "$$") for w in words)


def world_runnable(path):
    """Whether anybody (the command runs as nobody when we are root) can run path."""
    path = os.path.realpath(path)
    try:
        if not os.stat(path).st_mode & 0o001:
            return False
        d = os.path.dirname(path)
        while True:
            if not os.stat(d).st_mode & 0o001:
                return False
            if d == "/":
                return True
            d = os.path.dirname(d)
    except OSError:
        return False


def interpreter():
    for p in (sys.executable, "/usr/bin/python3"):
        if p and (os.geteuid() != 0 or world_runnable(p)):
            return p
    return None


def setUpModule():
    global FD, PORT, QUEUE, SCRIPT_DIR, RECORDS, SCRIPT
    if not os.access(PIPE, os.X_OK) or H.binaries_missing():
        raise unittest.SkipTest("not built")
    python = interpreter()
    if python is None:
        raise unittest.SkipTest("no python3 that pipe_user nobody may run")
    # Commands run as nobody when we are root: a directory they can reach.
    SCRIPT_DIR = tempfile.mkdtemp(prefix="zfarm-pipe-cmd-")
    os.chmod(SCRIPT_DIR, 0o755)
    RECORDS = os.path.join(SCRIPT_DIR, "records")
    os.mkdir(RECORDS)
    os.chmod(RECORDS, 0o1777)
    SCRIPT = os.path.join(SCRIPT_DIR, "command")
    with open(SCRIPT, "w") as f:
        f.write(COMMAND % {"python": python, "records": RECORDS})
    os.chmod(SCRIPT, 0o755)

    FD = farmlib.FarmdInstance(tag="pipe")
    PORT = H.free_port()
    g = dict(H.BASE_GLOBALS)
    g.update({"smtpd_verify_recipients": "no", "log_level": "info",
              "message_size_limit": "10m"})
    common = {"process_limit": 1, "client_limit": 1, "program": PIPE}
    FD.write_config([
        H.smtp_farm("smtpserver", PORT),
        farmlib.farm_section("pipe", listen="unix:private/pipe",
                             argv=conf_argv([SCRIPT] + MACRO_WORDS),
                             pipe_time_limit="%ds" % TIME_LIMIT, **common),
        farmlib.farm_section("pipeall", listen="unix:private/pipeall",
                             argv=conf_argv([SCRIPT, "qid=${queue_id}", "sender=${sender}"]),
                             pipe_flags="R", **common),
        farmlib.farm_section("pipebad", listen="unix:private/pipebad",
                             argv="/nonexistent/zfarm-no-such-command -x", **common),
    ], g)
    try:
        FD.start()
        wait_until(lambda: farmlib.can_connect(PORT), 10, what="smtpserver")
        for name in ("pipe", "pipeall", "pipebad"):
            wait_until(lambda: os.path.exists(os.path.join(FD.run, "private", name)), 10,
                       what="the %s socket" % name)
    except Exception:
        sys.stderr.write(FD.log())
        FD.cleanup()
        shutil.rmtree(SCRIPT_DIR, ignore_errors=True)
        raise
    QUEUE = Queue(os.path.join(FD.run, "queue"))


def tearDownModule():
    global LAST_LOG
    if FD is not None:
        LAST_LOG = FD.log()
        FD.cleanup()
    if SCRIPT_DIR:
        shutil.rmtree(SCRIPT_DIR, ignore_errors=True)


# ---- messages ----

BODY = ("First line.\r\n"
        "..a dot-stuffed line\r\n"
        "From the middle of a line\r\n"
        "Last line.\r\n")


def send(body=BODY, sender="s@example.test", rcpt="bob@remote.test"):
    """A message into the queue over SMTP: (queue ID, content as stored)."""
    header = ("From: Sender <%s>\r\nTo: %s\r\nSubject: pipe test\r\n"
              "Message-ID: <pipe-%s@example.test>\r\n\r\n" % (sender, rcpt, time.time()))
    with Raw(PORT) as r:
        r.send("EHLO x\r\n")
        r.reply()
        assert r.cmd("MAIL FROM:<%s>" % sender).startswith("250")
        assert r.cmd("RCPT TO:<%s>" % rcpt).startswith("250")
        assert r.cmd("DATA").startswith("354")
        r.send((header + body + ".\r\n").encode("utf-8"))
        code, lines = r.reply()
        assert code == 250, lines
    qid = qid_of(lines[-1])
    _, content = QUEUE.read(qid)
    return qid, content


_MSG = {}


def message():
    """One shared small message."""
    if "plain" not in _MSG:
        _MSG["plain"] = send()
    return _MSG["plain"]


def envelope(qid):
    env, _ = QUEUE.read(qid)
    e = P.fields(env)
    return {k: e.get(n, [b""])[0].decode() for k, n in (("client_addr", 3), ("client_name", 4))}


# ---- the scheduler's side ----

def recipient(index, address, orig=None):
    return P.pb_varint(1, index) + P.pb_bytes(2, address) + P.pb_bytes(6, orig or address)


def request(qid, rcpts, sender="s@example.test", nexthop="nh.example.test", size=0,
            channel="pipe"):
    ref = P.pb_bytes(1, qid)
    if size:
        ref += P.pb_varint(3, size)
    return (P.pb_bytes(1, ref) + P.pb_bytes(2, channel) + P.pb_bytes(3, nexthop)
            + P.pb_bytes(4, sender) + b"".join(P.pb_bytes(5, r) for r in rcpts))


def Sched(farm="pipe", timeout=30.0):
    """One connection to a pipe farm, as the scheduler keeps it."""
    return P.TransportClient(os.path.join(FD.run, "private", farm), timeout)


def reply_of(f):
    assert f is not None, "the pipe farm closed the connection without a reply"
    assert P.DELIVERY_REPLY in f, "got frame fields %r" % sorted(f)
    rep = P.delivery_reply(f)
    return ({r["index"]: {k: r[k] for k in ("status", "enhanced", "text")}
             for r in rep["results"]}, rep["relay"])


def deliver(rq, farm="pipe"):
    """One request on a fresh connection: ({index: result}, relay)."""
    with Sched(farm) as s:
        rid = s.send(rq)
        f = s.read()
    assert f is None or f[2][0] == rid
    return reply_of(f)


def runs(qid):
    """The recorded runs for qid, oldest first: dicts with argv, stdin, ..."""
    out = []
    for name in os.listdir(RECORDS):
        if name.startswith(qid + ".") and name.endswith(".json"):
            with open(os.path.join(RECORDS, name)) as f:
                rec = json.load(f)
            with open(os.path.join(RECORDS, name[:-5] + ".stdin"), "rb") as f:
                rec["stdin"] = f.read()
            rec["mtime"] = os.stat(os.path.join(RECORDS, name)).st_mtime_ns
            out.append(rec)
    return sorted(out, key=lambda r: r["mtime"])


def argmap(run):
    return dict(a.split("=", 1) for a in run["argv"][1:] if "=" in a)


def lf(content):
    return content.replace(b"\r\n", b"\n")


# ---- tests ----

class T01Macros(unittest.TestCase):
    def test_every_macro(self):
        qid, _ = send()
        env = envelope(qid)
        results, relay = deliver(request(qid, [recipient(4, "Joe+Lists-x@Example.TEST",
                                                         orig="alias@example.test")],
                                         size=4321))
        self.assertEqual(results[4]["status"], OK, results)
        self.assertEqual(relay, "pipe")
        (run,) = runs(qid)
        self.assertEqual(run["argv"][0], SCRIPT)
        want = {"qid": qid, "sender": "s@example.test", "rcpt": "Joe+Lists-x@Example.TEST",
                "orig": "alias@example.test", "user": "Joe", "ext": "Lists-x",
                "mailbox": "Joe+Lists-x", "domain": "Example.TEST",
                "nexthop": "nh.example.test", "client": env["client_addr"],
                "clientname": env["client_name"], "size": "4321",
                "mix": "Joe@Example.TEST:$x"}
        self.assertEqual(argmap(run), want)
        self.assertEqual(env["client_addr"], "127.0.0.1")
        self.assertEqual(run["argv"][-1], "$")
        self.assertEqual(len(run["argv"]), 1 + len(MACRO_WORDS))

    def test_values_stay_one_word_and_reach_no_shell(self):
        qid, _ = message()
        victim = os.path.join(SCRIPT_DIR, "victim")
        with open(victim, "w") as f:
            f.write("still here\n")
        os.chmod(victim, 0o666)
        nasty = '"a;rm -f %s $(touch %s.2) `id`"@example.test' % (victim, victim)
        results, _ = deliver(request(qid, [recipient(0, nasty)],
                                     sender='"s p|x"@example.test'))
        self.assertEqual(results[0]["status"], OK, results)
        (run,) = [r for r in runs(qid) if argmap(r)["rcpt"] == nasty]
        a = argmap(run)
        self.assertEqual(a["sender"], '"s p|x"@example.test')
        self.assertEqual(a["mailbox"], "a;rm -f %s $(touch %s.2) `id`" % (victim, victim))
        self.assertEqual(a["user"], a["mailbox"])
        self.assertEqual(a["domain"], "example.test")
        self.assertEqual(len(run["argv"]), 1 + len(MACRO_WORDS))
        self.assertTrue(os.path.exists(victim))
        self.assertFalse(os.path.exists(victim + ".2"))

    def test_null_sender_and_no_extension(self):
        qid, _ = message()
        results, _ = deliver(request(qid, [recipient(0, "plain@example.test")], sender=""))
        self.assertEqual(results[0]["status"], OK)
        run = [r for r in runs(qid) if argmap(r)["rcpt"] == "plain@example.test"][-1]
        a = argmap(run)
        self.assertEqual((a["sender"], a["user"], a["ext"]), ("MAILER-DAEMON", "plain", ""))
        self.assertTrue(run["stdin"].startswith(b"Return-Path: <>\n"))


class T02Input(unittest.TestCase):
    def test_headers_and_lf_line_ends(self):
        qid, content = send()
        results, _ = deliver(request(qid, [recipient(0, "carol@example.test",
                                                     orig="c@example.test")]))
        self.assertEqual(results[0]["status"], OK)
        (run,) = runs(qid)
        want = (b"Return-Path: <s@example.test>\nDelivered-To: carol@example.test\n"
                + lf(content))
        self.assertEqual(run["stdin"], want)
        self.assertNotIn(b"\r", run["stdin"])
        self.assertIn(b"\n.a dot-stuffed line\n", run["stdin"])  # unstuffed, as stored
        self.assertIn(b"\nFrom the middle of a line\n", run["stdin"])  # no mbox quoting
        self.assertTrue(run["stdin"].endswith(b"Last line.\n"))

    def test_two_megabytes_streamed(self):
        line = "%s\r\n" % ("0123456789" * 7)
        body = "".join("%06d %s" % (i, line) for i in range(2 * 1024 * 1024 // (len(line) + 7)))
        qid, content = send(body=body)
        self.assertGreater(len(content), 2 * 1024 * 1024 - 200)
        results, _ = deliver(request(qid, [recipient(0, "big@example.test"),
                                           recipient(1, "noread@example.test")]))
        self.assertEqual((results[0]["status"], results[1]["status"]), (OK, OK), results)
        big = [r for r in runs(qid) if argmap(r)["mailbox"] == "big"]
        self.assertEqual(len(big), 1)
        want = b"Return-Path: <s@example.test>\nDelivered-To: big@example.test\n" + lf(content)
        self.assertEqual(len(big[0]["stdin"]), len(want))
        self.assertEqual(hashlib.sha256(big[0]["stdin"]).hexdigest(),
                         hashlib.sha256(want).hexdigest())

    def test_clean_environment_and_identity(self):
        qid, _ = message()
        results, _ = deliver(request(qid, [recipient(0, "who@example.test")]))
        self.assertEqual(results[0]["status"], OK)
        run = [r for r in runs(qid) if argmap(r)["mailbox"] == "who"][-1]
        self.assertEqual(run["env"], {"PATH": "/usr/bin:/bin", "SHELL": "/bin/sh"})
        self.assertEqual(run["cwd"], "/")
        self.assertEqual(run["umask"], 0o77)
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            self.assertEqual((run["uid"], run["gid"]), (nobody.pw_uid, nobody.pw_gid))
            self.assertNotIn(0, run["groups"])
        else:
            self.assertEqual(run["uid"], os.geteuid())


class T03Results(unittest.TestCase):
    def test_exit_status_mapping(self):
        qid, _ = message()
        cases = [("exit0", OK, "2.0.0", "delivered via pipe service"),
                 ("exit75", TEMPFAIL, "4.3.0",
                  "command exited with status 75 (temporary failure)"),
                 ("exit71", TEMPFAIL, "4.3.0",
                  "command exited with status 71 (system resource problem)"),
                 ("exit67", PERMFAIL, "5.1.1", "command exited with status 67 (user unknown)"),
                 ("exit68", PERMFAIL, "5.1.2",
                  "command exited with status 68 (host name unknown)"),
                 ("exit77", PERMFAIL, "5.7.0",
                  "command exited with status 77 (permission denied)"),
                 ("exit78", PERMFAIL, "5.3.5",
                  "command exited with status 78 (local configuration error)"),
                 ("exit1", PERMFAIL, "5.3.0", "command exited with status 1"),
                 ("exit200", PERMFAIL, "5.3.0", "command exited with status 200"),
                 ("kill", TEMPFAIL, "4.3.0", "command killed by signal 15")]
        rq = request(qid, [recipient(10 + i, "%s@example.test" % c[0])
                           for i, c in enumerate(cases)])
        results, _ = deliver(rq)
        for i, (who, st, enh, text) in enumerate(cases):
            with self.subTest(who=who):
                self.assertEqual((results[10 + i]["status"], results[10 + i]["enhanced"],
                                  results[10 + i]["text"]), (st, enh, text))
        FD.wait_log(r"%s: to=<exit67@example\.test>, relay=pipe, dsn=5\.1\.1, status=bounced "
                    r"\(command exited with status 67 \(user unknown\)\)" % qid)
        FD.wait_log(r"%s: to=<exit0@example\.test>, relay=pipe, dsn=2\.0\.0, status=sent" % qid)

    def test_output_in_the_text(self):
        qid, _ = message()
        results, _ = deliver(request(qid, [recipient(0, "say@example.test"),
                                           recipient(1, "fail@example.test")]))
        self.assertEqual((results[0]["status"], results[0]["text"]),
                         (OK, "delivered via pipe service (hello from the command; "
                              "second line)"))
        self.assertEqual((results[1]["status"], results[1]["enhanced"], results[1]["text"]),
                         (PERMFAIL, "5.3.0", "command exited with status 1: mailbox full"))

    def test_time_limit(self):
        qid, _ = message()
        t0 = time.monotonic()
        results, _ = deliver(request(qid, [recipient(0, "sleep@example.test"),
                                           recipient(1, "after@example.test")]))
        took = time.monotonic() - t0
        self.assertEqual((results[0]["status"], results[0]["enhanced"], results[0]["text"]),
                         (TEMPFAIL, "4.3.0", "command time limit exceeded"))
        self.assertEqual(results[1]["status"], OK)  # the next run is not harmed
        self.assertGreaterEqual(took, TIME_LIMIT - 0.5)
        self.assertLess(took, TIME_LIMIT + 8)
        (slept,) = [r for r in runs(qid) if argmap(r)["mailbox"] == "sleep"]
        wait_until(lambda: not farmlib.alive(slept["pid"]), 5, what="the command to be gone")

    def test_missing_program(self):
        qid, _ = message()
        results, relay = deliver(request(qid, [recipient(0, "a@example.test")]), farm="pipebad")
        self.assertEqual((results[0]["status"], results[0]["enhanced"]), (TEMPFAIL, "4.3.5"))
        self.assertEqual(results[0]["text"], "cannot execute /nonexistent/zfarm-no-such-command:"
                         " No such file or directory")
        self.assertEqual(relay, "pipebad")

    def test_message_gone(self):
        qid, _ = message()
        gone = qid[:-5] + "ZZZZZ"
        self.assertFalse(QUEUE.has(gone))
        results, _ = deliver(request(gone, [recipient(0, "a@example.test")]))
        self.assertEqual((results[0]["status"], results[0]["enhanced"]), (PERMFAIL, "5.3.0"))
        self.assertTrue(results[0]["text"].startswith("cannot read the message"), results)
        self.assertEqual(runs(gone), [])


class T04Runs(unittest.TestCase):
    def test_one_run_per_recipient(self):
        qid, content = send()
        addrs = ["r1@example.test", "r2+x@example.test", "r3@other.test"]
        results, _ = deliver(request(qid, [recipient(i, a) for i, a in enumerate(addrs)]))
        self.assertEqual([results[i]["status"] for i in range(3)], [OK] * 3)
        rs = runs(qid)
        self.assertEqual(sorted(argmap(r)["rcpt"] for r in rs), addrs)
        for r in rs:
            self.assertEqual(r["stdin"], b"Return-Path: <s@example.test>\nDelivered-To: "
                             + argmap(r)["rcpt"].encode() + b"\n" + lf(content))

    def test_one_run_for_all(self):
        qid, content = send()
        rq = request(qid, [recipient(i, "u%d@example.test" % i) for i in range(3)],
                     sender="exit75@example.test")
        results, relay = deliver(rq, farm="pipeall")
        self.assertEqual(relay, "pipeall")
        self.assertEqual([(results[i]["status"], results[i]["enhanced"]) for i in range(3)],
                         [(TEMPFAIL, "4.3.0")] * 3)
        (run,) = runs(qid)
        self.assertEqual(run["argv"][1:], ["qid=" + qid, "sender=exit75@example.test"])
        self.assertEqual(run["stdin"], b"Return-Path: <exit75@example.test>\n" + lf(content))

        results, _ = deliver(request(qid, [recipient(0, "v@example.test"),
                                           recipient(1, "w@example.test")]), farm="pipeall")
        self.assertEqual([results[i]["text"] for i in range(2)],
                         ["delivered via pipeall service"] * 2)


class T05Protocol(unittest.TestCase):
    def assert_serving(self):
        qid, _ = message()
        results, _ = deliver(request(qid, [recipient(0, "again@example.test")]))
        self.assertEqual(results[0]["status"], OK)
        return [r for r in runs(qid) if argmap(r)["mailbox"] == "again"][-1]["ppid"]

    def test_malformed_request_then_serves(self):
        before = self.assert_serving()
        with Sched() as s:
            s.send_raw(b"\x00\x00\x00\x05hello")
            self.assertIsNone(s.read(), "the connection should have been closed")
        with Sched() as s:
            s.send(request("not-a-queue-id", [recipient(0, "a@b.test")]))
            self.assertIsNone(s.read(), "the connection should have been closed")
        after = self.assert_serving()
        self.assertEqual(after, before, "the pipe process was replaced")
        FD.wait_log(r"pipe\[\d+\]: warning: scheduler connection closed: ")

    def test_several_requests_on_one_connection(self):
        qid, _ = message()
        with Sched() as s:
            for i in range(3):
                rid = s.send(request(qid, [recipient(i, "exit%d@example.test" % (75 * (i % 2)))]))
                f = s.read()
                self.assertEqual(f[2][0], rid)
                results, _ = reply_of(f)
                self.assertEqual(results[i]["status"], TEMPFAIL if i % 2 else OK)


class T06StartUp(unittest.TestCase):
    """The program alone (-c, -s) with bad parameters: it must refuse to start."""

    def start_alone(self, params):
        tmp = tempfile.mkdtemp(prefix="zfarm-pipe-alone-")
        try:
            conf = os.path.join(tmp, "zfarm.conf")
            with open(conf, "w") as f:
                f.write("run_directory = %s\n\n[farm alone]\n" % os.path.join(tmp, "run"))
                for k, v in params.items():
                    f.write("%s = %s\n" % (k, v))
            os.makedirs(os.path.join(tmp, "run", "queue"))
            return subprocess.run([PIPE, "-c", conf, "-F", "alone", "-L", "stderr",
                                   "-s", "pipe=unix:%s" % os.path.join(tmp, "sock")],
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=20)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_unknown_macro(self):
        r = self.start_alone({"argv": "/bin/cat $${nosuch}"})
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("unknown macro ${nosuch}", r.stderr)

    def test_no_argv(self):
        r = self.start_alone({"pipe_flags": "R"})
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no argv", r.stderr)

    def test_relative_command(self):
        r = self.start_alone({"argv": "cat"})
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("absolute path", r.stderr)

    def test_bad_flag_and_exit_code(self):
        r = self.start_alone({"argv": "/bin/cat", "pipe_flags": "RX"})
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("unknown flag 'X'", r.stderr)
        r = self.start_alone({"argv": "/bin/cat", "pipe_temporary_exit_codes": "75, 300"})
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('"300" is not an exit status', r.stderr)

    def test_root_user_refused(self):
        if os.geteuid() != 0:
            self.skipTest("only root changes user")
        r = self.start_alone({"argv": "/bin/cat", "pipe_user": "root"})
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("must not run as root", r.stderr)


if __name__ == "__main__":
    farmlib.run_tests("pipe", lambda test: LAST_LOG or FD.log())
