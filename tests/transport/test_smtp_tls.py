#!/usr/bin/env python3
"""Integration tests of the smtp transport's STARTTLS client (issue 9).

As in test_smtp.py, farmd runs an smtpserver farm (messages go into the
queue over SMTP) and the smtp farm; the test plays the scheduler on the
smtp farm's socket.  The mail servers are smtp_peers.Peer with a Python
ssl server context; a test CA, a second ("unknown") CA and their server
certificates are made at start with the openssl command line, in the
test's temporary directory (no key is committed).  Names resolve through
tests/transport/dnsserver.py on loopback.  Policies come from an
inline smtp_tls_policy_maps keyed by nexthops whose ports are chosen
before farmd starts; everything else gets smtp_tls_security_level=may.
Prints "N passed, N failed".
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_SRCDIR = os.path.abspath(os.environ.get("top_srcdir") or os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(TOP_SRCDIR, "tests", "smtpserver"))
sys.path.insert(0, HERE)
import smtplib_helpers as H  # noqa: E402
from smtplib_helpers import Raw, farmlib, qid_of  # noqa: E402
import zfproto as P  # noqa: E402
import smtp_peers as SP  # noqa: E402
from smtp_peers import Peer, OK, TEMPFAIL  # noqa: E402
import dnsserver  # noqa: E402

SMTP = os.path.join(H.TOP_BUILDDIR, "transport", "smtp")
OPENSSL = shutil.which("openssl")
SANITIZERS = bool(os.environ.get("ZF_SANITIZERS"))

FD = PORT = DNS = PKI = None
LAST_LOG = ""

# a port per nexthop whose policy is in the table (chosen before farmd starts)
PORTS = {}
ROLES = ("enc_plain", "enc_refused", "enc_untrusted", "enc_hsfail", "inject", "none",
         "good", "wrong", "unknownca", "parent", "bad")

ZONE = {
    "good.test": ["MX 10 mx.good.test"],
    "mx.good.test": ["A 127.0.0.1"],
    "wrong.test": ["MX 10 mx.wrong.test"],
    "mx.wrong.test": ["A 127.0.0.1"],
    "unknownca.test": ["MX 10 mx.unknownca.test"],
    "mx.unknownca.test": ["A 127.0.0.1"],
    "tlsa.test": ["MX 10 mx.tlsab.test"],
    "tlsb.test": ["MX 10 mx.tlsab.test"],    # another nexthop, the same MX
    "mx.tlsab.test": ["A 127.0.0.1"],
    "plaina.test": ["MX 10 mx.plainab.test"],
    "plainb.test": ["MX 10 mx.plainab.test"],
    "mx.plainab.test": ["A 127.0.0.1"],
    "sub.parent.test": ["MX 10 mx.parent.test"],
    "mx.parent.test": ["A 127.0.0.1"],
}


# ---- certificates ----

def openssl(*args, cwd):
    subprocess.run([OPENSSL] + list(args), cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def make_ca(d, name, cn):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", name + ".key", "-out", name + ".crt", "-days", "2",
            "-subj", "/CN=" + cn,
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def make_cert(d, name, ca, dns):
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", name + ".key", "-out", name + ".csr",
            "-subj", "/CN=" + dns, cwd=d)
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write("subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n" % dns)
    openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
            "-CAcreateserial", "-out", name + ".crt", "-days", "2",
            "-extfile", name + ".ext", cwd=d)


def make_pki():
    d = tempfile.mkdtemp(prefix="zfarm-tlspki-")
    make_ca(d, "ca", "zfarm test CA")
    make_ca(d, "otherca", "zfarm unknown CA")
    make_cert(d, "good", "ca", "mx.good.test")              # also served for mx.wrong.test
    make_cert(d, "unknown", "otherca", "mx.unknownca.test")  # not under the trusted CA
    return d


def server_ctx(name="good"):
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(PKI, name + ".crt"), os.path.join(PKI, name + ".key"))
    return ctx


# ---- the farm ----

def policy_map():
    p = PORTS
    items = ["[127.0.0.1]:%d=encrypt" % p["enc_plain"],
             "[127.0.0.1]:%d=encrypt" % p["enc_refused"],
             "[127.0.0.1]:%d=encrypt" % p["enc_untrusted"],
             "[127.0.0.1]:%d=encrypt" % p["enc_hsfail"],
             "[127.0.0.1]:%d=encrypt" % p["inject"],
             "[127.0.0.1]:%d=none" % p["none"],
             "good.test:%d=verify" % p["good"],
             "wrong.test:%d=verify" % p["wrong"],
             "unknownca.test:%d=verify" % p["unknownca"],
             ".parent.test=encrypt",
             "[127.0.0.1]:%d=dane" % p["bad"]]
    return "inline:{%s}" % ", ".join(items)


def setUpModule():
    global FD, PORT, DNS, PKI
    if not os.access(SMTP, os.X_OK) or H.binaries_missing():
        raise unittest.SkipTest("not built")
    if not OPENSSL:
        raise unittest.SkipTest("no openssl command")
    PKI = make_pki()
    for r in ROLES:
        PORTS[r] = H.free_port()
    DNS = dnsserver.DNSServer(ZONE).start()
    FD = farmlib.FarmdInstance(tag="smtptls")
    PORT = H.free_port()
    slow = 3 if SANITIZERS else 1
    g = dict(H.BASE_GLOBALS)
    g.update({"smtpd_verify_recipients": "no", "myhostname": "client.example.test",
              "log_level": "info",
              "smtp_connect_timeout": "%ds" % (3 * slow), "smtp_helo_timeout": "%ds" % (3 * slow),
              "smtp_mail_timeout": "%ds" % (3 * slow), "smtp_rcpt_timeout": "%ds" % (3 * slow),
              "smtp_data_init_timeout": "%ds" % (3 * slow),
              "smtp_data_xfer_timeout": "%ds" % (5 * slow),
              "smtp_data_done_timeout": "%ds" % (3 * slow),
              "smtp_starttls_timeout": "%ds" % (3 * slow),
              "smtp_connection_cache_time_limit": "30s",
              "smtp_tls_CAfile": os.path.join(PKI, "ca.crt"),
              "smtp_tls_policy_maps": policy_map(),
              # bare domains (sub.parent.test) go to this port
              "smtp_port": str(PORTS["parent"]),
              "dns_servers": "127.0.0.1:%d" % DNS.port})
    FD.write_config([
        H.smtp_farm("smtpserver", PORT),
        farmlib.farm_section("smtp", listen="unix:private/smtp", program=SMTP,
                             process_limit=1, client_limit=50, args="-v"),
    ], g)
    H.start_instance(FD, [PORT], ["smtp"])


def tearDownModule():
    global LAST_LOG
    if FD is not None:
        LAST_LOG = FD.log()
        FD.cleanup()
    if DNS is not None:
        DNS.stop()
    if PKI:
        shutil.rmtree(PKI, ignore_errors=True)


# ---- helpers ----

def queue_message(body="First line.\r\nSecond line.\r\n", subject="hello"):
    """A message into the queue over SMTP; its queue ID."""
    with Raw(PORT) as r:
        r.send("EHLO x\r\n")
        r.reply()
        assert r.cmd("MAIL FROM:<s@example.test>").startswith("250")
        assert r.cmd("RCPT TO:<bob@remote.test>").startswith("250")
        assert r.cmd("DATA").startswith("354")
        head = ("From: <s@example.test>\r\nTo: <bob@remote.test>\r\nSubject: %s\r\n"
                "Message-ID: <m-%s@example.test>\r\n\r\n" % (subject, time.time()))
        data = (head + body).encode("utf-8")
        wire = b"\r\n".join(b"." + x if x.startswith(b".") else x for x in data.split(b"\r\n"))
        if not wire.endswith(b"\r\n"):
            wire += b"\r\n"
        r.send(wire + b".\r\n")
        code, lines = r.reply()
        assert code == 250, lines
        return qid_of(lines[-1])


def sched():
    return P.TransportClient(os.path.join(FD.run, "private", "smtp"))


def deliver(nexthop, rcpts=("bob@remote.test",), qid=None):
    qid = qid or queue_message()
    with sched() as s:
        return qid, s.deliver(SP.request(P, qid, nexthop, list(rcpts)))


def statuses(rep):
    return [(r["status"], r["enhanced"]) for r in rep["results"]]


def local(role):
    return "[127.0.0.1]:%d" % PORTS[role]


def tls_line(qid):
    """The agent's 'TLS connection established' log line for qid."""
    return FD.wait_log(r"smtp\[\d+\]: %s: (\w+) TLS connection established to (\S+): "
                       r"(TLSv1\.[23]) with cipher (\S+) \((\d+)/(\d+) bits\)" % qid)


