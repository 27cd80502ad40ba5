#!/usr/bin/env python3
"""Integration tests of smtpserver's TLS and AUTH (issue 9, server half).

Run as `python3 tests/smtpserver/test_tls_auth.py` with top_builddir and
top_srcdir in the environment (make check does).  A CA and the server
certificates are made at test time with the openssl command; users go
into a password file with tools/zfpasswd.  One shared farmd runs several
smtpserver farms on 127.0.0.1, each listening as smtp, submission and
submissions where it needs to; the clients are openssl s_client, swaks
and Python's smtplib and ssl.  Conditions are awaited with deadlines.
Prints "N passed, N failed" at the end and exits non-zero on failures.
"""

import ctypes
import os
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import smtplib_helpers as H  # noqa: E402
from smtplib_helpers import Raw, Queue, farmlib, qid_of, wait_until  # noqa: E402

FD = None          # the shared FarmdInstance
CA = None          # H.TestCA
CERT = KEY = None  # the server certificate
PASSWD = None      # the password file
TMP = None
PORTS = {}         # (farm, listener) -> port
QUEUES = {}        # farm -> Queue
LAST_LOG = ""

USERS = {"alice": ("correct horse", None), "bob": ("b0b's secret", "sha512crypt")}

# farm -> (listeners, parameters); mynetworks does not hold 127.0.0.1, so
# relaying needs AUTH.
FARMS = {
    "tls": (("smtp", "submission", "submissions"), {"smtpd_sasl_auth_enable": "yes"}),
    "limit": (("smtp",), {"smtpd_sasl_auth_enable": "yes", "smtpd_sasl_failure_limit": 2,
                          "smtpd_sasl_failure_delay": "1s"}),
    "plain": (("smtp", "submission", "submissions"), {"cert": False}),
    "encrypt": (("smtp",), {"smtpd_tls_security_level": "encrypt"}),
    "clear": (("smtp",), {"smtpd_sasl_auth_enable": "yes", "smtpd_tls_auth_only": "no"}),
    "tls13": (("smtp",), {"smtpd_tls_protocols": ">=TLSv1.3"}),
}


def setUpModule():
    global FD, CA, CERT, KEY, PASSWD, TMP
    missing = H.binaries_missing() + [p for p in (H.ZFPASSWD,) if not os.access(p, os.X_OK)]
    if missing:
        raise unittest.SkipTest("not built: %s" % ", ".join(missing))
    if not shutil.which("openssl"):
        raise unittest.SkipTest("no openssl command")
    TMP = tempfile.mkdtemp(prefix="zfarm-tls-")
    CA = H.TestCA(TMP)
    CERT, KEY = CA.issue("server", cn="localhost")
    PASSWD = os.path.join(TMP, "passwd")
    for user, (pw, scheme) in USERS.items():
        H.zfpasswd(PASSWD, user, pw, scheme)
    FD = farmlib.FarmdInstance(tag="tls")
    FD.extra_env["ASAN_OPTIONS"] = ":".join(
        x for x in (os.environ.get("ASAN_OPTIONS"), "quarantine_size_mb=2") if x)
    sections = []
    for name, (listeners, over) in FARMS.items():
        params = dict(over)
        listen = []
        for ln in listeners:
            PORTS[(name, ln)] = H.free_port()
            listen.append("%s=inet:127.0.0.1:%d" % (ln, PORTS[(name, ln)]))
        qdir = os.path.join(FD.run, "q-" + name)
        QUEUES[name] = Queue(qdir)
        if params.pop("cert", True):
            params.update(smtpd_tls_cert_file=CERT, smtpd_tls_key_file=KEY)
        params.setdefault("smtpd_sasl_failure_delay", 0)
        params.update(queue_directory=qdir, smtpd_sasl_path=PASSWD,
                      mynetworks="10.0.0.0/8", listen=", ".join(listen), program=H.SMTPSERVER,
                      process_limit=4, client_limit=16)
        sections.append(farmlib.farm_section(name, **params))
    FD.write_config(sections, H.BASE_GLOBALS)
    try:
        FD.start()
        for key, port in PORTS.items():
            wait_until(lambda: farmlib.can_connect(port), 10, what="farm %s %s" % key)
    except Exception:
        sys.stderr.write(FD.log())
        FD.cleanup()
        raise


def tearDownModule():
    global LAST_LOG
    if FD is not None:
        LAST_LOG = FD.log()
        left = FD.cleanup()
        if left:
            sys.stderr.write("leftover processes killed: %s\n" % left)
    if TMP:
        shutil.rmtree(TMP, ignore_errors=True)


def port(farm="tls", listener="smtp"):
    return PORTS[(farm, listener)]

def server_socket_opt(client, level, opt):
    """getsockopt on the server's end of the client's TCP connection: the
    smtpserver child's descriptor whose socket inode /proc/net/tcp gives
    for the connection, duplicated into this process (pidfd_getfd; root)."""
    cport = client.getsockname()[1]
    sport = client.getpeername()[1]
    want = None
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            lport = int(fields[1].split(":")[1], 16)
            rport = int(fields[2].split(":")[1], 16)
            if lport == sport and rport == cport:
                want = "socket:[%s]" % fields[9]
    if want is None:
        raise AssertionError("no server socket for 127.0.0.1:%d <- :%d" % (sport, cport))
    libc = ctypes.CDLL(None, use_errno=True)
    for pid in FD.children():
        try:
            fds = os.listdir("/proc/%d/fd" % pid)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink("/proc/%d/fd/%s" % (pid, fd)) != want:
                    continue
            except OSError:
                continue
            pidfd = os.pidfd_open(pid)
            try:
                dup = libc.syscall(438, pidfd, int(fd), 0)  # SYS_pidfd_getfd
                if dup < 0:
                    raise OSError(ctypes.get_errno(), "pidfd_getfd")
            finally:
                os.close(pidfd)
            sock = socket.socket(fileno=dup)
            try:
                return sock.getsockopt(level, opt)
            finally:
                sock.close()  # our duplicate only
    raise AssertionError("%s not found among the farm's children" % want)


def ctx():
    return CA.client_context()


