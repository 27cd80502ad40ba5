#!/usr/bin/env python3
"""Integration tests of the smtp transport farm (issue 7).

farmd runs an smtpserver farm (messages go into the queue over SMTP) and
the smtp farm (transport/smtp) at run/private/smtp.  The test plays the
scheduler: it sends DeliveryRequest frames on a kept connection and reads
the DeliveryReply.  The mail servers on the other side are scripted
Python servers (smtp_peers.py: per-recipient answers, no PIPELINING,
HELO only, SIZE, no SMTPUTF8, DSN, hostile modes), aiosmtpd (a
standards-compliant server) and Postfix's smtp-sink.  Loopback only; no
real DNS query (MX cases use tests/transport/dnsserver.py on loopback
when it is there).  Prints "N passed, N failed".
"""

import os
import socket
import re
import shutil
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_SRCDIR = os.path.abspath(os.environ.get("top_srcdir") or os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(TOP_SRCDIR, "tests", "smtpserver"))
sys.path.insert(0, HERE)
import smtplib_helpers as H  # noqa: E402
from smtplib_helpers import Raw, farmlib, qid_of, wait_until  # noqa: E402
import zfproto as P  # noqa: E402
import smtp_peers as SP  # noqa: E402
from smtp_peers import Peer, OK, TEMPFAIL, PERMFAIL  # noqa: E402

SMTP = os.path.join(H.TOP_BUILDDIR, "transport", "smtp")
SINK = "/usr/sbin/smtp-sink"
SANITIZERS = bool(os.environ.get("ZF_SANITIZERS"))

FD = PORT = QUEUE = DNS = None

# the loopback DNS server's zone (tests/transport/dnsserver.py); every
# address is on 127/8, so nothing leaves the machine
ZONE = {
    "two.test": ["MX 10 mx1.two.test", "MX 20 mx2.two.test"],
    "mx1.two.test": ["A 127.0.0.2"],          # nothing listens there: refused
    "mx2.two.test": ["A 127.0.0.1"],
    "g421.test": ["MX 10 mxa.g421.test", "MX 20 mxb.g421.test"],
    "mxa.g421.test": ["A 127.0.0.3"],         # a 421 greeting
    "mxb.g421.test": ["A 127.0.0.1"],
    "dead.test": ["MX 10 mx1.dead.test", "MX 20 mx2.dead.test"],
    "mx1.dead.test": ["A 127.0.0.2"],
    "mx2.dead.test": ["A 127.0.0.4"],
    "implicit.test": ["A 127.0.0.1"],
    "reuse.test": ["MX 10 mx.reuse.test"],
    "mx.reuse.test": ["A 127.0.0.1"],
    "alias.test": ["MX 10 mx.reuse.test"],   # another nexthop, the same MX address
    "nullmx.test": ["MX 0 ."],
    "broken.test": ["SERVFAIL"],
    "many.test": ["MX 10 m1.many.test", "MX 20 m2.many.test", "MX 30 m3.many.test"],
    "m1.many.test": ["A 127.0.0.2", "A 127.0.0.4"],
    "m2.many.test": ["A 127.0.0.5"],
    "m3.many.test": ["A 127.0.0.1"],
    "v6.test": ["MX 10 mx.v6.test"],
    "mx.v6.test": ["AAAA ::1"],
    "dual.test": ["MX 10 mx.dual.test"],
    "mx.dual.test": ["A 127.0.0.2", "AAAA ::1"],  # IPv4 refused, IPv6 listens
}
LAST_LOG = ""


def have_v6():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


HAVE_V6 = have_v6()
CACHE_TIME = 2  # smtp_connection_cache_time_limit in seconds


def setUpModule():
    global FD, PORT, QUEUE, DNS
    if not os.access(SMTP, os.X_OK) or H.binaries_missing():
        raise unittest.SkipTest("not built")
    try:
        import dnsserver
        DNS = dnsserver.DNSServer(ZONE).start()
    except ImportError:
        DNS = None
    FD = farmlib.FarmdInstance(tag="smtp")
    PORT = H.free_port()
    g = dict(H.BASE_GLOBALS)
    g.update({"smtpd_verify_recipients": "no", "myhostname": "client.example.test",
              "log_level": "info",
              # short phase timeouts so hostile peers cost seconds
              "smtp_connect_timeout": "3s", "smtp_helo_timeout": "2s",
              "smtp_mail_timeout": "2s", "smtp_rcpt_timeout": "2s",
              "smtp_data_init_timeout": "2s", "smtp_data_xfer_timeout": "3s",
              "smtp_data_done_timeout": "2s", "smtp_rset_timeout": "2s",
              "smtp_quit_timeout": "2s",
              "smtp_connection_cache_time_limit": "%ds" % CACHE_TIME,
              "smtp_mx_address_limit": "3",
              # never the system resolver: a loopback server, or a closed port
              "dns_servers": "127.0.0.1:%d" % (DNS.port if DNS else H.free_port())})
    FD.write_config([
        H.smtp_farm("smtpserver", PORT),
        farmlib.farm_section("smtp", listen="unix:private/smtp", program=SMTP,
                             process_limit=1, client_limit=50, args="-v"),
    ], g)
    QUEUE = H.start_instance(FD, [PORT], ["smtp"])