def no_mail(peer):
    return not [c for c in peer.commands if c.upper().startswith(("MAIL", "RCPT", "DATA"))]


# ---- tests ----

class T01Opportunistic(unittest.TestCase):
    def test_may_offered_delivered_encrypted(self):
        peer = Peer(tls=server_ctx())
        try:
            qid, rep = deliver("[127.0.0.1]:%d" % peer.port)
        finally:
            peer.close()
        self.assertEqual(statuses(rep), [(OK, "2.0.0")])
        t = peer.transactions[0]
        self.assertIsNotNone(t.tls, "the message went in clear")
        self.assertEqual(t.body.count(b"Second line."), 1)
        # EHLO, STARTTLS, then EHLO again over TLS
        self.assertEqual(peer.commands[:4], ["EHLO client.example.test", "STARTTLS",
                                             "EHLO client.example.test",
                                             "MAIL FROM:<s@example.test>"])
        conn, version, cipher, sni = peer.tls_sessions[0]
        self.assertIsNone(sni)  # an IP address nexthop: no SNI (RFC 6066)
        m = tls_line(qid)
        # may: the chain is checked for the log (the test CA is trusted), the name is not
        self.assertEqual(m.group(1), "Trusted")
        self.assertEqual(m.group(2), "127.0.0.1[127.0.0.1]:%d" % peer.port)
        self.assertEqual((m.group(3), m.group(4)), (version, cipher))
        self.assertGreaterEqual(int(m.group(5)), 128)

    def test_may_not_offered_delivered_in_clear(self):
        peer = Peer()
        try:
            qid, rep = deliver("[127.0.0.1]:%d" % peer.port)
        finally:
            peer.close()
        self.assertEqual(statuses(rep), [(OK, "2.0.0")])
        self.assertIsNone(peer.transactions[0].tls)
        self.assertNotIn("STARTTLS", peer.commands)
        FD.wait_log(r"smtp\[\d+\]: %s: relay=" % qid)
        self.assertNotRegex(FD.log(), r"%s: \w+ TLS connection established" % qid)

    def test_may_refused_goes_on_in_clear(self):
        peer = Peer(tls=server_ctx(), starttls_reply="454 4.7.0 TLS not available")
        try:
            qid, rep = deliver("[127.0.0.1]:%d" % peer.port)
        finally:
            peer.close()
        self.assertEqual(statuses(rep), [(OK, "2.0.0")])
        self.assertIsNone(peer.transactions[0].tls)
        self.assertEqual(peer.connections, 1)
        self.assertEqual(peer.commands[:3], ["EHLO client.example.test", "STARTTLS",
                                             "MAIL FROM:<s@example.test>"])
        # a 421 is the server closing, not a refusal of TLS: that address failed
        peer = Peer(tls=server_ctx(), starttls_reply="421 4.3.2 shutting down")
        try:
            qid, rep = deliver("[127.0.0.1]:%d" % peer.port)
        finally:
            peer.close()
        self.assertEqual(statuses(rep), [(TEMPFAIL, "4.3.2")])
        self.assertEqual(rep["results"][0]["text"],
                         "host 127.0.0.1[127.0.0.1] said: 421 4.3.2 shutting down "
                         "(in reply to STARTTLS command)")
        self.assertTrue(no_mail(peer), peer.commands)

    def test_none_never_starttls(self):
        peer = Peer(port=PORTS["none"], tls=server_ctx())
        try:
            qid, rep = deliver(local("none"))
        finally:
            peer.close()
        self.assertEqual(statuses(rep), [(OK, "2.0.0")])
        self.assertNotIn("STARTTLS", peer.commands)
        self.assertIsNone(peer.transactions[0].tls)

    def test_handshake_failure_falls_back_to_clear(self):
        # may: a failed handshake is retried at once in clear on a new
        # connection to the same server (Postfix's behaviour), and the
        # server is remembered: the next connection skips STARTTLS
        peer = Peer(tls=server_ctx(), tls_hostile="garbage")
        try:
            qid, rep = deliver("[127.0.0.1]:%d" % peer.port)
            self.assertEqual(statuses(rep), [(OK, "2.0.0")])
            self.assertEqual(peer.connections, 2)
            self.assertEqual(peer.commands.count("STARTTLS"), 1)
            t = peer.transactions[0]
            self.assertEqual((t.conn, t.tls), (2, None))
            FD.wait_log(r"smtp\[\d+\]: %s: Cannot start TLS: handshake failure with "
                        r"127\.0\.0\.1\[127\.0\.0\.1\]: [^;]+; trying "
                        r"127\.0\.0\.1\[127\.0\.0\.1\]:%d again without TLS" % (qid, peer.port))
            # a new connection (the cached one is closed by the server first)
            peer.drop_idle()
            qid2, rep = deliver("[127.0.0.1]:%d" % peer.port)
            self.assertEqual(statuses(rep), [(OK, "2.0.0")])
            self.assertEqual(peer.connections, 3)
            self.assertEqual(peer.commands.count("STARTTLS"), 1)
            self.assertEqual(peer.transactions[-1].conn, 3)
        finally:
            peer.close()

    def test_handshake_timeout_falls_back_to_clear(self):
        peer = Peer(tls=server_ctx(), tls_hostile="silent")
        try:
            t0 = time.monotonic()
            qid, rep = deliver("[127.0.0.1]:%d" % peer.port)
            took = time.monotonic() - t0
        finally:
            peer.close()
        self.assertEqual(statuses(rep), [(OK, "2.0.0")])
        self.assertEqual(peer.connections, 2)
        self.assertIsNone(peer.transactions[0].tls)
        self.assertGreaterEqual(took, 2.5)  # smtp_starttls_timeout, not helo_timeout's 3s twice
        FD.wait_log(r"%s: conversation with 127\.0\.0\.1\[127\.0\.0\.1\] timed out while "
                    r"performing the TLS handshake; trying \S+ again without TLS" % qid)


