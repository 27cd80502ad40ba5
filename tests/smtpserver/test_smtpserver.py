#!/usr/bin/env python3
"""Integration tests of the smtpserver farm (issue #4).

Run as `python3 tests/smtpserver/test_smtpserver.py` with top_builddir and
top_srcdir in the environment.  One shared farmd runs several smtpserver
farms on 127.0.0.1 ports, each with its own limits (given to the program
as -o overrides in the farm's args) and its own queue directory; tests that
need a standalone smtpserver (stress mode, strace, a full disk) start one.
Conditions are awaited with deadlines (farmlib.wait_until).  Prints
"N passed, N failed" at the end and exits non-zero if anything failed.
"""

import os
import re
import shutil
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import smtplib_helpers as H  # noqa: E402
from smtplib_helpers import Raw, Queue, farmlib, qid_of, wait_until  # noqa: E402
import zfproto as P  # noqa: E402

FD = None          # the shared FarmdInstance
PORTS = {}         # farm name -> port
QUEUES = {}        # farm name -> Queue
SUBMIT = None      # the unix listener's path

# farm name -> smtpserver parameters, set in the farm's own section (they
# override the globals for that farm; T16 checks it on its own).
FARMS = {
    "smtpserver": {},
    "limits": {"message_size_limit": "100k", "smtpd_recipient_limit": 5,
               "header_size_limit": "4k", "smtpd_hard_error_limit": 3},
    "timeout": {"smtpd_timeout": "2s"},
    "strict": {"smtpd_helo_required": "yes", "smtpd_data_line_limit": 0},
    "relay": {"mynetworks": "10.0.0.0/8"},
    "minfree": {"queue_minfree": "1000000g"},
}


def setUpModule():
    global FD, SUBMIT
    missing = H.binaries_missing()
    if missing:
        raise unittest.SkipTest("not built: %s" % ", ".join(missing))
    FD = farmlib.FarmdInstance(tag="smtpd")
    # Under AddressSanitizer freed memory waits in a quarantine (256 MB by
    # default) and counts in RSS; keep it small so RSS growth means buffering.
    FD.extra_env["ASAN_OPTIONS"] = ":".join(
        x for x in (os.environ.get("ASAN_OPTIONS"), "quarantine_size_mb=2") if x)
    sections = []
    for name, over in FARMS.items():
        port = H.free_port()
        PORTS[name] = port
        params = {}
        if name == "smtpserver":
            qdir = os.path.join(FD.run, "queue")
            extra = "submit=unix:public/submit"
        else:
            qdir = os.path.join(FD.run, "q-" + name)
            over = dict(over, queue_directory=qdir)
            extra = None
        params.update(over)
        QUEUES[name] = Queue(qdir)
        sections.append(H.smtp_farm(name, port, extra_listen=extra, **params))
    FD.write_config(sections, H.BASE_GLOBALS)
    try:
        FD.start()
        for name, port in PORTS.items():
            wait_until(lambda: farmlib.can_connect(port), 10, what="farm %s" % name)
    except Exception:
        sys.stderr.write(FD.log())
        FD.cleanup()
        raise
    SUBMIT = os.path.join(FD.run, "public", "submit")


def tearDownModule():
    global LAST_LOG
    if FD is not None:
        LAST_LOG = FD.log()
        left = FD.cleanup()
        if left:
            sys.stderr.write("leftover processes killed: %s\n" % left)


def smtp_children():
    return FD.children()


def session(farm="smtpserver", ehlo=True):
    r = Raw(PORTS[farm])
    assert r.greeting and r.greeting[0] == 220, r.greeting
    if ehlo:
        r.send("EHLO client.test\r\n")
        code, _ = r.reply()
        assert code == 250, code
    return r


def transaction(r, sender="a@example.test", rcpts=("b@localhost",)):
    """MAIL, RCPT..., DATA up to the 354."""
    assert r.cmd("MAIL FROM:<%s>" % sender) == "250 2.1.0 Ok"
    for rc in rcpts:
        got = r.cmd("RCPT TO:<%s>" % rc)
        assert got == "250 2.1.5 Ok", (rc, got)
    got = r.cmd("DATA")
    assert got.startswith("354 "), got


RECEIVED_RE = (rb"Received: from [^\r\n]+\r\n\tby [^\r\n]+ \(zfarm\) with E?SMTP id %s"
               rb"(\r\n\tfor <[^\r\n>]+>; [^\r\n]+\r\n|; [^\r\n]+\r\n)")


def wait_new_log(pattern, before, timeout=5.0):
    """Wait until the log has more matches of pattern than `before`."""
    wait_until(lambda: FD.log_count(pattern) > before, timeout,
               what="a new log line /%s/" % pattern)


def no_change(queue, before_ids):
    """Nothing new under msg/ and nothing under tmp/."""
    new = queue.msg_ids() - before_ids
    assert not new, "unexpected queue files: %s" % sorted(new)
    wait_until(lambda: not queue.tmp_files(), 3, what="tmp/ to be empty")


# ---- 1, 2, 3: whole messages ----

class T01Smtplib(unittest.TestCase):
    def test_smtplib_message(self):
        q = QUEUES["smtpserver"]
        body = (b"Subject: t1\r\nFrom: a@example.test\r\n\r\nline one\r\n.dot line\r\n"
                b"..two dots\r\n.\tx\r\nlast\r\n")
        with smtplib.SMTP(H.LOCALHOST, PORTS["smtpserver"], timeout=10) as s:
            code, _ = s.ehlo("client.test")
            self.assertEqual(code, 250)
            f = s.esmtp_features
            for kw in ("pipelining", "8bitmime", "enhancedstatuscodes", "smtputf8",
                       "chunking", "dsn"):
                self.assertIn(kw, f)
            self.assertEqual(f.get("size"), "10240000")
            self.assertEqual(s.sendmail("a@example.test", ["b@localhost"], body), {})
            self.assertEqual(s.mail("a@example.test")[0], 250)
            self.assertEqual(s.rcpt("b@localhost")[0], 250)
            code, resp = s.data(body)
            self.assertEqual(code, 250)
            resp = resp.decode()
            self.assertRegex(resp, r"^2\.0\.0 Ok: queued as [0-9A-Za-z]+$")
            qid = qid_of(resp)
        self.assertTrue(q.has(qid), q.msg_path(qid))
        env, content = q.read(qid)
        self.assertIn(b"a@example.test", env)
        self.assertIn(b"b@localhost", env)
        self.assertTrue(content.endswith(body), content)
        prefix = content[:len(content) - len(body)]
        self.assertRegex(prefix, rb"\A" + RECEIVED_RE % re.escape(qid.encode()) + rb"\Z")
        self.assertIn(b"id " + qid.encode(), prefix)
        FD.wait_log(r"connect from unknown\[127\.0\.0\.1\]")
        FD.wait_log(r"%s: client=unknown\[127\.0\.0\.1\]" % qid)
        FD.wait_log(r"%s: from=<a@example\.test>, size=\d+" % qid)
        FD.wait_log(r"disconnect from unknown\[127\.0\.0\.1\] .*commands=\d+")