def tearDownModule():
    global LAST_LOG
    if FD is not None:
        LAST_LOG = FD.log()
        FD.cleanup()
    if DNS is not None:
        DNS.stop()


# ---- messages ----

def queue_message(body=None, rcpts=("bob@remote.test",), sender="s@example.test",
                  mail_params="", subject="hello", raw_body=None):
    """A message into the queue over SMTP; its queue ID."""
    if body is None:
        body = "First line.\r\nSecond line.\r\n"
    with Raw(PORT) as r:
        r.send("EHLO x\r\n")
        r.reply()
        got = r.cmd("MAIL FROM:<%s>%s" % (sender, mail_params))
        assert got.startswith("250"), got
        for a in rcpts:
            got = r.cmd("RCPT TO:<%s>" % a)
            assert got.startswith("250"), got
        assert r.cmd("DATA").startswith("354")
        head = ("From: <%s>\r\nTo: <bob@remote.test>\r\nSubject: %s\r\n"
                "Message-ID: <m-%s@example.test>\r\n\r\n" % (sender, subject, time.time()))
        data = head.encode("utf-8") + (raw_body if raw_body is not None
                                       else body.encode("utf-8"))
        # dot-stuff for the wire; the queue keeps it unstuffed
        wire = b"\r\n".join(b"." + x if x.startswith(b".") else x for x in data.split(b"\r\n"))
        if not wire.endswith(b"\r\n"):
            wire += b"\r\n"
        r.send(wire + b".\r\n")
        code, lines = r.reply()
        assert code == 250, lines
        return qid_of(lines[-1])


def rewrite_content(qid, data):
    """Replace a queued message's content in its spool file (bytes smtpserver
    would refuse, such as bare LF), keeping the envelope and control records."""
    path = QUEUE.msg_path(qid)
    with open(path, "rb") as f:
        raw = f.read()
    m = H.spool_message_len(raw, qid)
    msg, tail = raw[16:16 + m], raw[16 + m:]
    n = int.from_bytes(msg[4:8], "big")
    msg = msg[:8 + n] + data
    if raw[:4] == b"ZSL1":  # a slot: "ZSL1", ID time, 4-byte M
        head = raw[:12] + len(msg).to_bytes(4, "big")
    else:  # "ZSP1", tag, 8-byte M
        head = raw[:8] + len(msg).to_bytes(8, "big")
    with open(path, "wb") as f:
        f.write(head + msg + tail)


_MSG = {}


def plain():
    if "plain" not in _MSG:
        _MSG["plain"] = queue_message()
    return _MSG["plain"]


def content(qid):
    return QUEUE.read(qid)[1]


def sched():
    return P.TransportClient(os.path.join(FD.run, "private", "smtp"))


def deliver(nexthop, rcpts, qid=None, **kw):
    with sched() as s:
        return s.deliver(SP.request(P, qid or plain(), nexthop, rcpts, **kw))


def smtp_pid():
    pids = SP.pids_of(SMTP, FD.children())
    assert len(pids) == 1, pids
    return pids[0]


def nh(peer):
    return "[127.0.0.1]:%d" % peer.port


def statuses(rep):
    return [(r["status"], r["enhanced"]) for r in rep["results"]]


# ---- tests ----