class T02Mandatory(unittest.TestCase):
    def test_encrypt_not_offered_deferred(self):
        peer = Peer(port=PORTS["enc_plain"])
        try:
            qid, rep = deliver(local("enc_plain"), ["a@remote.test", "b@remote.test"])
        finally:
            peer.close()
        self.assertEqual(statuses(rep), [(TEMPFAIL, "4.7.4")] * 2)
        self.assertEqual(rep["results"][0]["text"],
                         "TLS is required, but was not offered by host 127.0.0.1[127.0.0.1]")
        self.assertTrue(no_mail(peer), peer.commands)
        self.assertEqual(peer.delivered(), [])

    def test_encrypt_refused_deferred(self):
        peer = Peer(port=PORTS["enc_refused"], tls=server_ctx(),
                    starttls_reply="454 4.7.0 TLS not available due to local problem")
        try:
            qid, rep = deliver(local("enc_refused"))
        finally:
            peer.close()
        self.assertEqual(statuses(rep), [(TEMPFAIL, "4.7.4")])
        self.assertEqual(rep["results"][0]["text"],
                         "TLS is required, but host 127.0.0.1[127.0.0.1] refused to start TLS: "
                         "454 4.7.0 TLS not available due to local problem")
        self.assertTrue(no_mail(peer), peer.commands)

    def test_encrypt_untrusted_certificate_delivered(self):
        # encrypt wants TLS, not a trusted certificate
        peer = Peer(port=PORTS["enc_untrusted"], tls=server_ctx("unknown"))
        try:
            qid, rep = deliver(local("enc_untrusted"))
        finally:
            peer.close()
        self.assertEqual(statuses(rep), [(OK, "2.0.0")])
        self.assertIsNotNone(peer.transactions[0].tls)
        self.assertEqual(tls_line(qid).group(1), "Untrusted")

    def test_encrypt_handshake_failure_deferred(self):
        peer = Peer(port=PORTS["enc_hsfail"], tls=server_ctx(), tls_hostile="garbage")
        try:
            qid, rep = deliver(local("enc_hsfail"))
        finally:
            peer.close()
        self.assertEqual(statuses(rep), [(TEMPFAIL, "4.7.5")])
        self.assertRegex(rep["results"][0]["text"],
                         r"^Cannot start TLS: handshake failure with 127\.0\.0\.1\[127\.0\.0\.1\]: ")
        self.assertEqual(peer.connections, 1)  # never again in clear
        self.assertTrue(no_mail(peer), peer.commands)

    def test_verify_good_certificate(self):
        peer = Peer(port=PORTS["good"], tls=server_ctx())
        try:
            qid, rep = deliver("good.test:%d" % PORTS["good"], ["a@good.test"])
        finally:
            peer.close()
        self.assertEqual(statuses(rep), [(OK, "2.0.0")])
        self.assertIsNotNone(peer.transactions[0].tls)
        self.assertEqual(peer.tls_sessions[0][3], "mx.good.test")  # SNI: the MX host name
        m = tls_line(qid)
        self.assertEqual(m.group(1), "Verified")
        self.assertEqual(m.group(2), "mx.good.test[127.0.0.1]:%d" % PORTS["good"])

    def test_verify_wrong_name_deferred(self):
        peer = Peer(port=PORTS["wrong"], tls=server_ctx())   # a certificate for mx.good.test
        try:
            qid, rep = deliver("wrong.test:%d" % PORTS["wrong"], ["a@wrong.test"])
        finally:
            peer.close()
        self.assertEqual(statuses(rep), [(TEMPFAIL, "4.7.5")])
        self.assertEqual(rep["results"][0]["text"],
                         "Server certificate not verified: hostname mismatch "
                         "(host mx.wrong.test[127.0.0.1])")
        self.assertEqual(peer.sni, ["mx.wrong.test"])
        self.assertTrue(no_mail(peer), peer.commands)

    def test_verify_unknown_ca_deferred(self):
        peer = Peer(port=PORTS["unknownca"], tls=server_ctx("unknown"))
        try:
            qid, rep = deliver("unknownca.test:%d" % PORTS["unknownca"], ["a@unknownca.test"])
        finally:
            peer.close()
        self.assertEqual(statuses(rep), [(TEMPFAIL, "4.7.5")])
        self.assertRegex(rep["results"][0]["text"],
                         r"^Server certificate not verified: unable to get local issuer "
                         r"certificate \(host mx\.unknownca\.test\[127\.0\.0\.1\]\)$")
        self.assertTrue(no_mail(peer), peer.commands)

    def test_policy_parent_domain(self):
        # ".parent.test = encrypt" covers sub.parent.test (a bare domain)
        peer = Peer(port=PORTS["parent"])
        try:
            qid, rep = deliver("sub.parent.test", ["a@sub.parent.test"])
        finally:
            peer.close()
        self.assertEqual(statuses(rep), [(TEMPFAIL, "4.7.4")])
        self.assertEqual(rep["results"][0]["text"],
                         "TLS is required, but was not offered by host "
                         "mx.parent.test[127.0.0.1]")
        peer = Peer(port=PORTS["parent"], tls=server_ctx())
        try:
            qid, rep = deliver("sub.parent.test", ["a@sub.parent.test"])
        finally:
            peer.close()
        self.assertEqual(statuses(rep), [(OK, "2.0.0")])
        self.assertIsNotNone(peer.transactions[0].tls)

    def test_unsupported_policy_deferred(self):
        peer = Peer(port=PORTS["bad"], tls=server_ctx())
        try:
            qid, rep = deliver(local("bad"))
        finally:
            peer.close()
        self.assertEqual(statuses(rep), [(TEMPFAIL, "4.3.5")])
        self.assertIn('"dane" is not one of none, may, encrypt, verify', rep["results"][0]["text"])
        self.assertEqual(peer.connections, 0)