class T02Swaks(unittest.TestCase):
    def setUp(self):
        if not shutil.which("swaks"):
            self.skipTest("swaks not installed")

    def test_swaks_pipeline(self):
        q = QUEUES["smtpserver"]
        tag = "swaks-%d" % os.getpid()
        r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % PORTS["smtpserver"],
                            "--to", "b@localhost", "--from", "a@example.test", "--pipeline",
                            "--header", "Subject: %s" % tag, "--timeout", "10"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        qid = qid_of(r.stdout)
        self.assertTrue(q.has(qid))
        self.assertIn(tag.encode(), q.read(qid)[1])

    def test_swaks_bdat(self):
        h = subprocess.run(["swaks", "--help"], capture_output=True, text=True).stdout
        if "bdat" not in h.lower():
            self.skipTest("this swaks has no BDAT support")
        q = QUEUES["smtpserver"]
        r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % PORTS["smtpserver"],
                            "--to", "b@localhost", "--from", "a@example.test", "--bdat"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertTrue(q.has(qid_of(r.stdout)))


class T03Load(unittest.TestCase):
    def test_1000_messages_20_sessions(self):
        q = QUEUES["smtpserver"]
        results, errors = [], []
        lock = threading.Lock()

        def worker(t):
            got = []
            try:
                with smtplib.SMTP(H.LOCALHOST, PORTS["smtpserver"], timeout=30) as s:
                    s.ehlo("load.test")
                    for i in range(50):
                        body = b"Subject: load %d %d\r\n\r\nbody %d %d\r\n" % (t, i, t, i)
                        code, _ = s.mail("a@example.test")
                        assert code == 250, code
                        code, _ = s.rcpt("b@localhost")
                        assert code == 250, code
                        code, resp = s.data(body)
                        assert code == 250, (code, resp)
                        got.append((qid_of(resp.decode()), body))
            except Exception as e:  # noqa: BLE001
                with lock:
                    errors.append("thread %d: %r" % (t, e))
            with lock:
                results.extend(got)

        ts = [threading.Thread(target=worker, args=(t,)) for t in range(20)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        self.assertEqual(errors, [])
        self.assertEqual(len(results), 1000)
        self.assertEqual(len(set(qid for qid, _ in results)), 1000)
        for qid, body in results:
            self.assertTrue(q.read(qid)[1].endswith(body), qid)
        wait_until(lambda: not q.tmp_files(), 3, what="tmp/ to be empty")


# ---- 4, 5: pipelining and BDAT ----

class T04Pipelining(unittest.TestCase):
    def test_pipelined_transactions(self):
        q = QUEUES["smtpserver"]
        with Raw(PORTS["smtpserver"]) as r:
            r.send("EHLO x\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@localhost>\r\n"
                   "RCPT TO:<c@localhost>\r\nDATA\r\n")
            code, lines = r.reply()
            self.assertEqual(code, 250)
            self.assertIn("PIPELINING", lines)
            self.assertEqual(r.replies(4), ["250 2.1.0 Ok", "250 2.1.5 Ok", "250 2.1.5 Ok",
                                            "354 End data with <CR><LF>.<CR><LF>"])
            r.send("Subject: p1\r\n\r\nbody one\r\n.\r\nMAIL FROM:<a2@example.test>\r\n"
                   "RCPT TO:<d@localhost>\r\nDATA\r\n")
            got = r.replies(4)
            self.assertRegex(got[0], r"^250 2\.0\.0 Ok: queued as \S+$")
            self.assertEqual(got[1:], ["250 2.1.0 Ok", "250 2.1.5 Ok",
                                       "354 End data with <CR><LF>.<CR><LF>"])
            r.send("Subject: p2\r\n\r\nbody two\r\n.\r\nQUIT\r\n")
            got2 = r.replies(2)
            self.assertRegex(got2[0], r"^250 2\.0\.0 Ok: queued as \S+$")
            self.assertEqual(got2[1], "221 2.0.0 Bye")
            self.assertTrue(r.at_eof())
        id1, id2 = qid_of(got[0]), qid_of(got2[0])
        self.assertNotEqual(id1, id2)
        env1, c1 = q.read(id1)
        env2, c2 = q.read(id2)
        self.assertTrue(c1.endswith(b"Subject: p1\r\n\r\nbody one\r\n"))
        self.assertTrue(c2.endswith(b"Subject: p2\r\n\r\nbody two\r\n"))
        self.assertIn(b"c@localhost", env1)
        self.assertIn(b"a2@example.test", env2)
        self.assertIn(b"d@localhost", env2)


class T05Bdat(unittest.TestCase):
    def test_crlf_split_across_chunks(self):
        q = QUEUES["smtpserver"]
        chunks = [b"Subject: b\r", b"\n\r\nhello\r", b"\nworld\r\n"]
        with session() as r:
            self.assertEqual(r.cmd("MAIL FROM:<a@example.test>"), "250 2.1.0 Ok")
            self.assertEqual(r.cmd("RCPT TO:<b@localhost>"), "250 2.1.5 Ok")
            total = 0
            for i, c in enumerate(chunks):
                last = i == len(chunks) - 1
                r.send(b"BDAT %d%s\r\n" % (len(c), b" LAST" if last else b"") + c)
                total += len(c)
                got = r.reply_line()
                if last:
                    self.assertRegex(got, r"^250 2\.0\.0 Ok: queued as \S+$")
                else:
                    self.assertEqual(got, "250 2.0.0 Ok: %d octets" % total)
        env, content = q.read(qid_of(got))
        self.assertTrue(content.endswith(b"\r\nSubject: b\r\n\r\nhello\r\nworld\r\n"), content)

    def test_bdat_0_last(self):
        q = QUEUES["smtpserver"]
        with session() as r:
            # pipelined: the whole transaction in one write
            r.send(b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@localhost>\r\n"
                   b"BDAT 16\r\nSubject: z\r\n\r\nzz" + b"BDAT 0 LAST\r\n")
            got = r.replies(4)
            self.assertEqual(got[:3], ["250 2.1.0 Ok", "250 2.1.5 Ok", "250 2.0.0 Ok: 16 octets"])
            self.assertRegex(got[3], r"^250 2\.0\.0 Ok: queued as \S+$")
        content = q.read(qid_of(got[3]))[1]
        # the last line gets its CR LF
        self.assertTrue(content.endswith(b"\r\nSubject: z\r\n\r\nzz\r\n"), content)

    def test_bdat_without_mail_is_not_executed(self):
        payload = b"QUIT\r\nMAIL FROM:<x@y>\r\n"
        with session() as r:
            r.send(b"BDAT %d\r\n" % len(payload) + payload)
            self.assertEqual(r.reply_line(), "503 5.5.1 Error: need MAIL command")
            # the chunk's bytes were no commands: no 221, no MAIL reply, still open
            self.assertEqual(r.cmd("NOOP"), "250 2.0.0 Ok")
            self.assertEqual(r.cmd("MAIL FROM:<a@example.test>"), "250 2.1.0 Ok")
            self.assertEqual(r.cmd("QUIT"), "221 2.0.0 Bye")
            self.assertTrue(r.at_eof())

    def test_data_after_bdat(self):
        with session() as r:
            self.assertEqual(r.cmd("MAIL FROM:<a@example.test>"), "250 2.1.0 Ok")
            self.assertEqual(r.cmd("RCPT TO:<b@localhost>"), "250 2.1.5 Ok")
            r.send(b"BDAT 5\r\nhello")
            self.assertEqual(r.reply_line(), "250 2.0.0 Ok: 5 octets")
            got = r.cmd("DATA")
            self.assertTrue(got.startswith("503 5.5.1"), got)
            self.assertEqual(r.cmd("NOOP"), "250 2.0.0 Ok")


# ---- 6: hostile input ----

SMUGGLED = b"MAIL FROM:<evil@x>\r\nRCPT TO:<v@localhost>\r\nDATA\r\nevil\r\n"


class T06Hostile(unittest.TestCase):
    def content_rejected(self, content, farm="smtpserver", expect="550 5.6.0"):
        """Send content after DATA, then HELP: exactly one reply (expect)
        for the content, then HELP's 214; nothing queued."""
        q = QUEUES[farm]
        before = q.msg_ids()
        with session(farm) as r:
            transaction(r)
            r.send(content + b"HELP\r\n")
            got = r.reply_line()
            self.assertTrue(got.startswith(expect + " "), got)
            got2 = r.reply_line()
            self.assertTrue(got2.startswith("214 "), "an extra reply: %r" % got2)
            self.assertEqual(r.cmd("QUIT"), "221 2.0.0 Bye")
        no_change(q, before)
        return got

    def test_smuggling(self):
        for v in (b"\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\n", b"\r\n.\r"):
            with self.subTest(variant=v):
                self.content_rejected(b"Subject: s\r\n\r\nhello" + v + SMUGGLED + b"\r\n.\r\n")
        self.assertNotIn("from=<evil@x>", FD.log())

    def test_nul_in_content(self):
        got = self.content_rejected(b"Subject: n\r\n\r\nab\0cd\r\n.\r\n")
        self.assertIn("NUL", got)

    def test_long_data_line(self):
        self.content_rejected(b"Subject: l\r\n\r\n" + b"x" * 999 + b"\r\n.\r\n")

    def test_998_octet_line_ok_and_no_limit(self):
        q = QUEUES["smtpserver"]
        with session() as r:
            transaction(r)
            r.send(b"Subject: l\r\n\r\n" + b"x" * 998 + b"\r\n.\r\n")
            self.assertRegex(r.reply_line(), r"^250 2\.0\.0 Ok: queued as")
        q = QUEUES["strict"]
        with session("strict") as r:
            transaction(r)
            r.send(b"Subject: l\r\n\r\n" + b"x" * 5000 + b"\r\n.\r\n")
            got = r.reply_line()
            self.assertRegex(got, r"^250 2\.0\.0 Ok: queued as")
        self.assertIn(b"x" * 5000 + b"\r\n", q.read(qid_of(got))[1])

    def test_command_with_nul(self):
        with session() as r:
            got = r.cmd("NOOP\0x")
            self.assertTrue(got.startswith("501 "), got)
            self.assertEqual(r.cmd("NOOP"), "250 2.0.0 Ok")

    def test_bare_lf_command(self):
        with session() as r:
            r.send(b"NOOP\n")
            got = r.reply_line()
            self.assertTrue(got.startswith("501 5.5.2 "), got)
            self.assertEqual(r.cmd("NOOP"), "250 2.0.0 Ok")

    def test_unknown_command(self):
        with session() as r:
            got = r.cmd("FROBNICATE now")
            self.assertTrue(got.startswith("500 5.5.2 "), got)
            self.assertEqual(r.cmd("NOOP"), "250 2.0.0 Ok")

    def test_overlong_command(self):
        with session() as r:
            r.send(b"X" * 10000 + b"\r\n")
            got = r.reply_line()
            self.assertTrue(got.startswith("500 5.5.2 "), got)
            # exactly one reply: the next one is NOOP's
            self.assertEqual(r.cmd("NOOP"), "250 2.0.0 Ok")
            self.assertEqual(r.cmd("MAIL FROM:<a@example.test>"), "250 2.1.0 Ok")
            # the same line in two sends: answered at the limit, the rest skipped
            r.send(b"Y" * 3000)
            self.assertTrue(r.reply_line().startswith("500 5.5.2 "))
            r.send(b"Y" * 7000 + b"\r\nNOOP\r\n")
            self.assertEqual(r.reply_line(), "250 2.0.0 Ok")
            # the limit itself: 2048 octets with CR LF are fine, 2049 are not
            r.send(b"NOOP " + b"a" * (2048 - 7) + b"\r\n")
            self.assertEqual(r.reply_line(), "250 2.0.0 Ok")
            r.send(b"NOOP " + b"a" * (2049 - 7) + b"\r\n")
            self.assertTrue(r.reply_line().startswith("500 5.5.2 "))
            self.assertEqual(r.cmd("NOOP"), "250 2.0.0 Ok")

    def test_20mb_without_lf(self):
        kids = smtp_children()
        self.assertTrue(kids)
        base = max(H.vmrss_kb(p) or 0 for p in kids)
        peak = 0
        with session() as r:
            chunk = b"A" * (1 << 20)
            for _ in range(20):
                r.send(chunk)
                peak = max([peak] + [H.vmrss_kb(p) or 0 for p in kids])
            r.send(b"\r\n")
            got = r.reply_line()
            self.assertTrue(got.startswith("500 5.5.2 "), got)
            self.assertEqual(r.cmd("NOOP"), "250 2.0.0 Ok")
            peak = max([peak] + [H.vmrss_kb(p) or 0 for p in kids])
        # 20 MB buffered would show; what the loop reads and drops must not.
        self.assertLess(peak - base, 12 * 1024,
                        "smtpserver RSS grew from %d to %d kB" % (base, peak))
        for p in kids:
            self.assertTrue(farmlib.alive(p), "smtpserver %d died" % p)

    def test_mail_before_ehlo(self):
        with session(ehlo=False) as r:
            self.assertEqual(r.cmd("MAIL FROM:<a@example.test>"), "250 2.1.0 Ok")
        with session("strict", ehlo=False) as r:
            got = r.cmd("MAIL FROM:<a@example.test>")
            self.assertTrue(got.startswith("503 5.5.1 "), got)
            self.assertEqual(r.cmd("HELO x"), "250 " + r.greeting[1][0].split()[0])
            self.assertEqual(r.cmd("MAIL FROM:<a@example.test>"), "250 2.1.0 Ok")


# ---- 7: limits ----

class T07Limits(unittest.TestCase):
    def test_mail_size_over_limit(self):
        with session("limits") as r:
            got = r.cmd("MAIL FROM:<a@example.test> SIZE=200000")
            self.assertTrue(got.startswith("552 5.3.4 "), got)
            self.assertEqual(r.cmd("MAIL FROM:<a@example.test> SIZE=1000"), "250 2.1.0 Ok")

    def test_body_over_limit(self):
        q = QUEUES["limits"]
        before = q.msg_ids()
        line = b"y" * 98 + b"\r\n"
        with session("limits") as r:
            transaction(r)
            r.send(b"Subject: big\r\n\r\n" + line * 1500 + b".\r\n")
            got = r.reply_line()
            self.assertTrue(got.startswith("552 5.3.4 "), got)
            self.assertEqual(r.cmd("NOOP"), "250 2.0.0 Ok")
        no_change(q, before)

    def test_recipient_limit(self):
        q = QUEUES["limits"]
        with session("limits") as r:
            self.assertEqual(r.cmd("MAIL FROM:<a@example.test>"), "250 2.1.0 Ok")
            for i in range(5):
                self.assertEqual(r.cmd("RCPT TO:<r%d@localhost>" % i), "250 2.1.5 Ok")
            got = r.cmd("RCPT TO:<r5@localhost>")
            self.assertTrue(got.startswith("452 4.5.3 "), got)
            self.assertTrue(r.cmd("DATA").startswith("354 "))
            r.send(b"Subject: five\r\n\r\nx\r\n.\r\n")
            got = r.reply_line()
            self.assertRegex(got, r"^250 2\.0\.0 Ok: queued as")
        env = q.read(qid_of(got))[0]
        for i in range(5):
            self.assertIn(b"r%d@localhost" % i, env)
        self.assertNotIn(b"r5@localhost", env)

    def test_header_size_limit(self):
        hdr = b"".join(b"X-H%d: %s\r\n" % (i, b"h" * 90) for i in range(60))  # ~6k > 4k
        got = T06Hostile.content_rejected(self, hdr + b"\r\nbody\r\n.\r\n", "limits", "552")
        self.assertTrue(got.startswith("552 5.3.4 "), got)

    def test_hop_count(self):
        q = QUEUES["limits"]
        rec = b"Received: from h by h;\r\n"
        with session("limits") as r:
            transaction(r)
            r.send(rec * 50 + b"Subject: 50\r\n\r\nok\r\n.\r\n")
            self.assertRegex(r.reply_line(), r"^250 2\.0\.0 Ok: queued as")
        got = T06Hostile.content_rejected(self, rec * 51 + b"Subject: 51\r\n\r\nloop\r\n.\r\n",
                                          "limits", "554 5.4.0")
        self.assertTrue(got.startswith("554 5.4.0 "), got)

    def test_bdat_over_size(self):
        q = QUEUES["limits"]
        before = q.msg_ids()
        part = (b"x" * 98 + b"\r\n") * 800  # 80,000 octets, twice > 100k
        with session("limits") as r:
            self.assertEqual(r.cmd("MAIL FROM:<a@example.test>"), "250 2.1.0 Ok")
            self.assertEqual(r.cmd("RCPT TO:<b@localhost>"), "250 2.1.5 Ok")
            r.send(b"BDAT %d\r\n" % len(part) + part)
            self.assertEqual(r.reply_line(), "250 2.0.0 Ok: 80000 octets")
            r.send(b"BDAT %d LAST\r\n" % len(part) + part)
            got = r.reply_line()
            self.assertTrue(got.startswith("552 5.3.4 "), got)
            self.assertEqual(r.cmd("NOOP"), "250 2.0.0 Ok")
        no_change(q, before)

    def test_pipelined_errors_stop_at_421(self):
        with session("limits") as r:
            r.send("FOO\r\nFOO\r\nFOO\r\nNOOP\r\nNOOP\r\n")
            got = []
            while True:
                line = r.reply_line()
                if line is None:
                    break
                got.append(line)
            self.assertEqual(len(got), 4, got)
            self.assertTrue(got[3].startswith("421 4.7.0 "), got)

    def test_hard_error_limit(self):
        with session("limits") as r:
            self.assertTrue(r.cmd("BOGUS1").startswith("500 5.5.2 "))
            self.assertTrue(r.cmd("BOGUS2").startswith("500 5.5.2 "))
            r.send("BOGUS3\r\n")
            got = []
            while True:
                line = r.reply_line()
                if line is None:
                    break
                got.append(line)
            self.assertTrue(got, "no reply to the third error")
            self.assertTrue(got[-1].startswith("421 4.7.0 "), got)
            self.assertLessEqual(len(got), 2, got)


# ---- 8: timeouts ----

def expect_timeout(testcase, r, lo, hi, t0=None):
    """The next reply is 421 4.4.2 ... timeout exceeded, then EOF, between
    lo and hi seconds after t0 (the client's last send; default now)."""
    if t0 is None:
        t0 = time.monotonic()
    r.settimeout(hi + 2)
    got = r.reply_line()
    elapsed = time.monotonic() - t0
    testcase.assertIsNotNone(got, "EOF without a 421")
    testcase.assertRegex(got, r"^421 4\.4\.2 .*timeout exceeded")
    testcase.assertTrue(r.at_eof())
    elapsed2 = time.monotonic() - t0
    testcase.assertGreater(elapsed, lo)
    testcase.assertLess(elapsed2, hi)


class T08Timeouts(unittest.TestCase):
    def test_idle_and_data_timeout(self):
        q = QUEUES["timeout"]
        before = q.msg_ids()
        pat = r"timeout after DATA from unknown\[127\.0\.0\.1\]"
        nlog = FD.log_count(pat)
        idle = session("timeout", ehlo=False)
        t_idle = time.monotonic()
        data = session("timeout")
        try:
            transaction(data)
            data.send(b"Subject: half\r\n\r\nhalf a mess")
            t_data = time.monotonic()
            expect_timeout(self, idle, 1.5, 5.0, t_idle)
            expect_timeout(self, data, 1.5, 5.0, t_data)
        finally:
            idle.close()
            data.close()
        no_change(q, before)
        wait_new_log(pat, nlog)

    def test_stress_timeout(self):
        sa = H.Standalone({"smtpd_stress_timeout": "1s"}, stress=True, tag="stress")
        try:
            with Raw(sa.port) as r:
                self.assertEqual(r.greeting[0], 220)
                expect_timeout(self, r, 0.5, 3.0)
            # and the stress error limit (default 1): the first error closes
            with Raw(sa.port) as r:
                r.send("FOO\r\nNOOP\r\n")
                self.assertTrue(r.reply_line().startswith("500 5.5.2 "))
                self.assertTrue(r.reply_line().startswith("421 4.7.0 "))
                self.assertTrue(r.at_eof())
        finally:
            sa.cleanup()


# ---- 9: relay ----

class T09Relay(unittest.TestCase):
    def test_untrusted_client(self):
        pat = r"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.1\]: 554 5\.7\.1 <u@ext\.test>"
        nlog = FD.log_count(pat)
        with session("relay") as r:
            self.assertEqual(r.cmd("MAIL FROM:<a@example.test>"), "250 2.1.0 Ok")
            self.assertEqual(r.cmd("RCPT TO:<u@ext.test>"),
                             "554 5.7.1 <u@ext.test>: Relay access denied")
            for trick in ("u%ext.test@example.test", "ext.test!u@example.test",
                          '"u@ext.test"@example.test', "@a.test:u@ext.test", "u@[192.0.2.1]"):
                with self.subTest(rcpt=trick):
                    got = r.cmd("RCPT TO:<%s>" % trick)
                    self.assertTrue(got and got.startswith("554 5.7.1 "), got)
            self.assertEqual(r.cmd("RCPT TO:<u@example.test>"), "250 2.1.5 Ok")
            self.assertEqual(r.cmd("RCPT TO:<postmaster>"), "250 2.1.5 Ok")
            self.assertEqual(r.cmd("RCPT TO:<U@EXAMPLE.TEST>"), "250 2.1.5 Ok")
            self.assertEqual(r.cmd("RCPT TO:<Postmaster>"), "250 2.1.5 Ok")
            self.assertEqual(r.cmd("RCPT TO:<@a.test,@b.test:u@example.test>"), "250 2.1.5 Ok")
            for other in ("u@sub.example.test", "postmaster@ext.test", "u%ext.test@localhost",
                          "@example.test:u@ext.test", "u@[IPv6:::1]", "u@EXT.test"):
                with self.subTest(rcpt=other):
                    got = r.cmd("RCPT TO:<%s>" % other)
                    self.assertTrue(got and got.startswith("554 5.7.1 "), got)
        wait_new_log(pat, nlog)

    def test_trusted_client(self):
        with session() as r:
            self.assertEqual(r.cmd("MAIL FROM:<a@example.test>"), "250 2.1.0 Ok")
            self.assertEqual(r.cmd("RCPT TO:<u@ext.test>"), "250 2.1.5 Ok")


# ---- 10: DSN ----

class T10Dsn(unittest.TestCase):
    def test_dsn_stored(self):
        q = QUEUES["smtpserver"]
        with session() as r:
            self.assertEqual(r.cmd("MAIL FROM:<a@example.test> RET=HDRS ENVID=abc+2Bdef"),
                             "250 2.1.0 Ok")
            self.assertEqual(r.cmd("RCPT TO:<b@localhost> NOTIFY=SUCCESS,FAILURE "
                                   "ORCPT=rfc822;b+2Bx@localhost"), "250 2.1.5 Ok")
            self.assertTrue(r.cmd("DATA").startswith("354"))
            r.send(b"Subject: dsn\r\n\r\nx\r\n.\r\n")
            got = r.reply_line()
            self.assertRegex(got, r"^250 2\.0\.0 Ok: queued as")
        env = q.read(qid_of(got))[0]
        for want in (b"HDRS", b"abc+def", b"rfc822;b+x@localhost"):
            self.assertIn(want, env)

    def test_bad_notify(self):
        with session() as r:
            self.assertEqual(r.cmd("MAIL FROM:<a@example.test>"), "250 2.1.0 Ok")
            got = r.cmd("RCPT TO:<b@localhost> NOTIFY=BOGUS")
            self.assertTrue(got.startswith("501 "), got)
            for bad in ("NOTIFY=NEVER,SUCCESS", "ORCPT=b@localhost", "ORCPT=rfc822;b+ZZ"):
                got = r.cmd("RCPT TO:<b@localhost> " + bad)
                self.assertTrue(got.startswith("501 "), (bad, got))
            for bad in ("ENVID=abc+ZZ", "RET=FOO"):
                got = r.cmd("MAIL FROM:<a@example.test> " + bad)
                self.assertTrue(got.startswith("501 "), (bad, got))

    def test_dsn_after_helo(self):
        with session(ehlo=False) as r:
            self.assertTrue(r.cmd("HELO x").startswith("250 "))
            got = r.cmd("MAIL FROM:<a@example.test> RET=HDRS")
            self.assertTrue(got.startswith("555 "), got)
            self.assertEqual(r.cmd("MAIL FROM:<a@example.test>"), "250 2.1.0 Ok")
            got = r.cmd("RCPT TO:<b@localhost> NOTIFY=NEVER")
            self.assertTrue(got.startswith("555 "), got)


# ---- 11, 12: storage ----

class T11Storage(unittest.TestCase):
    def test_queue_minfree(self):
        with session("minfree") as r:
            got = r.cmd("MAIL FROM:<a@example.test>")
            self.assertTrue(got.startswith("452 4.3.1 "), got)

    def test_disk_full(self):
        mnt = tempfile.mkdtemp(prefix="zfarm-tmpfs-")
        m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt],
                           capture_output=True, text=True)
        if m.returncode != 0:
            os.rmdir(mnt)
            self.skipTest("cannot mount a tmpfs: %s" % m.stderr.strip())
        sa = None
        try:
            qdir = os.path.join(mnt, "queue")
            sa = H.Standalone({"queue_minfree": 0}, tag="full", queue_dir=qdir)
            pids = [sa.proc.pid]
            line = b"z" * 98 + b"\r\n"
            with Raw(sa.port) as r:
                r.send("EHLO x\r\n")
                self.assertEqual(r.reply()[0], 250)
                transaction(r)
                r.send(b"Subject: full\r\n\r\n" + line * 30000 + b".\r\n")  # 3 MB
                got = r.reply_line()
                self.assertTrue(got and got.startswith("452 4.3.1 "), got)
                no_change(sa.queue, set())
                transaction(r)
                r.send(b"Subject: small\r\n\r\nsmall\r\n.\r\n")
                got = r.reply_line()
                self.assertRegex(got, r"^250 2\.0\.0 Ok: queued as")
            self.assertTrue(sa.queue.has(qid_of(got)))
            self.assertTrue(farmlib.alive(pids[0]))
        finally:
            if sa is not None:
                sa.cleanup()
            subprocess.run(["umount", mnt], capture_output=True)
            os.rmdir(mnt)