def session(farm="tls", listener="smtp", ehlo=True, tls=False):
    """A Raw session; tls: STARTTLS first (then EHLO again)."""
    r = Raw(port(farm, listener))
    assert r.greeting[0] == 220, r.greeting
    if ehlo or tls:
        assert r.cmd("EHLO client.test").startswith("250 "), "EHLO"
    if tls:
        assert r.cmd("STARTTLS") == "220 2.0.0 Ready to start TLS"
        r.starttls(ctx())
        if ehlo:
            assert r.cmd("EHLO client.test").startswith("250 "), "EHLO after TLS"
    return r


def ehlo_keywords(r, name="client.test"):
    r.send("EHLO %s\r\n" % name)
    code, lines = r.reply()
    assert code == 250, (code, lines)
    return [ln.split()[0].upper() for ln in lines[1:]], lines


def smtp_tls(farm="tls", listener="smtp"):
    """smtplib after STARTTLS (or on implicit TLS for submissions)."""
    if listener == "submissions":
        s = smtplib.SMTP_SSL(H.LOCALHOST, port(farm, listener), context=ctx(), timeout=15)
        s.ehlo("client.test")
        return s
    s = smtplib.SMTP(H.LOCALHOST, port(farm, listener), timeout=15)
    s.ehlo("client.test")
    s.starttls(context=ctx())
    s.ehlo("client.test")
    return s


def b64(s):
    import base64
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def plain(user, pw):
    return b64("\0%s\0%s" % (user, pw))


ALICE = ("alice", USERS["alice"][0])
BOB = ("bob", USERS["bob"][0])
MSG = b"From: a@example.test\r\nSubject: t\r\n\r\nhello\r\n"


def wait_new_log(pattern, before, timeout=5.0):
    wait_until(lambda: FD.log_count(pattern) > before, timeout,
               what="a new log line /%s/" % pattern)


def received(content):
    """The first header field (our Received:), unfolded lines kept."""
    m = re.match(rb"Received: .*?\r\n(?![ \t])", content, re.S)
    assert m, content[:300]
    return m.group(0).decode()


# ---- 1: STARTTLS with openssl s_client ----