class T03Hostile(unittest.TestCase):
    def check_injection(self, nexthop, peer):
        qid, rep = deliver(nexthop)
        # parsed as the EHLO reply, the injected "SIZE 10" would refuse the
        # message (5.3.4); fed to the TLS layer, the handshake would fail
        # (4.7.5 under encrypt, a second connection in clear under may)
        self.assertEqual(statuses(rep), [(OK, "2.0.0")], rep["results"][0]["text"])
        self.assertEqual(peer.connections, 1)
        t = peer.transactions[0]
        self.assertIsNotNone(t.tls, "delivered in clear")
        self.assertNotIn("SIZE=", t.mail)
        # the genuine EHLO reply came over TLS, once
        self.assertEqual(peer.commands.count("EHLO client.example.test"), 2)
        FD.wait_log(r"smtp\[\d+\]: warning: %s: \S+ sent %d bytes behind its reply to STARTTLS, "
                    r"before the TLS handshake: dropped unread" % (qid, len(SP.TLS_INJECT)))
        tls_line(qid)

    def test_injection_after_starttls_reply_encrypt(self):
        peer = Peer(port=PORTS["inject"], tls=server_ctx(), tls_hostile="inject")
        try:
            self.check_injection(local("inject"), peer)
        finally:
            peer.close()

    def test_injection_after_starttls_reply_may(self):
        peer = Peer(tls=server_ctx(), tls_hostile="inject")
        try:
            self.check_injection("[127.0.0.1]:%d" % peer.port, peer)
        finally:
            peer.close()