class T01Delivery(unittest.TestCase):
    def test_aiosmtpd(self):
        try:
            import aiosmtpd.controller  # noqa: F401
        except ImportError:
            sys.path.append("/usr/lib/python3/dist-packages")
        try:
            from aiosmtpd.controller import Controller
        except ImportError:
            self.skipTest("aiosmtpd is not installed")
        got = []

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                got.append((envelope.mail_from, list(envelope.rcpt_tos),
                            envelope.original_content or envelope.content,
                            list(envelope.mail_options)))
                return "250 2.0.0 Ok: stored"

        port = H.free_port()
        c = Controller(Handler(), hostname="127.0.0.1", port=port)
        c.start()
        try:
            qid = queue_message(body="Hello aiosmtpd.\r\n.leading dot\r\n")
            rep = deliver("[127.0.0.1]:%d" % port, ["bob@remote.test", "carol@remote.test"],
                          qid=qid)
        finally:
            c.stop()
        self.assertEqual(statuses(rep), [(OK, "2.0.0"), (OK, "2.0.0")])
        self.assertEqual(rep["results"][0]["text"], "250 2.0.0 Ok: stored")
        self.assertEqual(rep["relay"], "127.0.0.1[127.0.0.1]:%d" % port)
        self.assertFalse(rep["conn_failed"])
        self.assertEqual(len(got), 1)
        mail_from, rcpt_tos, data, _ = got[0]
        self.assertEqual(mail_from, "s@example.test")
        self.assertEqual(rcpt_tos, ["bob@remote.test", "carol@remote.test"])
        self.assertEqual(data, content(qid))
        FD.wait_log(r"smtp\[\d+\]: %s: relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, conn_use=1, "
                    r"delay=[\d.]+, delays=[\d./]+, sent=2, deferred=0, bounced=0" % (qid, port))

    def test_smtp_sink(self):
        if not os.access(SINK, os.X_OK):
            self.skipTest("no smtp-sink")
        port = H.free_port()
        args = [SINK]
        if os.geteuid() == 0:
            args += ["-u", "nobody"]
        p = subprocess.Popen(args + ["127.0.0.1:%d" % port, "50"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: farmlib.can_connect(port), 10, what="smtp-sink")
            rep = deliver("[127.0.0.1]:%d" % port, ["a@remote.test", "b@remote.test"])
            self.assertEqual(statuses(rep), [(OK, "2.0.0"), (OK, "2.0.0")])
            self.assertRegex(rep["results"][0]["text"], r"^250 2\.0\.0 Ok")
            # smtp-sink -Q RCPT... is per command; use its hard-bounce mode for RCPT
        finally:
            p.terminate()
            p.wait()
        p = subprocess.Popen(args + ["-B", "550 5.1.1 Sorry, no", "-f", "RCPT",
                                     "127.0.0.1:%d" % port, "50"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: farmlib.can_connect(port), 10, what="smtp-sink")
            rep = deliver("[127.0.0.1]:%d" % port, ["a@remote.test"])
            self.assertEqual(statuses(rep), [(PERMFAIL, "5.1.1")])
            self.assertEqual(rep["results"][0]["code"], 550)
            self.assertIn("said: 550 5.1.1 Sorry, no (in reply to RCPT TO command)",
                          rep["results"][0]["text"])
        finally:
            p.terminate()
            p.wait()

    def test_partial_failure(self):
        peer = Peer()
        try:
            rep = deliver(nh(peer), ["ok@remote.test", "temp1@remote.test",
                                     "perm1@remote.test", "ml@remote.test"])
        finally:
            peer.close()
        r = rep["results"]
        self.assertEqual([(x["status"], x["code"], x["enhanced"]) for x in r],
                         [(OK, 250, "2.0.0"), (TEMPFAIL, 451, "4.2.0"),
                          (PERMFAIL, 550, "5.1.1"), (PERMFAIL, 550, "5.7.1")])
        name = "127.0.0.1[127.0.0.1]"
        self.assertEqual(r[0]["text"], "250 2.0.0 Ok: queued as Q1")
        self.assertEqual(r[1]["text"], "%s said: 451 4.2.0 <temp1@remote.test>: mailbox busy "
                         "(in reply to RCPT TO command)" % name)
        self.assertEqual(r[2]["text"], "%s said: 550 5.1.1 <perm1@remote.test>: user unknown "
                         "(in reply to RCPT TO command)" % name)
        self.assertEqual(r[3]["text"], "%s said: 550 5.7.1 <ml@remote.test>: first line "
                         "second line third line (in reply to RCPT TO command)" % name)
        self.assertEqual(len(peer.transactions), 1)
        self.assertEqual(peer.transactions[0].accepted, ["ok@remote.test"])

    def test_nobody_accepted(self):
        peer = Peer()
        try:
            with sched() as s:
                rep = s.deliver(SP.request(P, plain(), nh(peer), ["perm1@remote.test",
                                                                   "temp2@remote.test"]))
                self.assertEqual(statuses(rep), [(PERMFAIL, "5.1.1"), (TEMPFAIL, "4.2.0")])
                self.assertFalse(peer.delivered())
                # RSET made the connection clean: the next delivery reuses it
                rep = s.deliver(SP.request(P, plain(), nh(peer), ["ok@remote.test"]))
                self.assertEqual(statuses(rep), [(OK, "2.0.0")])
            self.assertIn("RSET", peer.commands)
            self.assertEqual(peer.connections, 1)
        finally:
            peer.close()

    def test_no_pipelining(self):
        for dsn in (False, True):
            peer = Peer(pipelining=False, dsn=dsn)
            try:
                rep = deliver(nh(peer), ["ok@remote.test", "perm1@remote.test",
                                         "ok2@remote.test"])
                self.assertEqual(statuses(rep), [(OK, "2.0.0"), (PERMFAIL, "5.1.1"),
                                                 (OK, "2.0.0")])
                rep = deliver(nh(peer), ["perm1@remote.test"])
                self.assertEqual(statuses(rep), [(PERMFAIL, "5.1.1")])
                # lockstep: no DATA after nobody was accepted, RSET instead
                self.assertEqual(peer.commands.count("DATA"), 1)
                self.assertIn("RSET", peer.commands)
            finally:
                peer.close()

    def test_helo_fallback(self):
        peer = Peer(esmtp=False)
        try:
            rep = deliver(nh(peer), ["ok@remote.test"])
        finally:
            peer.close()
        self.assertEqual(statuses(rep), [(OK, "2.0.0")])
        self.assertEqual(peer.commands[:3], ["EHLO client.example.test",
                                             "HELO client.example.test",
                                             "MAIL FROM:<s@example.test>"])

    def test_ehlo_refused_temporarily(self):
        peer = Peer(ehlo_reply="421 4.7.0 not now")
        try:
            rep = deliver(nh(peer), ["ok@remote.test"])
        finally:
            peer.close()
        self.assertEqual(statuses(rep), [(TEMPFAIL, "4.7.0")])
        self.assertTrue(rep["conn_failed"])
        self.assertIn("said: 421 4.7.0 not now (in reply to EHLO command)",
                      rep["results"][0]["text"])

    def test_size_refused_without_sending(self):
        peer = Peer(size=100)
        try:
            qid = queue_message(body="x" * 200 + "\r\n")
            rep = deliver(nh(peer), ["ok@remote.test", "ok2@remote.test"], qid=qid)
            self.assertEqual(statuses(rep), [(PERMFAIL, "5.3.4")] * 2)
            self.assertRegex(rep["results"][0]["text"],
                             r"^message size \d+ exceeds size limit 100 of server "
                             r"127\.0\.0\.1\[127\.0\.0\.1\]$")
            self.assertFalse([c for c in peer.commands if c.startswith("MAIL")])
            # a smaller one goes, with SIZE=
            rep = deliver(nh(peer), ["ok@remote.test"], qid=queue_message(body="",
                                                                          subject="s"))
        finally:
            peer.close()
        self.assertEqual(statuses(rep), [(PERMFAIL, "5.3.4")])  # headers alone > 100
        big = Peer(size=100000)
        try:
            qid = plain()
            rep = deliver(nh(big), ["ok@remote.test"], qid=qid)
            self.assertEqual(statuses(rep), [(OK, "2.0.0")])
            self.assertIn("MAIL FROM:<s@example.test> SIZE=%d" % len(content(qid)),
                          big.commands)
        finally:
            big.close()

    def test_smtputf8_missing(self):
        peer = Peer(smtputf8=False)
        try:
            rep = deliver(nh(peer), ["j\u00f6rg@remote.test", "plain@remote.test"])
            self.assertEqual(statuses(rep), [(PERMFAIL, "5.6.7"), (OK, "2.0.0")])
            self.assertEqual(rep["results"][0]["text"],
                             "SMTPUTF8 is required, but was not offered by host "
                             "127.0.0.1[127.0.0.1]")
            # an envelope that needs SMTPUTF8: every recipient
            qid = queue_message(mail_params=" SMTPUTF8", sender="s@example.test")
            rep = deliver(nh(peer), ["a@remote.test", "b@remote.test"], qid=qid)
            self.assertEqual(statuses(rep), [(PERMFAIL, "5.6.7")] * 2)
            self.assertEqual(len(peer.transactions), 1)
        finally:
            peer.close()
        ok = Peer(smtputf8=True)
        try:
            rep = deliver(nh(ok), ["j\u00f6rg@remote.test"])
            self.assertEqual(statuses(rep), [(OK, "2.0.0")])
            self.assertTrue(ok.transactions[0].mail.endswith(" SMTPUTF8"),
                            ok.transactions[0].mail)
        finally:
            ok.close()

    def test_dsn_passed_on(self):
        peer = Peer(dsn=True)
        try:
            qid = queue_message(mail_params=" RET=HDRS ENVID=env+2B7")
            rq = SP.request(P, qid, nh(peer), [
                SP.recipient(P, 0, "ok@remote.test", orcpt="rfc822;orig+x@example.test",
                             notify=SP.NOTIFY_SUCCESS | SP.NOTIFY_FAILURE),
                SP.recipient(P, 1, "ok2@remote.test", notify=SP.NOTIFY_NEVER,
                             orig="list@example.test"),
                SP.recipient(P, 2, "ok3@remote.test")])
            with sched() as s:
                rep = s.deliver(rq)
        finally:
            peer.close()
        self.assertEqual(statuses(rep), [(OK, "2.0.0")] * 3)
        # NOTIFY went on to a DSN-capable hop: that hop reports success;
        # no NOTIFY given (index 2): ours to report, not passed
        self.assertEqual([r["dsn_passed"] for r in rep["results"]], [True, True, False])
        t = peer.transactions[0]
        self.assertIn(" RET=HDRS", t.mail)
        self.assertIn(" ENVID=env+2B7", t.mail)
        self.assertEqual(t.rcpts, [
            "RCPT TO:<ok@remote.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig+2Bx@example.test",
            "RCPT TO:<ok2@remote.test> NOTIFY=NEVER ORCPT=rfc822;list@example.test",
            "RCPT TO:<ok3@remote.test>"])
        # no DSN offered: no DSN parameters
        plainpeer = Peer(dsn=False)
        try:
            with sched() as s:
                rep = s.deliver(SP.request(P, qid, nh(plainpeer), [
                    SP.recipient(P, 0, "ok@remote.test", orcpt="rfc822;o@x",
                                 notify=SP.NOTIFY_SUCCESS)]))
            self.assertEqual(statuses(rep), [(OK, "2.0.0")])
            self.assertEqual([r["dsn_passed"] for r in rep["results"]], [False])
            self.assertEqual(plainpeer.transactions[0].rcpts, ["RCPT TO:<ok@remote.test>"])
            self.assertNotIn("RET=", plainpeer.transactions[0].mail)
        finally:
            plainpeer.close()

    def test_body_encoding(self):
        raw = (b".\r\n..two dots\r\n.single\r\nbare LF\nnext\rbare CR\r\n"
               b"8bit: \xc3\xa9t\xc3\xa9\r\n.\r\nlast line without end")
        qid = queue_message(mail_params=" BODY=8BITMIME")
        rewrite_content(qid, b"Subject: odd lines\r\n\r\n" + raw)
        stored = content(qid)
        self.assertTrue(stored.endswith(b"without end"))
        peer = Peer()
        try:
            rep = deliver(nh(peer), ["ok@remote.test"], qid=qid)
        finally:
            peer.close()
        self.assertEqual(statuses(rep), [(OK, "2.0.0")])
        t = peer.transactions[0]
        self.assertIn(" BODY=8BITMIME", t.mail)
        # on the wire: CR LF lines only, dot-stuffed
        self.assertNotIn(b"\n", t.data.replace(b"\r\n", b""))
        self.assertNotIn(b"\r", t.data.replace(b"\r\n", b""))
        for line in t.data.split(b"\r\n"):
            if line.startswith(b"."):
                self.assertTrue(line.startswith(b".."), line)
        # unstuffed, it is the queued content with every line end made CR LF
        want = stored.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
        if not want.endswith(b"\r\n"):
            want += b"\r\n"
        self.assertEqual(t.body, want)
        # no 8BITMIME offered: sent as it is, without BODY=
        peer = Peer(eightbitmime=False)
        try:
            rep = deliver(nh(peer), ["ok@remote.test"], qid=qid)
        finally:
            peer.close()
        self.assertEqual(statuses(rep), [(OK, "2.0.0")])
        self.assertNotIn("BODY=", peer.transactions[0].mail)
        self.assertEqual(peer.transactions[0].body, want)

    def test_large_message_streamed(self):
        line = "y" * 76 + "\r\n"
        qid = queue_message(body=line * (3 * 1024 * 1024 // len(line)))
        peer = Peer()
        try:
            pid = smtp_pid()
            before = SP.rss_kb(pid)
            rep = deliver(nh(peer), ["ok@remote.test"], qid=qid)
            after = SP.rss_kb(pid)
        finally:
            peer.close()
        self.assertEqual(statuses(rep), [(OK, "2.0.0")])
        self.assertEqual(len(peer.transactions[0].body), len(content(qid)))
        # never the whole 3 MB message in memory
        self.assertLess(after - before, 2048 if not SANITIZERS else 8192)


class T02Hostile(unittest.TestCase):
    CASES = [
        # hostile mode, setup failure?, text pattern
        ("endless", True, r"protocol error with 127\.0\.0\.1\[127\.0\.0\.1\] while performing "
                          r"the EHLO handshake: reply of more than 100 lines"),
        ("longline", True, r"protocol error with .* while receiving the initial server "
                           r"greeting: reply line too long"),
        ("garbage", True, r"protocol error with .* while receiving the initial server "
                          r"greeting: malformed reply line"),
        ("silent", True, r"conversation with 127\.0\.0\.1\[127\.0\.0\.1\] timed out while "
                         r"receiving the initial server greeting"),
        ("greet421", True, r"host 127\.0\.0\.1\[127\.0\.0\.1\] refused to talk to me: "
                           r"421 4\.3\.2 busy, try later"),
        ("greet554", True, r"host .* refused to talk to me: 554 5\.7\.1 go away"),
        ("mail_eof", False, r"lost connection with 127\.0\.0\.1\[127\.0\.0\.1\] while "
                            r"sending MAIL FROM"),
        ("mail_partial", False, r"lost connection with .* while sending MAIL FROM"),
        ("rcpt_silent", False, r"conversation with .* timed out while sending RCPT TO"),
        ("data_silent", False, r"conversation with .* timed out while sending end of data "
                               r"-- message may be sent more than once"),
        ("flood", False, r"protocol error with .* while sending MAIL FROM: reply line too "
                         r"long"),
    ]

    def test_hostile_peers(self):
        pid = smtp_pid()
        good = Peer()
        try:
            rep = deliver(nh(good), ["ok@remote.test"])
            self.assertEqual(statuses(rep), [(OK, "2.0.0")])
            base_rss = SP.rss_kb(pid)
            for mode, setup, pattern in self.CASES:
                with self.subTest(mode=mode):
                    peer = Peer(hostile=mode)
                    try:
                        rep = deliver(nh(peer), ["ok@remote.test", "ok2@remote.test"])
                    finally:
                        peer.close()
                    r = rep["results"]
                    self.assertEqual([x["status"] for x in r], [TEMPFAIL, TEMPFAIL])
                    self.assertRegex(r[0]["text"], "^" + pattern)
                    self.assertTrue(r[0]["enhanced"].startswith("4."), r[0]["enhanced"])
                    self.assertEqual(rep["conn_failed"], setup)
                    self.assertLess(len(r[0]["text"]), 1001)
                    self.assertFalse(re.search(r"[\x00-\x1f\x7f]", r[0]["text"]))
                    # the farm lives on and delivers
                    self.assertEqual(smtp_pid(), pid)
                    rep = deliver(nh(good), ["ok@remote.test"])
                    self.assertEqual(statuses(rep), [(OK, "2.0.0")])
            self.assertLess(SP.rss_kb(pid) - base_rss, 4096 if not SANITIZERS else 32768)
        finally:
            good.close()

    def test_no_command_injection(self):
        peer = Peer()
        try:
            rep = deliver(nh(peer), ["ok@remote.test", "evil@x>\r\nRCPT TO:<victim@y",
                                     "bare\nlf@x"])
            self.assertEqual(statuses(rep), [(OK, "2.0.0"), (PERMFAIL, "5.1.3"),
                                             (PERMFAIL, "5.1.3")])
            rep = deliver(nh(peer), ["ok@remote.test"], sender="s@x>\r\nRSET")
            self.assertEqual(statuses(rep), [(PERMFAIL, "5.1.7")])
        finally:
            peer.close()
        self.assertEqual([c for c in peer.commands if c.startswith("RCPT")],
                         ["RCPT TO:<ok@remote.test>"])
        self.assertEqual(len(peer.transactions), 1)

    def test_connect_refused(self):
        port = H.free_port()
        rep = deliver("[127.0.0.1]:%d" % port, ["ok@remote.test"])
        self.assertEqual(statuses(rep), [(TEMPFAIL, "4.4.1")])
        self.assertTrue(rep["conn_failed"])
        self.assertEqual(rep["relay"], "none")
        self.assertRegex(rep["results"][0]["text"],
                         r"^connect to 127\.0\.0\.1\[127\.0\.0\.1\]:%d: Connection refused$"
                         % port)

    def test_bad_nexthop_and_missing_message(self):
        rep = deliver("[unclosed:25", ["ok@remote.test"])
        self.assertEqual(statuses(rep), [(TEMPFAIL, "4.3.5")])
        gone = plain()[:11] + "ZZZZZ"
        rep = deliver("[127.0.0.1]:1", ["ok@remote.test"], qid=gone)
        self.assertEqual([r["status"] for r in rep["results"]], [PERMFAIL])
        self.assertIn("message is gone", rep["results"][0]["text"])

    def test_scheduler_leaves_mid_delivery(self):
        pid = smtp_pid()
        peer = Peer(hostile="rcpt_silent")
        try:
            with sched() as s:
                s.send(SP.request(P, plain(), nh(peer), ["ok@remote.test"]))
                peer.wait(lambda: any(c.startswith("RCPT") for c in peer.commands), 10,
                          "the RCPT")
            FD.wait_log(r"%s: the scheduler went away during the delivery" % plain(), 10)
        finally:
            peer.close()
        self.assertEqual(smtp_pid(), pid)
        good = Peer()
        try:
            self.assertEqual(statuses(deliver(nh(good), ["ok@remote.test"])), [(OK, "2.0.0")])
        finally:
            good.close()


class T03Reuse(unittest.TestCase):
    def test_fifty_deliveries_one_connection(self):
        peer = Peer()
        try:
            with sched() as s:
                for i in range(50):
                    rep = s.deliver(SP.request(P, plain(), nh(peer), ["u%d@remote.test" % i]))
                    self.assertEqual(statuses(rep), [(OK, "2.0.0")], i)
            self.assertEqual(peer.connections, 1)
            self.assertEqual(len(peer.delivered()), 50)
            self.assertNotIn("RSET", peer.commands)
            FD.wait_log(r"relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, conn_use=50," % peer.port)
            # another scheduler connection to the same nexthop: still the same SMTP connection
            rep = deliver(nh(peer), ["again@remote.test"])
            self.assertEqual(statuses(rep), [(OK, "2.0.0")])
            self.assertEqual(peer.connections, 1)
        finally:
            peer.close()

    def test_server_closes_idle_connection(self):
        peer = Peer()
        try:
            self.assertEqual(statuses(deliver(nh(peer), ["a@remote.test"])), [(OK, "2.0.0")])
            peer.drop_idle()
            # noticed while idle: dropped from the cache
            FD.wait_log(r"127\.0\.0\.1\[127\.0\.0\.1\]:%d: cached connection closed by the "
                        r"server" % peer.port, 10)
            rep = deliver(nh(peer), ["b@remote.test"])
            self.assertEqual(statuses(rep), [(OK, "2.0.0")])
            self.assertEqual(peer.connections, 2)
            self.assertEqual(len(peer.delivered()), 2)
        finally:
            peer.close()

    def test_cached_connection_dead_at_mail(self):
        # the server answers the second MAIL of a connection with 421 and closes
        peer = Peer(mail_421_after=1)
        try:
            with sched() as s:
                for i in range(3):
                    rep = s.deliver(SP.request(P, plain(), nh(peer), ["u%d@remote.test" % i]))
                    self.assertEqual(statuses(rep), [(OK, "2.0.0")], i)
            self.assertEqual(peer.connections, 3)
            self.assertEqual(len(peer.delivered()), 3)
            FD.wait_log(r"cached connection to 127\.0\.0\.1\[127\.0\.0\.1\]:%d was lost "
                        r"before MAIL; trying another" % peer.port, count=2)
        finally:
            peer.close()

    def test_cache_time_limit_sends_quit(self):
        peer = Peer()
        try:
            self.assertEqual(statuses(deliver(nh(peer), ["a@remote.test"])), [(OK, "2.0.0")])
            self.assertEqual(peer.quits, 0)
            peer.wait(lambda: peer.quits == 1, CACHE_TIME + 5, "QUIT at the cache time limit")
            FD.wait_log(r"127\.0\.0\.1\[127\.0\.0\.1\]:%d: closing cached connection \(idle "
                        r"time limit, used 1 times\)" % peer.port)
            self.assertEqual(statuses(deliver(nh(peer), ["b@remote.test"])), [(OK, "2.0.0")])
            self.assertEqual(peer.connections, 2)
        finally:
            peer.close()

    def test_parallel_scheduler_connections(self):
        import threading
        peer = Peer()
        errors = []

        def worker(n):
            try:
                with sched() as s:
                    for i in range(10):
                        rep = s.deliver(SP.request(P, plain(), nh(peer),
                                                   ["w%d-%d@remote.test" % (n, i)]))
                        if statuses(rep) != [(OK, "2.0.0")]:
                            errors.append(rep)
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        try:
            threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            self.assertEqual(errors, [])
            self.assertEqual(len(peer.delivered()), 80)
            # at most one connection per concurrent delivery, reused afterwards
            self.assertLessEqual(peer.connections, 8)
        finally:
            peer.close()


class T04Mx(unittest.TestCase):
    """MX lookups against tests/transport/dnsserver.py on loopback."""

    def setUp(self):
        if DNS is None:
            self.skipTest("tests/transport/dnsserver.py is not there")

    def test_next_mx_on_connect_failure(self):
        peer = Peer()
        try:
            rep = deliver("two.test:%d" % peer.port, ["ok@two.test"])
        finally:
            peer.close()
        self.assertEqual(statuses(rep), [(OK, "2.0.0")])
        self.assertEqual(rep["relay"], "mx2.two.test[127.0.0.1]:%d" % peer.port)
        self.assertFalse(rep["conn_failed"])
        self.assertGreaterEqual(DNS.count("two.test", "MX"), 1)

    def test_next_mx_on_421_greeting(self):
        good = Peer()
        bad = Peer(hostile="greet421", host="127.0.0.3", port=good.port)
        try:
            rep = deliver("g421.test:%d" % good.port, ["ok@g421.test"])
            self.assertEqual(bad.connections, 1)
        finally:
            good.close()
            bad.close()
        self.assertEqual(statuses(rep), [(OK, "2.0.0")])
        self.assertEqual(rep["relay"], "mxb.g421.test[127.0.0.1]:%d" % good.port)

    def test_implicit_mx(self):
        peer = Peer()
        try:
            rep = deliver("implicit.test:%d" % peer.port, ["ok@implicit.test"])
        finally:
            peer.close()
        self.assertEqual(statuses(rep), [(OK, "2.0.0")])
        self.assertEqual(rep["relay"], "implicit.test[127.0.0.1]:%d" % peer.port)

    @unittest.skipUnless(HAVE_V6, "no IPv6 loopback")
    def test_ipv6(self):
        # one peer per case: a cached connection (keyed by address too)
        # would otherwise serve the next case without a lookup
        cases = [("[::1]", "ok@v6.test", "::1"),
                 ("v6.test", "ok2@v6.test", "mx.v6.test"),
                 # one MX host with both families: its refused IPv4
                 # address is not the end, the IPv6 one takes the mail
                 ("dual.test", "ok3@dual.test", "mx.dual.test")]
        for dest, rcpt, host in cases:
            peer = Peer(host="::1")
            try:
                rep = deliver("%s:%d" % (dest, peer.port), [rcpt])
            finally:
                peer.close()
            self.assertEqual(statuses(rep), [(OK, "2.0.0")], dest)
            self.assertEqual(rep["relay"], "%s[::1]:%d" % (host, peer.port))
            self.assertEqual(len(peer.transactions), 1, dest)

    def test_all_mx_fail(self):
        port = H.free_port()
        rep = deliver("dead.test:%d" % port, ["ok@dead.test"])
        self.assertEqual(statuses(rep), [(TEMPFAIL, "4.4.1")])
        self.assertTrue(rep["conn_failed"])
        # the last error
        self.assertEqual(rep["results"][0]["text"],
                         "connect to mx2.dead.test[127.0.0.4]:%d: Connection refused" % port)

    def test_address_limit(self):
        # m1 (two addresses) and m2 are dead; smtp_mx_address_limit=3 stops before m3
        port = H.free_port()
        rep = deliver("many.test:%d" % port, ["ok@many.test"])
        self.assertEqual(statuses(rep), [(TEMPFAIL, "4.4.1")])
        self.assertIn("m2.many.test[127.0.0.5]", rep["results"][0]["text"])

    def test_null_mx(self):
        before = DNS.count()
        rep = deliver("nullmx.test:%d" % H.free_port(), ["a@nullmx.test", "b@nullmx.test"])
        self.assertEqual([(r["status"], r["enhanced"]) for r in rep["results"]],
                         [(PERMFAIL, "5.1.10")] * 2)
        self.assertFalse(rep["conn_failed"])
        self.assertGreater(DNS.count(), before)

    def test_nxdomain_and_servfail(self):
        rep = deliver("nosuch.test", ["a@nosuch.test"])
        self.assertEqual(statuses(rep), [(PERMFAIL, "5.1.2")])
        self.assertFalse(rep["conn_failed"])
        rep = deliver("broken.test", ["a@broken.test"])
        self.assertEqual(statuses(rep), [(TEMPFAIL, "4.4.3")])
        self.assertTrue(rep["conn_failed"])

    def test_cached_connection_skips_dns(self):
        peer = Peer()
        try:
            with sched() as s:
                rep = s.deliver(SP.request(P, plain(), "reuse.test:%d" % peer.port,
                                           ["a@reuse.test"]))
                self.assertEqual(statuses(rep), [(OK, "2.0.0")])
                n = DNS.count("reuse.test")
                for i in range(5):
                    rep = s.deliver(SP.request(P, plain(), "reuse.test:%d" % peer.port,
                                               ["b%d@reuse.test" % i]))
                    self.assertEqual(statuses(rep), [(OK, "2.0.0")])
                self.assertEqual(DNS.count("reuse.test"), n)
                # another nexthop with the same MX address: DNS, then the cached connection
                rep = s.deliver(SP.request(P, plain(), "alias.test:%d" % peer.port,
                                           ["c@alias.test"]))
                self.assertEqual(statuses(rep), [(OK, "2.0.0")])
                self.assertEqual(rep["relay"], "mx.reuse.test[127.0.0.1]:%d" % peer.port)
            self.assertEqual(peer.connections, 1)
            self.assertEqual(len(peer.delivered()), 7)
        finally:
            peer.close()


if __name__ == "__main__":
    farmlib.run_tests("smtp", lambda test: LAST_LOG or FD.log())