# ---- 13: fsync before 250 ----

SYSCALL_RE = re.compile(r"^(\d+)\s+[\d:.]+\s+(?:<\.\.\. (\w+) resumed>|(\w+)\()")


def parse_trace(path):
    """[(index, pid, syscall, kind, line)], kind: 'whole', 'start' or 'end'."""
    events = []
    with open(path, errors="replace") as f:
        for i, line in enumerate(f):
            m = SYSCALL_RE.match(line)
            if not m:
                continue
            pid = int(m.group(1))
            if m.group(2):
                events.append((i, pid, m.group(2), "end", line))
            elif "<unfinished ...>" in line:
                events.append((i, pid, m.group(3), "start", line))
            else:
                events.append((i, pid, m.group(3), "whole", line))
    return events


def completion(events, idx):
    """The index of the line where the call started at events[idx] ends."""
    i, pid, name, kind, _ = events[idx]
    if kind == "whole":
        return i
    for j, p, n, k, _ in events[idx + 1:]:
        if p == pid and n == name and k == "end":
            return j
    raise AssertionError("no completion for %r" % (events[idx],))


class T13Fsync(unittest.TestCase):
    def setUp(self):
        if not shutil.which("strace"):
            self.skipTest("strace not installed")

    def check(self, threads, dirsync=False, slots=True):
        """The order of a commit's system calls before the 250.  In a slot
        (the default): the header's pwrite into slot/RRR/NN, then the
        file's fdatasync; with ZFARM_SPOOL_DIRSYNC=1 (the fallback for file
        systems whose fsync does not cover a new name) a new slot file's
        range is fsync'ed too.  The tmp/ + msg/XX way (ZFARM_SPOOL_SLOTS=0):
        the link into msg/XX, then the file's fsync (it covers the new name
        on ext4, xfs and tmpfs), then, forced with ZFARM_SPOOL_DIRSYNC=1, or
        when msg/XX is new or grew, the fsync of msg/XX."""
        tmpd = tempfile.mkdtemp(prefix="zfarm-strace-")
        trace = os.path.join(tmpd, "trace")
        wrapper = ["strace", "-f", "-tt", "-y", "-s", "256", "-e",
                   "trace=fsync,fdatasync,linkat,pwrite64,write,sendto,sendmsg,writev",
                   "-o", trace]
        env = (["ZFARM_SPOOL_DIRSYNC=1"] if dirsync else []) + \
            ([] if slots else ["ZFARM_SPOOL_SLOTS=0"])
        if env:
            wrapper = ["env"] + env + wrapper
        sa = H.Standalone({"smtpd_commit_threads": threads}, wrapper=wrapper,
                          tag="strace%d" % threads)
        try:
            with Raw(sa.port, timeout=20) as r:
                r.send("EHLO x\r\n")
                self.assertEqual(r.reply()[0], 250)
                for n in range(2):
                    transaction(r)
                    r.send(b"Subject: fsync\r\n\r\nx\r\n.\r\n")
                    got = r.reply_line()
                    self.assertRegex(got, r"^250 2\.0\.0 Ok: queued as")
                self.assertEqual(r.cmd("QUIT"), "221 2.0.0 Bye")
            qid = qid_of(got)  # the second: msg/XX exists and was synced by the first
            sa.wait_log(r"disconnect from")
        finally:
            sa.cleanup()
        self.assertEqual(H.qid_is_slot(qid), slots, qid)
        try:
            ev = parse_trace(trace)
            with open(trace, errors="replace") as f:
                text = f.read()
        finally:
            shutil.rmtree(tmpd, ignore_errors=True)

        def find(pred, what, need=True):
            for k, e in enumerate(ev):
                if e[3] != "end" and pred(e):
                    return k
            if need:
                raise AssertionError("no %s in the trace:\n%s" % (what, text[-3000:]))
            return None

        k_250 = find(lambda e: e[2] in ("write", "sendto", "sendmsg", "writev")
                     and "Ok: queued as %s" % qid in e[4], "the 250 write")
        i_250 = ev[k_250][0]
        if slots:
            rr, nn = qid[-5:-2], qid[-2:]
            slot_fd = r"\(\d+</[^>]*/queue/slot/%s/%s>" % (rr, nn)
            k_hdr = find(lambda e: e[2] == "pwrite64" and re.search(slot_fd, e[4])
                         and "ZSL1" in e[4], "the header's pwrite into slot/%s/%s" % (rr, nn))
            k_file = find(lambda e: e[0] > ev[k_hdr][0] and e[2] == "fdatasync"
                          and re.search(slot_fd, e[4]), "fdatasync of the slot after its header")
            k_dir = find(lambda e: e[0] > ev[k_hdr][0] and e[2] == "fsync"
                         and re.search(r"\(\d+</[^>]*/queue/slot/%s>" % rr, e[4]),
                         "fsync of slot/%s" % rr, need=dirsync)
            done = {"header": completion(ev, k_hdr), "file sync": completion(ev, k_file)}
            self.assertLess(done["header"], ev[k_file][0], "the sync began before the header")
            if dirsync:
                self.assertLess(ev[k_dir][0], i_250, "slot/%s not fsync'ed before the 250" % rr)
                done["fsync dir"] = completion(ev, k_dir)
            for what, line in done.items():
                self.assertLess(line, i_250, "%s completed after the 250 write began" % what)
            return
        k_link = find(lambda e: e[2] == "linkat" and ("msg/%s/%s" % (qid[-2:], qid)) in e[4],
                      "linkat into msg/")
        k_file = find(lambda e: e[0] > ev[k_link][0] and e[2] in ("fsync", "fdatasync")
                      and re.search(r"\(\d+</[^>]*/queue/(tmp/[^>/]+|msg/%s/%s)( \(deleted\))?>"
                                    % (re.escape(qid[-2:]), qid), e[4]),
                      "sync of the message file after the linkat")
        k_dir = find(lambda e: e[0] > ev[k_link][0] and e[2] in ("fsync", "fdatasync")
                     and re.search(r"\(\d+</[^>]*/queue/msg/%s>" % re.escape(qid[-2:]), e[4]),
                     "fsync of msg/%s after the linkat" % qid[-2:], need=dirsync)
        done = {"linkat": completion(ev, k_link), "file sync": completion(ev, k_file)}
        self.assertLess(done["linkat"], ev[k_file][0], "the file sync began before the link")
        if k_dir is not None and ev[k_dir][0] < i_250:
            done["fsync dir"] = completion(ev, k_dir)
        elif dirsync:
            raise AssertionError("msg/%s not fsync'ed before the 250:\n%s"
                                 % (qid[-2:], text[-3000:]))
        for what, line in done.items():
            self.assertLess(line, i_250, "%s completed after the 250 write began" % what)

    def test_commit_threads(self):
        self.check(4)

    def test_commit_inline(self):
        self.check(0)

    def test_commit_dirsync(self):
        self.check(4, dirsync=True)

    def test_commit_files(self):
        self.check(4, slots=False)

    def test_commit_files_inline(self):
        self.check(0, slots=False)

    def test_commit_files_dirsync(self):
        self.check(4, dirsync=True, slots=False)