class T04Reuse(unittest.TestCase):
    def test_tls_connection_reused(self):
        peer = Peer(tls=server_ctx())
        nh = "[127.0.0.1]:%d" % peer.port
        try:
            q1, q2 = queue_message(subject="one"), queue_message(subject="two")
            with sched() as s:
                rep1 = s.deliver(SP.request(P, q1, nh, ["a@remote.test"]))
                rep2 = s.deliver(SP.request(P, q2, nh, ["b@remote.test"]))
        finally:
            peer.close()
        self.assertEqual(statuses(rep1) + statuses(rep2), [(OK, "2.0.0")] * 2)
        self.assertEqual(peer.connections, 1)
        self.assertEqual(len(peer.tls_sessions), 1)
        self.assertEqual(peer.commands.count("STARTTLS"), 1)
        self.assertEqual([t.tls is not None for t in peer.transactions], [True, True])
        tls_line(q1)
        FD.wait_log(r"smtp\[\d+\]: %s: relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, conn_use=2, "
                    % (q2, peer.port))
        self.assertNotRegex(FD.log(), r"%s: \w+ TLS connection established" % q2)

    def test_tls_connection_not_reused_for_another_nexthop(self):
        peer = Peer(tls=server_ctx())
        try:
            with sched() as s:
                for dom in ("tlsa.test", "tlsb.test", "tlsa.test"):
                    rep = s.deliver(SP.request(P, queue_message(), "%s:%d" % (dom, peer.port),
                                               ["a@%s" % dom]))
                    self.assertEqual(statuses(rep), [(OK, "2.0.0")])
        finally:
            peer.close()
        # tlsb.test has the same MX address, but a TLS session is its nexthop's only
        self.assertEqual(peer.connections, 2)
        self.assertEqual([t.conn for t in peer.transactions], [1, 2, 1])
        self.assertTrue(all(t.tls for t in peer.transactions))

    def test_clear_connection_still_reused_by_address(self):
        peer = Peer()
        try:
            with sched() as s:
                for dom in ("plaina.test", "plainb.test"):
                    rep = s.deliver(SP.request(P, queue_message(), "%s:%d" % (dom, peer.port),
                                               ["a@%s" % dom]))
                    self.assertEqual(statuses(rep), [(OK, "2.0.0")])
        finally:
            peer.close()
        self.assertEqual(peer.connections, 1)


class T05Body(unittest.TestCase):
    def test_large_message_over_tls(self):
        line = "0123456789" * 7 + "\r\n"
        body = line * (3 * 1024 * 1024 // len(line))
        qid = queue_message(body=body, subject="big")
        peer = Peer(tls=server_ctx())
        try:
            _, rep = deliver("[127.0.0.1]:%d" % peer.port, qid=qid)
        finally:
            peer.close()
        self.assertEqual(statuses(rep), [(OK, "2.0.0")])
        t = peer.transactions[0]
        self.assertIsNotNone(t.tls)
        self.assertTrue(t.body.endswith(body.encode()), len(t.body))


if __name__ == "__main__":
    farmlib.run_tests("smtp tls", lambda test: LAST_LOG or FD.log())