class T01SClient(unittest.TestCase):
    def s_client(self, farm, listener, starttls=True, extra=()):
        cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port(farm, listener),
               "-CAfile", CA.ca, "-verify_return_error", "-verify_hostname", "localhost",
               "-crlf", "-ign_eof"] + list(extra)
        if starttls:
            cmd[2:2] = ["-starttls", "smtp"]
        return subprocess.run(cmd, input="EHLO sclient.test\nQUIT\n", capture_output=True,
                              text=True, timeout=30)

    def test_starttls_and_auth_after(self):
        r = self.s_client("tls", "smtp")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("Verification: OK", r.stdout)
        self.assertRegex(r.stdout, r"New, TLSv1\.3, Cipher is TLS_")
        self.assertIn("250-AUTH PLAIN LOGIN", r.stdout)
        # s_client shows only what came over TLS: the EHLO reply without STARTTLS
        self.assertNotIn("250-STARTTLS", r.stdout)
        self.assertIn("221 2.0.0 Bye", r.stdout)
        FD.wait_log(r"Anonymous TLS connection established from unknown\[127\.0\.0\.1\]: "
                    r"TLSv1\.3 with cipher TLS_\w+ \(\d+/\d+ bits\)")

    def test_ehlo_after_starttls_is_not_held_back(self):
        """The EHLO reply after the handshake is not held by Nagle's
        algorithm behind the session tickets (the client's delayed ACK,
        ~40 ms each time): the smtpserver's accepted socket has
        TCP_NODELAY, read from the server's own descriptor (pidfd_getfd)
        before and after STARTTLS."""
        s = smtplib.SMTP(H.LOCALHOST, port("tls", "smtp"), timeout=15)
        try:
            s.ehlo("client.test")
            self.assertEqual(server_socket_opt(s.sock, socket.IPPROTO_TCP,
                                               socket.TCP_NODELAY), 1)
            s.starttls(context=ctx())
            s.ehlo("client.test")
            self.assertEqual(server_socket_opt(s.sock, socket.IPPROTO_TCP,
                                               socket.TCP_NODELAY), 1)
            s.quit()
        finally:
            s.close()

    def test_tls12(self):
        r = self.s_client("tls", "smtp", extra=["-tls1_2"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"New, TLSv1\.2, Cipher is ECDHE-")

    def test_tls11_refused(self):
        r = self.s_client("tls", "smtp", extra=["-tls1_1"])
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertNotIn("250-AUTH", r.stdout)

    def test_tls13_only(self):
        r = self.s_client("tls13", "smtp", extra=["-tls1_2"])
        self.assertNotEqual(r.returncode, 0, r.stdout)
        r = self.s_client("tls13", "smtp")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_implicit_tls(self):
        r = self.s_client("tls", "submissions", starttls=False)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("Verification: OK", r.stdout)
        self.assertRegex(r.stdout, r"220 \S+ ESMTP zfarm")
        self.assertIn("250-AUTH PLAIN LOGIN", r.stdout)
        self.assertNotIn("250-STARTTLS", r.stdout)


# ---- 2: smtplib: STARTTLS, login, relaying, Received ----

class T02Smtplib(unittest.TestCase):
    def test_starttls_login_relay(self):
        q = QUEUES["tls"]
        with smtplib.SMTP(H.LOCALHOST, port(), timeout=15) as s:
            s.ehlo("client.test")
            self.assertIn("starttls", s.esmtp_features)
            self.assertNotIn("auth", s.esmtp_features)  # not in clear by default
            # relay refused without AUTH
            self.assertEqual(s.mail("a@example.test")[0], 250)
            code, text = s.rcpt("u@remote.test")
            self.assertEqual((code, text), (554, b"5.7.1 <u@remote.test>: Relay access denied"))
            s.rset()
            s.starttls(context=ctx())
            s.ehlo("client.test")
            self.assertEqual(s.esmtp_features.get("auth"), " PLAIN LOGIN")
            self.assertNotIn("starttls", s.esmtp_features)
            s.login(*ALICE)
            self.assertEqual(s.mail("a@example.test")[0], 250)
            self.assertEqual(s.rcpt("u@remote.test")[0], 250)
            code, resp = s.data(MSG)
            self.assertEqual(code, 250)
        qid = qid_of(resp.decode())
        FD.wait_log(r"AUTH from unknown\[127\.0\.0\.1\]: sasl_method=\w+, sasl_username=alice")
        FD.wait_log(r"%s: client=unknown\[127\.0\.0\.1\], sasl_method=\w+, "
                    r"sasl_username=alice" % qid)
        env, content = q.read(qid)
        self.assertIn(b"alice", env)  # the envelope's auth user
        self.assertIn(b"ESMTPSA", env)
        rec = received(content)
        self.assertRegex(rec, r"^Received: from client\.test \(unknown \[127\.0\.0\.1\]\)\r\n"
                              r"\t\(using TLSv1\.3 with cipher TLS_\w+ \(\d+/\d+ bits\)\)\r\n"
                              r"\tby \S+ \(zfarm\) with ESMTPSA id %s\r\n"
                              r"\tfor <u@remote\.test>; .+\r\n$" % qid)
        self.assertNotIn("alice", rec)  # who, is not told
        self.assertTrue(content.endswith(MSG))
        self.assertNotIn(b"Message-ID", content)  # port 25: nothing added
        FD.wait_log(r"%s: from=<a@example\.test>, size=\d+, nrcpt=1, proto=ESMTPSA" % qid)

    def test_login_mechanisms(self):
        for mech in ("PLAIN", "LOGIN"):
            with self.subTest(mech=mech), smtp_tls() as s:
                s.user, s.password = BOB
                code, _ = s.auth(mech, getattr(s, "auth_" + mech.lower()),
                                 initial_response_ok=(mech == "PLAIN"))
                self.assertEqual(code, 235)

    def test_esmtps_without_auth(self):
        q = QUEUES["tls"]
        with smtp_tls() as s:
            s.mail("a@example.test")
            s.rcpt("b@localhost")
            code, resp = s.data(MSG)
            self.assertEqual(code, 250)
        rec = received(q.read(qid_of(resp.decode()))[1])
        self.assertIn("with ESMTPS id", rec)
        self.assertIn("(using TLSv1.3 with cipher", rec)

    def test_plain_session_unchanged(self):
        q = QUEUES["tls"]
        with smtplib.SMTP(H.LOCALHOST, port(), timeout=15) as s:
            s.ehlo("client.test")
            s.mail("a@example.test")
            s.rcpt("b@localhost")
            code, resp = s.data(MSG)
        rec = received(q.read(qid_of(resp.decode()))[1])
        self.assertRegex(rec, r"^Received: from client\.test \(unknown \[127\.0\.0\.1\]\)\r\n"
                              r"\tby \S+ \(zfarm\) with ESMTP id ")
        self.assertNotIn("using", rec)


# ---- 3: swaks ----

class T03Swaks(unittest.TestCase):
    def setUp(self):
        if not shutil.which("swaks"):
            self.skipTest("swaks not installed")

    def swaks(self, *args):
        return subprocess.run(["swaks", "--from", "a@example.test", "--to", "u@remote.test",
                               "--timeout", "15"] + list(args),
                              capture_output=True, text=True, timeout=60)

    def test_tls_auth(self):
        for mech in ("PLAIN", "LOGIN"):
            with self.subTest(mech=mech):
                r = self.swaks("--server", "127.0.0.1:%d" % port(), "--tls", "--auth", mech,
                               "--auth-user", ALICE[0], "--auth-password", ALICE[1])
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertIn("235 2.7.0 Authentication successful", r.stdout)
                qid_of(r.stdout)

    def test_wrong_password(self):
        r = self.swaks("--server", "127.0.0.1:%d" % port(), "--tls", "--auth", "PLAIN",
                       "--auth-user", "alice", "--auth-password", "nope")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("535 5.7.8 Authentication credentials invalid", r.stdout)

    def test_submissions(self):
        r = self.swaks("--server", "127.0.0.1:%d" % port("tls", "submissions"),
                       "--tls-on-connect", "--auth", "LOGIN", "--auth-user", BOB[0],
                       "--auth-password", BOB[1])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        qid = qid_of(r.stdout)
        content = QUEUES["tls"].read(qid)[1]
        self.assertIn("with ESMTPSA id", received(content))
        # swaks sends Date: and Message-Id: itself: nothing added
        self.assertEqual(len(re.findall(rb"(?im)^message-id:", content)), 1)
        self.assertEqual(len(re.findall(rb"(?im)^date:", content)), 1)


# ---- 4: plaintext injection after STARTTLS (CVE-2011-0411 class) ----

class T04Injection(unittest.TestCase):
    def test_pipelined_behind_starttls(self):
        pattern = r"\]: 37 octets of plaintext pipelined after STARTTLS discarded"
        before = FD.log_count(pattern)
        r = session()
        r.send(b"STARTTLS\r\nNOOP\r\nMAIL FROM:<evil@example.test>\r\n")
        self.assertEqual(r.reply_line(), "220 2.0.0 Ready to start TLS")
        r.starttls(ctx())  # raises if anything but the 220 came in clear
        # the first reply over TLS is HELP's: the injected NOOP and MAIL never ran
        r.send(b"HELP\r\n")
        self.assertTrue(r.reply_line().startswith("214 "))
        got = r.cmd("RCPT TO:<b@localhost>")
        self.assertTrue(got.startswith("503 5.5.1"), got)
        r.close()
        wait_new_log(pattern, before)

    def test_noop_in_one_write(self):
        # exactly the issue's case: no 250 for the NOOP, neither before nor after
        r = session()
        r.send(b"STARTTLS\r\nNOOP\r\n")
        self.assertEqual(r.reply_line(), "220 2.0.0 Ready to start TLS")
        r.starttls(ctx())
        self.assertEqual(r.cmd("VRFY x")[:4], "252 ")
        r.close()

    def test_injection_in_a_second_packet(self):
        # Behind STARTTLS but in its own write, before the client read the 220:
        # either thrown away with the buffer or read as TLS (the handshake fails).
        for _ in range(5):
            r = session()
            r.send(b"STARTTLS\r\n")
            r.send(b"NOOP\r\n")
            self.assertEqual(r.reply_line(), "220 2.0.0 Ready to start TLS")
            try:
                r.starttls(ctx())
            except (ssl.SSLError, OSError):
                r.close()
                continue
            try:
                got = r.cmd("HELP")
            except (ssl.SSLError, OSError):
                got = None
            self.assertTrue(got is None or got.startswith("214 "), got)
            r.close()


# ---- 5: what STARTTLS forgets ----

class T05Reset(unittest.TestCase):
    def test_state_forgotten(self):
        r = session()
        self.assertEqual(r.cmd("MAIL FROM:<a@example.test>"), "250 2.1.0 Ok")
        self.assertEqual(r.cmd("STARTTLS"), "220 2.0.0 Ready to start TLS")
        r.starttls(ctx())
        got = r.cmd("MAIL FROM:<a@example.test>")
        self.assertEqual(got, "503 5.5.1 Error: send HELO/EHLO first")
        got = r.cmd("RCPT TO:<b@localhost>")
        self.assertTrue(got.startswith("503 5.5.1 Error: need MAIL"), got)
        got = r.cmd("AUTH PLAIN " + plain(*ALICE))
        self.assertEqual(got, "503 5.5.1 Error: send EHLO first")
        kws, _ = ehlo_keywords(r)
        self.assertIn("AUTH", kws)
        self.assertNotIn("STARTTLS", kws)
        self.assertEqual(r.cmd("STARTTLS"), "554 5.5.1 Error: TLS already active")
        self.assertEqual(r.cmd("MAIL FROM:<a@example.test>"), "250 2.1.0 Ok")
        r.close()

    def test_auth_forgotten_in_clear(self):
        # AUTH in clear (smtpd_tls_auth_only = no), then STARTTLS: not authenticated
        r = session("clear")
        self.assertEqual(r.cmd("AUTH PLAIN " + plain(*ALICE)), "235 2.7.0 Authentication successful")
        self.assertEqual(r.cmd("STARTTLS"), "220 2.0.0 Ready to start TLS")
        r.starttls(ctx())
        ehlo_keywords(r)
        r.cmd("MAIL FROM:<a@example.test>")
        got = r.cmd("RCPT TO:<u@remote.test>")
        self.assertTrue(got.startswith("554 5.7.1"), got)
        self.assertEqual(r.cmd("AUTH PLAIN " + plain(*ALICE))[:3], "503")  # in a transaction
        self.assertEqual(r.cmd("RSET"), "250 2.0.0 Ok")
        self.assertEqual(r.cmd("AUTH PLAIN " + plain(*ALICE)), "235 2.7.0 Authentication successful")
        r.close()

    def test_starttls_not_offered_without_certificate(self):
        r = session("plain")
        kws, _ = ehlo_keywords(r)
        self.assertNotIn("STARTTLS", kws)
        self.assertNotIn("AUTH", kws)
        self.assertEqual(r.cmd("STARTTLS"), "502 5.5.1 Error: command not implemented")
        self.assertEqual(r.cmd("AUTH PLAIN " + plain(*ALICE)),
                         "503 5.5.1 Error: authentication not enabled")
        self.assertEqual(r.cmd("NOOP"), "250 2.0.0 Ok")
        r.close()

    def test_encrypt_level(self):
        r = session("encrypt")
        kws, _ = ehlo_keywords(r)
        self.assertIn("STARTTLS", kws)
        self.assertEqual(r.cmd("MAIL FROM:<a@example.test>"),
                         "530 5.7.0 Must issue a STARTTLS command first")
        self.assertEqual(r.cmd("STARTTLS"), "220 2.0.0 Ready to start TLS")
        r.starttls(ctx())
        ehlo_keywords(r)
        self.assertEqual(r.cmd("MAIL FROM:<a@example.test>"), "250 2.1.0 Ok")
        r.close()


# ---- 6: AUTH failures and their limit ----

class T06AuthFailures(unittest.TestCase):
    def test_failure(self):
        r = session(tls=True)
        got = r.cmd("AUTH PLAIN " + plain("alice", "wrong"))
        self.assertEqual(got, "535 5.7.8 Authentication credentials invalid")
        got = r.cmd("AUTH PLAIN " + plain("nosuchuser", "wrong"))
        self.assertEqual(got, "535 5.7.8 Authentication credentials invalid")
        self.assertEqual(r.cmd("AUTH LOGIN"), "334 VXNlcm5hbWU6")
        self.assertEqual(r.cmd(b64("alice")), "334 UGFzc3dvcmQ6")
        self.assertEqual(r.cmd(b64(ALICE[1])), "235 2.7.0 Authentication successful")
        r.close()
        FD.wait_log(r"warning: unknown\[127\.0\.0\.1\]: SASL PLAIN authentication failed: "
                    r"authentication failure, sasl_username=nosuchuser")

    def test_rate_limit(self):
        r = session("limit", tls=True)
        t0 = time.monotonic()
        got = r.cmd("AUTH PLAIN " + plain("alice", "wrong1"))
        t1 = time.monotonic()
        self.assertEqual(got, "535 5.7.8 Authentication credentials invalid")
        self.assertGreaterEqual(t1 - t0, 0.9, "the 535 came without the delay")
        # pipelined behind the second failure: answered only by the 421
        r.send("AUTH PLAIN %s\r\nNOOP\r\n" % plain("alice", "wrong2"))
        self.assertEqual(r.reply_line(), "535 5.7.8 Authentication credentials invalid")
        got = r.reply_line()
        self.assertRegex(got, r"^421 4\.7\.0 \S+ Error: too many authentication failures$")
        self.assertTrue(r.at_eof())
        self.assertGreaterEqual(time.monotonic() - t1, 0.9)
        FD.wait_log(r"too many AUTH failures from unknown\[127\.0\.0\.1\]")

    def test_cancel_and_garbage(self):
        r = session(tls=True)
        self.assertEqual(r.cmd("AUTH LOGIN"), "334 VXNlcm5hbWU6")
        self.assertEqual(r.cmd("*"), "501 5.7.0 Authentication aborted")
        self.assertEqual(r.cmd("AUTH PLAIN"), "334 ")
        self.assertEqual(r.cmd("%%%%not-base64"), "501 5.5.2 Cannot decode response")
        self.assertTrue(r.cmd("AUTH PLAIN @@@@").startswith("501 5.5.4"))
        self.assertEqual(r.cmd("AUTH GSSAPI"), "504 5.5.4 Unsupported authentication mechanism")
        self.assertEqual(r.cmd("NOOP"), "250 2.0.0 Ok")
        r.close()


# ---- 7: relaying ----

class T07Relay(unittest.TestCase):
    def test_relay_needs_auth(self):
        r = session(tls=True)
        self.assertEqual(r.cmd("MAIL FROM:<a@example.test>"), "250 2.1.0 Ok")
        self.assertEqual(r.cmd("RCPT TO:<u@remote.test>"),
                         "554 5.7.1 <u@remote.test>: Relay access denied")
        self.assertEqual(r.cmd("RCPT TO:<b@localhost>"), "250 2.1.5 Ok")
        self.assertEqual(r.cmd("RSET"), "250 2.0.0 Ok")
        self.assertEqual(r.cmd("AUTH PLAIN " + plain(*BOB)), "235 2.7.0 Authentication successful")
        self.assertEqual(r.cmd("MAIL FROM:<a@example.test> AUTH=bob+40example.test"),
                         "250 2.1.0 Ok")
        self.assertEqual(r.cmd("RCPT TO:<u@remote.test>"), "250 2.1.5 Ok")
        self.assertEqual(r.cmd("RCPT TO:<u%other.test@localhost>"), "250 2.1.5 Ok")
        self.assertTrue(r.cmd("DATA").startswith("354 "))
        got = r.cmd("Subject: relay\r\n\r\nx\r\n.")
        qid = qid_of(got)
        r.close()
        FD.wait_log(r"%s: client=unknown\[127\.0\.0\.1\], sasl_method=PLAIN, "
                    r"sasl_username=bob, sasl_sender=bob@example\.test" % qid)


# ---- 8, 9: submission ----

class T08Submission(unittest.TestCase):
    def test_requires_auth(self):
        r = session(listener="submission")
        kws, _ = ehlo_keywords(r)
        self.assertIn("STARTTLS", kws)
        self.assertNotIn("AUTH", kws)  # not in clear
        self.assertEqual(r.cmd("MAIL FROM:<a@example.test>"), "530 5.7.0 Authentication required")
        self.assertEqual(r.cmd("AUTH PLAIN " + plain(*ALICE)),
                         "530 5.7.0 Must issue a STARTTLS command first")
        self.assertEqual(r.cmd("STARTTLS"), "220 2.0.0 Ready to start TLS")
        r.starttls(ctx())
        kws, _ = ehlo_keywords(r)
        self.assertIn("AUTH", kws)
        self.assertEqual(r.cmd("MAIL FROM:<a@example.test>"), "530 5.7.0 Authentication required")
        self.assertEqual(r.cmd("AUTH PLAIN " + plain(*ALICE)), "235 2.7.0 Authentication successful")
        self.assertEqual(r.cmd("MAIL FROM:<a@example.test>"), "250 2.1.0 Ok")
        r.close()

    def test_without_backend_or_certificate(self):
        # farm "plain": no certificate, so no AUTH: submission takes no mail
        r = session("plain", "submission")
        self.assertEqual(r.cmd("MAIL FROM:<a@example.test>"), "530 5.7.0 Authentication required")
        r.close()

    def test_implicit_tls_without_certificate(self):
        before = FD.log_count(r"listener submissions speaks TLS only, but there is no certificate")
        s = socket.create_connection((H.LOCALHOST, port("plain", "submissions")), timeout=10)
        self.assertEqual(s.recv(100), b"")  # closed at once, no greeting
        s.close()
        wait_new_log(r"listener submissions speaks TLS only, but there is no certificate",
                     before)


class T09Headers(unittest.TestCase):
    def send(self, listener, msg):
        with smtp_tls("tls", listener) as s:
            s.login(*ALICE)
            s.mail("a@example.test")
            s.rcpt("b@localhost")
            code, resp = s.data(msg)
            self.assertEqual(code, 250)
        return QUEUES["tls"].read(qid_of(resp.decode()))

    def test_added_on_submission(self):
        for listener in ("submission", "submissions"):
            with self.subTest(listener=listener):
                env, content = self.send(listener, MSG)
                head, body = content.split(b"\r\n\r\n", 1)
                self.assertEqual(body, b"hello\r\n")
                lines = head.split(b"\r\n")
                self.assertRegex(lines[-2], rb"^Message-ID: <\d{14}\.\w+@\S+>$")
                self.assertRegex(lines[-1], rb"^Date: \w{3}, \d{1,2} \w{3} \d{4} "
                                            rb"\d\d:\d\d:\d\d [+-]\d{4}$")
                self.assertEqual(lines[-4:-2], [b"From: a@example.test", b"Subject: t"])
                qid = re.search(rb"with ESMTPSA id (\w+)", content).group(1)
                self.assertIn(b"." + qid + b"@", lines[-2])

    def test_kept_when_present(self):
        msg = (b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nmessage-id: <x@y>\r\n"
               b"Subject: s\r\n\r\nbody\r\n")
        _, content = self.send("submission", msg)
        self.assertTrue(content.endswith(msg), content)
        self.assertEqual(len(re.findall(rb"(?im)^(date|message-id):", content)), 2)

    def test_not_added_on_port_25(self):
        _, content = self.send("smtp", MSG)
        self.assertTrue(content.endswith(MSG))
        self.assertNotRegex(content, rb"(?im)^(date|message-id):")

    def test_headers_only_and_bdat(self):
        with smtp_tls("tls", "submission") as s:
            s.login(*ALICE)
            s.mail("a@example.test")
            s.rcpt("b@localhost")
            s.putcmd("BDAT 12")
            s.send(b"Subject: h\r\n")
            self.assertEqual(s.getreply()[0], 250)
            s.putcmd("BDAT 3 LAST")
            s.send(b"x\r\n")  # no empty line: a body line ends the header
            code, resp = s.getreply()
            self.assertEqual(code, 250)
        content = QUEUES["tls"].read(qid_of(resp.decode()))[1]
        self.assertRegex(content, rb"\r\nSubject: h\r\nMessage-ID: <[^>]+>\r\nDate: [^\r]+\r\n"
                                  rb"x\r\n$")


# ---- 10: implicit TLS ----

class T10Submissions(unittest.TestCase):
    def test_smtplib(self):
        with smtplib.SMTP_SSL(H.LOCALHOST, port("tls", "submissions"), context=ctx(),
                              timeout=15) as s:
            code, _ = s.ehlo("client.test")
            self.assertEqual(code, 250)
            self.assertIn("auth", s.esmtp_features)
            self.assertNotIn("starttls", s.esmtp_features)
            self.assertEqual(H.peer_cn(s.sock), "localhost")
            s.login(*BOB)
            self.assertEqual(s.sendmail("a@example.test", ["u@remote.test"], MSG), {})

    def test_greeting_after_handshake(self):
        r = Raw(port("tls", "submissions"), tls=ctx())
        self.assertEqual(r.greeting[0], 220)
        self.assertEqual(r.tls_version(), "TLSv1.3")
        self.assertEqual(r.cmd("STARTTLS"), "554 5.5.1 Error: TLS already active")
        r.close()


# ---- 11: hostile clients ----

class T11Hostile(unittest.TestCase):
    def test_overlong_auth_lines(self):
        r = session(tls=True)
        self.assertEqual(r.cmd("AUTH PLAIN"), "334 ")
        r.send(b"A" * 100000 + b"\r\n")
        self.assertEqual(r.reply_line(), "500 5.5.6 Authentication Exchange line is too long")
        self.assertEqual(r.cmd("NOOP"), "250 2.0.0 Ok")
        # an initial response longer than the command line limit
        got = r.cmd("AUTH PLAIN " + "QUFB" * 1000)
        self.assertTrue(got.startswith("500 5.5.2"), got)
        self.assertEqual(r.cmd("AUTH PLAIN " + plain(*ALICE)), "235 2.7.0 Authentication successful")
        r.close()

    def test_garbage_base64_and_huge_user(self):
        r = session(tls=True)
        for junk in ("====", "YQ", "Y===", "\x7f\x7f\x7f\x7f", "YWJj ZGVm"):
            self.assertEqual(r.cmd("AUTH PLAIN"), "334 ")
            got = r.cmd(junk)
            self.assertTrue(got.startswith("501 5.5.2"), (junk, got))
        self.assertEqual(r.cmd("AUTH PLAIN " + plain("u" * 300, "p")),
                         "535 5.7.8 Authentication credentials invalid")
        r.close()

    def test_handshake_garbage(self):
        kids = FD.children()
        base = max(H.vmrss_kb(p) or 0 for p in kids)
        peak = 0
        junk = [b"\x16\x03\x01\xff\xff" + os.urandom(2000), b"EHLO plain.test\r\n",
                os.urandom(70000), b"\x16\x03\x03\x00\x05hello", b""]
        for i in range(60):
            for listener, starttls in (("submissions", False), ("smtp", True)):
                s = socket.create_connection((H.LOCALHOST, port("tls", listener)), timeout=10)
                if starttls:
                    f = s.makefile("rb")
                    f.readline()
                    s.sendall(b"EHLO x\r\nSTARTTLS\r\n")
                    while not f.readline().startswith(b"220 2.0.0"):
                        pass
                try:
                    s.sendall(junk[i % len(junk)])
                    s.shutdown(socket.SHUT_WR)
                    while s.recv(65536):
                        pass
                except OSError:
                    pass
                s.close()
            peak = max([peak] + [H.vmrss_kb(p) or 0 for p in kids])
        self.assertLess(peak - base, 16 * 1024, "RSS grew from %d to %d kB" % (base, peak))
        for p in kids:
            self.assertTrue(farmlib.alive(p), "smtpserver %d died" % p)
        FD.wait_log(r"SSL_accept error from unknown\[127\.0\.0\.1\]: ")
        # and the farm still serves
        with smtp_tls() as s:
            s.login(*ALICE)

    def test_handshake_timeout(self):
        sa = H.Standalone({"smtpd_tls_cert_file": CERT, "smtpd_tls_key_file": KEY,
                           "smtpd_timeout": "1s"}, tag="tlstimeout",
                          listeners=("submissions",))
        try:
            s = socket.create_connection((H.LOCALHOST, sa.port), timeout=10)
            t0 = time.monotonic()
            self.assertEqual(s.recv(100), b"")  # closed without a word
            self.assertLess(time.monotonic() - t0, 8)
            s.close()
            sa.wait_log(r"SSL_accept error from unknown\[127\.0\.0\.1\]: timeout")
        finally:
            sa.cleanup()


# ---- 12: the Dovecot backend against a stand-in ----

class T12Dovecot(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="zfarm-dovecot-")
        self.dc = H.FakeDovecot(os.path.join(self.tmp, "auth-client"),
                                {"carol": "pw-carol", "dave": "pw-dave"},
                                canonical={"carol": "carol@example.test"},
                                tempfail=("tempuser",))
        self.sa = H.Standalone({"smtpd_tls_cert_file": CERT, "smtpd_tls_key_file": KEY,
                                "smtpd_sasl_type": "dovecot",
                                "smtpd_sasl_path": self.dc.path,
                                "smtpd_sasl_failure_delay": 0,
                                "mynetworks": "10.0.0.0/8"},
                               tag="dovecot", listeners=("submission",))

    def tearDown(self):
        self.sa.cleanup()
        self.dc.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_login(self):
        with smtplib.SMTP(H.LOCALHOST, self.sa.port, timeout=15) as s:
            s.starttls(context=ctx())
            s.ehlo("client.test")
            with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
                s.login("carol", "wrong")
            self.assertEqual(cm.exception.smtp_code, 535)
            s.login("carol", "pw-carol")
            self.assertEqual(s.sendmail("a@example.test", ["u@remote.test"], MSG), {})
        qid = re.search(r"(\w+): client=.*sasl_username=carol@example\.test", self.sa.log())
        self.assertTrue(qid, self.sa.log())
        env, content = self.sa.queue.read(qid.group(1))
        self.assertIn(b"carol@example.test", env)
        self.assertIn(b"Message-ID: <", content)
        reqs = self.dc.requests
        self.assertTrue(reqs)
        p = reqs[-1]["params"]
        self.assertEqual(reqs[-1]["mech"], "PLAIN")
        self.assertEqual(p["service"], "smtp")
        self.assertEqual(p["rip"], "127.0.0.1")
        self.assertEqual(p["lip"], "127.0.0.1")
        self.assertIn("secured", p)
        self.assertIn("nologin", p)
        self.assertEqual(self.dc.connections, 1)

    def test_tempfail_and_login_mech(self):
        with smtplib.SMTP(H.LOCALHOST, self.sa.port, timeout=15) as s:
            s.starttls(context=ctx())
            s.ehlo("client.test")
            code, text = s.docmd("AUTH", "PLAIN " + plain("tempuser", "x"))
            self.assertEqual((code, text), (454, b"4.7.0 Temporary authentication failure"))
            s.user, s.password = "dave", "pw-dave"
            code, _ = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
            self.assertEqual(code, 235)
        self.sa.wait_log(r"SASL PLAIN authentication: temporary failure: db down")

    def test_dovecot_down(self):
        self.dc.close()
        os.unlink(self.dc.path)
        r = Raw(self.sa.port)
        ehlo_keywords(r)
        self.assertEqual(r.cmd("STARTTLS"), "220 2.0.0 Ready to start TLS")
        r.starttls(ctx())
        ehlo_keywords(r)
        self.assertEqual(r.cmd("AUTH PLAIN " + plain("carol", "pw-carol")),
                         "454 4.7.0 Temporary authentication failure")
        self.assertEqual(r.cmd("NOOP"), "250 2.0.0 Ok")
        r.close()
        self.sa.wait_log(r"dovecot auth server .*: cannot connect")


# ---- 13: certificates on farmd reload and renewal on disk ----

class T13Reload(unittest.TestCase):
    """farmd reload: changed global parameters start new smtpserver
    children, which read the new certificate; a certificate renewed in
    place is served at once, without a reload; a reload with a certificate
    that does not load leaves the farm taking mail in clear until the file
    appears (no crash loop)."""

    def test_reload_and_renewal(self):
        fd = farmlib.FarmdInstance(tag="tlsreload")
        p = H.free_port()
        cert_a, key_a = CA.issue("a", cn="localhost")
        cert_b, key_b = CA.issue("b", cn="localhost")
        cert_c, key_c = CA.issue("c", cn="localhost")
        live_cert = os.path.join(TMP, "live.pem")
        live_key = os.path.join(TMP, "live.key")
        missing = os.path.join(TMP, "later.pem")
        section = [farmlib.farm_section(
            "smtpserver", listen="smtp=inet:127.0.0.1:%d" % p, program=H.SMTPSERVER,
            process_limit=2, client_limit=4)]

        def configure(cert, key):
            # globals: a change of them restarts the farm on reload
            fd.write_config(section, dict(H.BASE_GLOBALS, smtpd_tls_cert_file=cert,
                                          smtpd_tls_key_file=key))

        def offers_starttls():
            with smtplib.SMTP(H.LOCALHOST, p, timeout=10) as s:
                s.ehlo("client.test")
                return s.has_extn("starttls")

        def serial():
            with smtplib.SMTP(H.LOCALHOST, p, timeout=10) as s:
                s.starttls(context=ctx())
                return s.sock.getpeercert()["serialNumber"]

        def serial_of(path):
            return H.openssl("x509", "-in", path, "-noout", "-serial").split("=")[1].strip()

        def replace(src, dst):
            shutil.copy(src, dst + ".new")
            os.rename(dst + ".new", dst)

        try:
            configure(cert_a, key_a)
            fd.start()
            wait_until(lambda: farmlib.can_connect(p), 10, what="the farm")
            self.assertEqual(serial(), serial_of(cert_a))
            # another certificate in the config: zfarmctl reload, new children
            configure(cert_b, key_b)
            self.assertEqual(fd.ctl("reload").returncode, 0)
            wait_until(lambda: serial() == serial_of(cert_b), 15,
                       what="the reloaded certificate")
            # renewal in place: the same paths, new files, no reload
            replace(cert_a, live_cert)
            replace(key_a, live_key)
            configure(live_cert, live_key)
            self.assertEqual(fd.ctl("reload").returncode, 0)
            wait_until(lambda: serial() == serial_of(cert_a), 15, what="live.pem served")
            replace(key_c, live_key)
            replace(cert_c, live_cert)
            for _ in range(4):  # every handshake after the rename has it
                self.assertEqual(serial(), serial_of(cert_c))
            # a certificate that does not load: mail in clear, no crash loop
            configure(missing, key_c)
            self.assertEqual(fd.ctl("reload").returncode, 0)
            wait_until(lambda: not offers_starttls(), 15, what="children without TLS")
            fd.wait_log(r"error: TLS certificate: cannot load the certificate %s"
                        % re.escape(missing))
            with smtplib.SMTP(H.LOCALHOST, p, timeout=10) as s:
                self.assertEqual(s.sendmail("a@example.test", ["b@localhost"], MSG), {})
            # ... until the file is there: no reload needed
            replace(cert_c, missing)
            self.assertTrue(offers_starttls())
            self.assertEqual(serial(), serial_of(cert_c))
            self.assertEqual(fd.log_count(r"exited with status|killed by signal"), 0,
                             "a child died")
        except Exception:
            sys.stderr.write("".join(ln for ln in fd.log().splitlines(True)
                                     if "connect" not in ln and "TLS conn" not in ln))
            raise
        finally:
            fd.cleanup()


class T15PasswdFile(unittest.TestCase):
    """A password file made after the start (zfpasswd), changed and broken
    while smtpserver runs."""

    def test_file_later(self):
        pw = os.path.join(TMP, "passwd-later")
        sa = H.Standalone({"smtpd_tls_cert_file": CERT, "smtpd_tls_key_file": KEY,
                           "smtpd_sasl_path": pw, "smtpd_sasl_failure_delay": 0},
                          tag="pwlater", listeners=("submission",))
        try:
            sa.wait_log(r"error: %s: No such file or directory; AUTH answers 454"
                        % re.escape(pw))
            r = Raw(sa.port)
            ehlo_keywords(r)
            r.cmd("STARTTLS")
            r.starttls(ctx())
            kws, _ = ehlo_keywords(r)
            self.assertIn("AUTH", kws)
            self.assertEqual(r.cmd("AUTH PLAIN " + plain("erin", "pw1")),
                             "454 4.7.0 Temporary authentication failure")
            H.zfpasswd(pw, "erin", "pw1")
            self.assertEqual(r.cmd("AUTH PLAIN " + plain("erin", "pw1")),
                             "235 2.7.0 Authentication successful")
            r.close()
            # a new password counts at once; the old one no more
            H.zfpasswd(pw, "erin", "pw2")
            for pwd, want in (("pw1", "535"), ("pw2", "235")):
                r = session_on(sa.port)
                self.assertEqual(r.cmd("AUTH PLAIN " + plain("erin", pwd))[:3], want)
                r.close()
            # broken: reported once, the last good file stays
            with open(pw, "a") as f:
                f.write("garbage line\n")
            r = session_on(sa.port)
            self.assertEqual(r.cmd("AUTH PLAIN " + plain("erin", "pw2"))[:3], "235")
            r.close()
            sa.wait_log(r"warning: %s:\d+: no \":\" after the user name; the password "
                        r"file read before stays in use" % re.escape(pw))
        finally:
            sa.cleanup()


class T16RealDovecot(unittest.TestCase):
    """The dovecot backend against a real Dovecot (dovecot-core), when it
    is installed and we are root: a private instance (its own base_dir,
    no protocols) with a passwd-file passdb that zfpasswd wrote."""

    DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"

    def setUp(self):
        if not os.access(self.DOVECOT, os.X_OK):
            self.skipTest("dovecot-core not installed")
        if os.geteuid() != 0:
            self.skipTest("Dovecot's master runs as root")
        self.tmp = tempfile.mkdtemp(prefix="zfarm-realdovecot-")
        os.chmod(self.tmp, 0o755)  # the auth process runs as user dovecot
        self.users = os.path.join(self.tmp, "users")
        self.base = os.path.join(self.tmp, "base")
        os.mkdir(self.base)
        conf = os.path.join(self.tmp, "dovecot.conf")
        with open(conf, "w") as f:
            f.write("base_dir = %s\nstate_dir = %s\ninstance_name = zfarm-test-%d\n"
                    "log_path = %s/dovecot.log\nprotocols =\nlisten = 127.0.0.1\nssl = no\n"
                    "disable_plaintext_auth = no\nauth_mechanisms = plain login\n"
                    "auth_failure_delay = 0\nauth_cache_size = 0\n"
                    "passdb {\n  driver = passwd-file\n  args = scheme=CRYPT %s\n}\n"
                    "userdb {\n  driver = static\n  args = uid=65534 gid=65534 home=/nonexistent\n}\n"
                    "service auth {\n  unix_listener auth-zfarm {\n    mode = 0666\n  }\n}\n"
                    % (self.base, self.tmp, os.getpid(), self.tmp, self.users))
        self.socket = os.path.join(self.base, "auth-zfarm")
        self.proc = subprocess.Popen([self.DOVECOT, "-F", "-c", conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.sa = None
        try:
            wait_until(lambda: self.proc.poll() is not None or os.path.exists(self.socket), 15,
                       what="dovecot's auth socket")
            self.assertIsNone(self.proc.poll(), self.dovecot_log())
        except Exception:
            self.tearDown()
            raise
        self.sa = H.Standalone({"smtpd_tls_cert_file": CERT, "smtpd_tls_key_file": KEY,
                                "smtpd_sasl_type": "dovecot", "smtpd_sasl_path": self.socket,
                                "smtpd_sasl_failure_delay": 0, "mynetworks": "10.0.0.0/8"},
                               tag="realdovecot", listeners=("submission",))

    def dovecot_log(self):
        try:
            with open(os.path.join(self.tmp, "dovecot.log")) as f:
                return f.read()
        except OSError:
            return ""

    def tearDown(self):
        if self.sa:
            self.sa.cleanup()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def auth(self, user, pw):
        r = session_on(self.sa.port)
        got = r.cmd("AUTH PLAIN " + plain(user, pw))
        r.close()
        return got

    def test_real_dovecot(self):
        # a passdb file Dovecot cannot read (zfpasswd made it 0640 root):
        # Dovecot's temporary failure (code=temp_fail) is ours
        H.zfpasswd(self.users, "frank", "pw-frank", "sha512crypt")
        self.assertEqual(self.auth("frank", "pw-frank"),
                         "454 4.7.0 Temporary authentication failure")
        os.chmod(self.users, 0o644)
        self.assertEqual(self.auth("frank", "pw-frank"), "235 2.7.0 Authentication successful")
        # a message, LOGIN through smtplib
        with smtplib.SMTP(H.LOCALHOST, self.sa.port, timeout=15) as s:
            s.starttls(context=ctx())
            s.ehlo("client.test")
            s.user, s.password = "frank", "pw-frank"
            self.assertEqual(s.auth("LOGIN", s.auth_login, initial_response_ok=False)[0], 235)
            self.assertEqual(s.sendmail("a@example.test", ["u@remote.test"], MSG), {})
        self.sa.wait_log(r"client=unknown\[127\.0\.0\.1\], sasl_method=LOGIN, "
                         r"sasl_username=frank")
        # failures last: Dovecot delays the next AUTH from an address that failed
        # (its auth penalty, seconds; the temporary failure above costs one too)
        self.assertEqual(self.auth("frank", "wrong"),
                         "535 5.7.8 Authentication credentials invalid")
        self.assertEqual(self.auth("nobody", "x"), "535 5.7.8 Authentication credentials invalid")


def session_on(p):
    """STARTTLS and EHLO on a standalone server's port."""
    r = Raw(p)
    ehlo_keywords(r)
    assert r.cmd("STARTTLS").startswith("220 ")
    r.starttls(ctx())
    ehlo_keywords(r)
    return r


# ---- 14: the default configuration starts without a certificate ----

class T14DefaultConfig(unittest.TestCase):
    def test_example_config(self):
        conf = os.path.join(H.TOP_SRCDIR, "etc", "zfarm.conf")
        sa_dir = tempfile.mkdtemp(prefix="zfarm-defconf-")
        p1, p2 = H.free_port(), H.free_port()
        cmd = [H.SMTPSERVER, "-c", conf, "-o", "run_directory=%s" % sa_dir,
               "-o", "router_endpoint=none", "-s", "smtp=inet:127.0.0.1:%d" % p1,
               "-s", "submission=inet:127.0.0.1:%d" % p2, "-n", "4", "-L", "stderr"]
        logpath = os.path.join(sa_dir, "log")
        with open(logpath, "wb") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True)
        try:
            wait_until(lambda: proc.poll() is not None or
                       (farmlib.can_connect(p1) and farmlib.can_connect(p2)), 15,
                       what="smtpserver with etc/zfarm.conf")
            if proc.poll() is not None:
                with open(logpath) as f:
                    self.fail("smtpserver exited %d: %s" % (proc.returncode, f.read()))
            r = Raw(p2)
            kws, _ = ehlo_keywords(r)
            self.assertNotIn("STARTTLS", kws)
            self.assertNotIn("AUTH", kws)
            self.assertEqual(r.cmd("MAIL FROM:<a@example.test>"),
                             "530 5.7.0 Authentication required")
            r.close()
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            shutil.rmtree(sa_dir, ignore_errors=True)


def main():
    farmlib.run_tests("tls_auth", lambda test: LAST_LOG)


if __name__ == "__main__":
    main()