# ---- 14: unix listener ----

class T14Unix(unittest.TestCase):
    def test_unix_submit(self):
        q = QUEUES["smtpserver"]
        with Raw(path=SUBMIT) as r:
            self.assertEqual(r.greeting[0], 220)
            r.send("EHLO x\r\n")
            self.assertEqual(r.reply()[0], 250)
            transaction(r, rcpts=("u@ext.test",))
            r.send(b"Subject: unix\r\n\r\nlocal\r\n.\r\n")
            got = r.reply_line()
            self.assertRegex(got, r"^250 2\.0\.0 Ok: queued as")
        env, content = q.read(qid_of(got))
        self.assertIn(b"u@ext.test", env)
        first = content.split(b"\r\n", 1)[0]
        self.assertIn(b"(localhost)", first)
        FD.wait_log(r"connect from local\[uid=%d\]" % os.getuid())


# ---- 15: more robustness ----

class T15Robustness(unittest.TestCase):
    def test_disconnect_mid_data_leaves_no_tmp(self):
        q = QUEUES["smtpserver"]
        before = q.msg_ids()
        pat = r"lost connection after DATA from unknown\[127\.0\.0\.1\]"
        nlog = FD.log_count(pat)
        r = session()
        transaction(r)
        r.send(b"Subject: x\r\n\r\npartial")
        r.send("\r\n")
        r.close()
        wait_new_log(pat, nlog)
        no_change(q, before)

    def test_disconnect_mid_bdat_leaves_no_tmp(self):
        q = QUEUES["smtpserver"]
        before = q.msg_ids()
        pat = r"lost connection after BDAT from unknown\[127\.0\.0\.1\]"
        nlog = FD.log_count(pat)
        r = session()
        self.assertEqual(r.cmd("MAIL FROM:<a@example.test>"), "250 2.1.0 Ok")
        self.assertEqual(r.cmd("RCPT TO:<b@localhost>"), "250 2.1.5 Ok")
        r.send(b"BDAT 100\r\nSubject: x\r\n")
        r.close()
        wait_new_log(pat, nlog)
        no_change(q, before)

    def test_client_gone_before_250(self):
        q = QUEUES["smtpserver"]
        before = q.msg_ids()
        r = session()
        r.send(b"MAIL FROM:<gone@example.test>\r\nRCPT TO:<b@localhost>\r\nDATA\r\n"
               b"Subject: gone\r\n\r\ngone\r\n.\r\n")
        r.close()
        new = wait_until(lambda: q.msg_ids() - before, 5, what="the message to be queued")
        self.assertEqual(len(new), 1)
        self.assertTrue(q.read(new.pop())[1].endswith(b"Subject: gone\r\n\r\ngone\r\n"))
        wait_until(lambda: not q.tmp_files(), 3, what="tmp/ to be empty")
        self.assertTrue(all(farmlib.alive(p) for p in smtp_children()))

    def test_byte_by_byte(self):
        q = QUEUES["smtpserver"]
        r = session()
        r.sock.setsockopt(H.socket.IPPROTO_TCP, H.socket.TCP_NODELAY, 1)
        with r:
            for b in (b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@localhost>\r\nDATA\r\n"
                      b"Subject: s\r\n\r\n.x\r\nhi\r\n.\r\nNOOP\r\n"):
                r.send(bytes([b]))
            got = r.replies(5)
        self.assertEqual(got[:3], ["250 2.1.0 Ok", "250 2.1.5 Ok",
                                   "354 End data with <CR><LF>.<CR><LF>"])
        self.assertRegex(got[3], r"^250 2\.0\.0 Ok: queued as")
        self.assertEqual(got[4], "250 2.0.0 Ok")
        self.assertTrue(q.read(qid_of(got[3]))[1].endswith(b"\r\nSubject: s\r\n\r\nx\r\nhi\r\n"))

    def test_empty_message(self):
        with session() as r:
            transaction(r)
            r.send(".\r\n")
            self.assertRegex(r.reply_line(), r"^250 2\.0\.0 Ok: queued as")

    def test_bdat_failed_chunk_then_rset(self):
        with session() as r:
            self.assertEqual(r.cmd("MAIL FROM:<a@example.test>"), "250 2.1.0 Ok")
            self.assertEqual(r.cmd("RCPT TO:<b@localhost>"), "250 2.1.5 Ok")
            r.send(b"BDAT 5\r\na\nbcd")
            self.assertTrue(r.reply_line().startswith("550 5.6.0 "))
            r.send(b"BDAT 3 LAST\r\nxyz")
            self.assertTrue(r.reply_line().startswith("503 5.5.1 "))
            self.assertEqual(r.cmd("RSET"), "250 2.0.0 Ok")
            r.send(b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@localhost>\r\nBDAT 5 LAST\r\n"
                   b"hello" b"MAIL FROM:<c@example.test>\r\nRCPT TO:<b@localhost>\r\n"
                   b"BDAT 3 LAST\r\nxyzQUIT\r\n")
            got = r.replies(7)
            self.assertEqual(got[:2], ["250 2.1.0 Ok", "250 2.1.5 Ok"])
            self.assertRegex(got[2], r"^250 2\.0\.0 Ok: queued as")
            self.assertEqual(got[3:5], ["250 2.1.0 Ok", "250 2.1.5 Ok"])
            self.assertRegex(got[5], r"^250 2\.0\.0 Ok: queued as")
            self.assertEqual(got[6], "221 2.0.0 Bye")

    def test_client_not_reading(self):
        # 2000 EHLO replies (~300 kB) pile up before the client reads one
        with session() as r:
            r.send(b"EHLO y\r\n" * 2000 + b"QUIT\r\n")
            n = 0
            while True:
                code, _ = r.reply()
                if code is None:
                    break
                n += 1
                last = code
            self.assertEqual(n, 2001)
            self.assertEqual(last, 221)

    def test_smtputf8(self):
        q = QUEUES["smtpserver"]
        with session() as r:
            got = r.cmd("MAIL FROM:<\u00fc@example.test>")
            self.assertTrue(got.startswith("553 "), got)
            self.assertEqual(r.cmd("MAIL FROM:<\u00fc@example.test> SMTPUTF8"), "250 2.1.0 Ok")
            self.assertEqual(r.cmd("RCPT TO:<\u00f6@localhost>"), "250 2.1.5 Ok")
            self.assertTrue(r.cmd("DATA").startswith("354"))
            r.send("Subject: \u00fc\r\n\r\n\u00fc\r\n.\r\n".encode())
            got = r.reply_line()
        env, content = q.read(qid_of(got))
        self.assertIn("\u00fc@example.test".encode(), env)
        self.assertIn(b"with UTF8SMTP id", content)


# ---- 16: per-farm parameters (smtpserver(8): "a parameter set in the
# farm's own [farm NAME] section wins for that farm") ----

class T16FarmSection(unittest.TestCase):
    def test_parameter_in_farm_section(self):
        fd = farmlib.FarmdInstance(tag="smtpd-section")
        try:
            port = H.free_port()
            fd.write_config([H.smtp_farm("smtpserver", port, message_size_limit="100k")],
                            H.BASE_GLOBALS)
            try:
                fd.start()
            except AssertionError as e:
                self.fail("farmd refuses an smtpserver parameter in the farm section: %s"
                          % str(e).strip().splitlines()[-1])
            wait_until(lambda: farmlib.can_connect(port), 10, what="the farm")
            with Raw(port) as r:
                r.send("EHLO x\r\n")
                code, lines = r.reply()
                self.assertEqual(code, 250)
                self.assertIn("SIZE 102400", lines)
        finally:
            fd.cleanup()


class FakeRouter(P.FrameServer):
    """Keeps the RouteRequests it gets, answers none; close_after: drop the
    connection after that many frames."""

    def __init__(self, path, close_after=None):
        super().__init__(path, close_after=close_after)

    def holding(self, qid):
        """The RouteRequests (QueueRef field dicts) for qid."""
        with self.lock:
            return [P.fields(P.fields(f[P.ROUTE][0])[1][0]) for f in self.frames
                    if P.ROUTE in f and H.submitted_qid(f) == qid]


class T17Handoff(unittest.TestCase):
    """After the commit the queue handle goes to router_endpoint; a failed
    hand-off keeps the message queued and says so."""

    def send_one(self, srv):
        with Raw(srv.port) as r:
            r.send("EHLO x\r\n")
            r.reply()
            transaction(r)
            r.send("Subject: handoff\r\n\r\nbody\r\n.\r\n")
            code, lines = r.reply()
            self.assertEqual(code, 250)
            return qid_of(lines[-1])

    def test_route_request_reaches_the_router(self):
        tmp = tempfile.mkdtemp(prefix="zfarm-router-")
        router = FakeRouter(os.path.join(tmp, "router"))
        srv = H.Standalone({"router_endpoint": "unix:" + router.path,
                            "smtpd_verify_recipients": "no"}, tag="handoff")
        try:
            qids = [self.send_one(srv) for _ in range(3)]
            for qid in qids:
                frames = wait_until(lambda: router.holding(qid), 5,
                                    what="a RouteRequest for %s" % qid)
                self.assertEqual(len(frames), 1)
                self.assertEqual(frames[0][2][0], b"spool")  # QueueRef.store
                self.assertTrue(srv.queue.read(qid))
            self.assertNotIn("hand-off to the router failed", srv.log())
        finally:
            srv.cleanup()
            router.close()
            shutil.rmtree(tmp, ignore_errors=True)

    def test_no_router_keeps_the_message(self):
        tmp = tempfile.mkdtemp(prefix="zfarm-router-")
        srv = H.Standalone({"router_endpoint": "unix:" + os.path.join(tmp, "absent"),
                            "smtpd_verify_recipients": "no"}, tag="handoff")
        try:
            qid = self.send_one(srv)
            self.assertIn(qid, srv.queue.msg_ids())
            srv.wait_log(r"%s: hand-off to the router failed: .*stays in the queue" % qid)
        finally:
            srv.cleanup()
            shutil.rmtree(tmp, ignore_errors=True)

    def test_rcpt_check_without_router(self):
        """Recipient verification on (the default) and no router: a local
        recipient gets 451 4.3.0, a remote one (trusted client) is not asked."""
        tmp = tempfile.mkdtemp(prefix="zfarm-router-")
        srv = H.Standalone({"router_endpoint": "unix:" + os.path.join(tmp, "absent")},
                           tag="handoff")
        try:
            with Raw(srv.port) as r:
                r.send("EHLO x\r\n")
                r.reply()
                self.assertEqual(r.cmd("MAIL FROM:<a@example.test>"), "250 2.1.0 Ok")
                got = r.cmd("RCPT TO:<b@localhost>")
                self.assertTrue(got.startswith("451 4.3.0 <b@localhost>: Recipient address "
                                               "rejected: Temporary lookup failure"), got)
                self.assertEqual(r.cmd("RCPT TO:<c@remote.test>"), "250 2.1.5 Ok")
            srv.wait_log(r"cannot verify <b@localhost>")
        finally:
            srv.cleanup()
            shutil.rmtree(tmp, ignore_errors=True)

    def test_router_closing_with_requests_unanswered(self):
        tmp = tempfile.mkdtemp(prefix="zfarm-router-")
        router = FakeRouter(os.path.join(tmp, "router"), close_after=1)
        srv = H.Standalone({"router_endpoint": "unix:" + router.path,
                            "smtpd_verify_recipients": "no"}, tag="handoff")
        try:
            first = self.send_one(srv)
            wait_until(lambda: router.holding(first), 5, what="the first RouteRequest")
            srv.wait_log(r"%s: hand-off to the router failed: connection to .* closed .*"
                         r"stays in the queue for the reinjector" % first)
            # the next message reconnects and arrives
            second = self.send_one(srv)
            wait_until(lambda: router.holding(second), 5, what="the second RouteRequest")
            for qid in (first, second):
                self.assertIn(qid, srv.queue.msg_ids())
        finally:
            srv.cleanup()
            router.close()
            shutil.rmtree(tmp, ignore_errors=True)


# ---- runner: counts, prints "N passed, N failed" ----

LAST_LOG = ""  # farmd's log, kept by tearDownModule for failures


def main():
    farmlib.run_tests("smtpserver", lambda test: LAST_LOG)


if __name__ == "__main__":
    main()
