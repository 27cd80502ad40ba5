#!/usr/bin/env python3
"""Integration tests of the lmtp transport farm (issue 7).

farmd runs an smtpserver farm (messages go into the queue) and the lmtp
farm (transport/lmtp) at run/private/lmtp.  The test plays the scheduler.
The LMTP servers are smtp_peers.Peer in LMTP mode on a unix socket (one
end-of-data reply per accepted recipient: "late*@" gets 452 after DATA)
and on 127.0.0.1, and aiosmtpd's LMTP class when it is installed.
Prints "N passed, N failed".
"""

import os
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
from smtp_peers import Peer, OK, TEMPFAIL, PERMFAIL  # noqa: E402

LMTP = os.path.join(H.TOP_BUILDDIR, "transport", "lmtp")

FD = PORT = QUEUE = SOCKDIR = None
LAST_LOG = ""


def setUpModule():
    global FD, PORT, QUEUE, SOCKDIR
    if not os.access(LMTP, os.X_OK) or H.binaries_missing():
        raise unittest.SkipTest("not built")
    FD = farmlib.FarmdInstance(tag="lmtp")
    SOCKDIR = tempfile.mkdtemp(prefix="zfarm-lmtp-sock-")
    PORT = H.free_port()
    g = dict(H.BASE_GLOBALS)
    g.update({"smtpd_verify_recipients": "no", "myhostname": "client.example.test",
              "lmtp_connect_timeout": "3s", "lmtp_helo_timeout": "2s",
              "lmtp_data_done_timeout": "2s", "lmtp_connection_cache_time_limit": "5s",
              "dns_servers": "127.0.0.1:%d" % H.free_port()})
    FD.write_config([
        H.smtp_farm("smtpserver", PORT),
        farmlib.farm_section("lmtp", listen="unix:private/lmtp", program=LMTP,
                             process_limit=1, client_limit=20, args="-v"),
    ], g)
    QUEUE = H.start_instance(FD, [PORT], ["lmtp"])


def tearDownModule():
    global LAST_LOG
    if FD is not None:
        LAST_LOG = FD.log()
        FD.cleanup()


def queue_message(body="Hello LMTP.\r\n.dot line\r\n"):
    with Raw(PORT) as r:
        r.send("EHLO x\r\n")
        r.reply()
        assert r.cmd("MAIL FROM:<s@example.test>").startswith("250")
        assert r.cmd("RCPT TO:<u@example.test>").startswith("250")
        assert r.cmd("DATA").startswith("354")
        data = "Subject: lmtp %s\r\n\r\n%s" % (time.time(), body)
        wire = "\r\n".join("." + x if x.startswith(".") else x for x in data.split("\r\n"))
        r.send(wire.encode() + b".\r\n")
        code, lines = r.reply()
        assert code == 250, lines
        return qid_of(lines[-1])


_MSG = []


def plain():
    if not _MSG:
        _MSG.append(queue_message())
    return _MSG[0]


def sched():
    return P.TransportClient(os.path.join(FD.run, "private", "lmtp"))


def deliver(nexthop, rcpts, qid=None):
    with sched() as s:
        return s.deliver(SP.request(P, qid or plain(), nexthop, rcpts, channel="lmtp"))


def statuses(rep):
    return [(r["status"], r["enhanced"]) for r in rep["results"]]


class T01Lmtp(unittest.TestCase):
    def test_per_recipient_data_replies(self):
        path = os.path.join(SOCKDIR, "lmtp1.sock")
        peer = Peer(path=path, lmtp=True)
        try:
            rep = deliver("unix:" + path, ["a@example.test", "late1@example.test",
                                           "perm1@example.test", "b@example.test"])
        finally:
            peer.close()
        r = rep["results"]
        self.assertEqual([(x["status"], x["code"], x["enhanced"]) for x in r],
                         [(OK, 250, "2.0.0"), (TEMPFAIL, 452, "4.2.2"),
                          (PERMFAIL, 550, "5.1.1"), (OK, 250, "2.0.0")])
        self.assertEqual(r[0]["text"], "250 2.0.0 <a@example.test> Ok: delivered as L1")
        self.assertEqual(r[3]["text"], "250 2.0.0 <b@example.test> Ok: delivered as L1")
        self.assertEqual(r[1]["text"], "localhost[%s] said: 452 4.2.2 <late1@example.test>: "
                         "mailbox full (in reply to end of DATA command)" % path)
        self.assertEqual(rep["relay"], "localhost[%s]" % path)
        self.assertEqual(peer.commands[0], "LHLO client.example.test")
        _, content = QUEUE.read(plain())
        self.assertEqual(peer.transactions[0].body, content)

    def test_reuse_on_unix_socket(self):
        path = os.path.join(SOCKDIR, "lmtp2.sock")
        peer = Peer(path=path, lmtp=True)
        try:
            with sched() as s:
                for i in range(20):
                    rep = s.deliver(SP.request(P, plain(), "unix:" + path,
                                               ["u%d@example.test" % i], channel="lmtp"))
                    self.assertEqual(statuses(rep), [(OK, "2.0.0")])
            self.assertEqual(peer.connections, 1)
            self.assertEqual(len(peer.delivered()), 20)
            FD.wait_log(r"relay=localhost\[%s\], conn_use=20," % path)
        finally:
            peer.close()

    def test_inet_nexthop(self):
        peer = Peer(lmtp=True)
        try:
            for nh in ("inet:127.0.0.1:%d" % peer.port, "[127.0.0.1]:%d" % peer.port):
                rep = deliver(nh, ["a@example.test", "late@example.test"])
                self.assertEqual(statuses(rep), [(OK, "2.0.0"), (TEMPFAIL, "4.2.2")])
                self.assertEqual(rep["relay"], "127.0.0.1[127.0.0.1]:%d" % peer.port)
        finally:
            peer.close()
        self.assertEqual(peer.connections, 1)

    def test_lhlo_refused_and_missing_socket(self):
        path = os.path.join(SOCKDIR, "smtp-not-lmtp.sock")
        peer = Peer(path=path, lmtp=False)  # answers LHLO with 502
        try:
            rep = deliver("unix:" + path, ["a@example.test"])
        finally:
            peer.close()
        self.assertEqual([r["status"] for r in rep["results"]], [TEMPFAIL])
        self.assertIn("(in reply to LHLO command)", rep["results"][0]["text"])
        self.assertTrue(rep["conn_failed"])
        rep = deliver("unix:" + os.path.join(SOCKDIR, "nobody-here.sock"), ["a@example.test"])
        self.assertEqual(statuses(rep), [(TEMPFAIL, "4.4.1")])
        self.assertRegex(rep["results"][0]["text"], r"^connect to localhost\[.*nobody-here"
                         r"\.sock\]: ")
        rep = deliver("unix:relative/path", ["a@example.test"])
        self.assertEqual(statuses(rep), [(TEMPFAIL, "4.3.5")])

    def test_aiosmtpd_lmtp(self):
        try:
            import aiosmtpd.lmtp  # noqa: F401
        except ImportError:
            sys.path.append("/usr/lib/python3/dist-packages")
        try:
            from aiosmtpd.controller import UnixSocketController
            from aiosmtpd.lmtp import LMTP
        except ImportError:
            self.skipTest("aiosmtpd (with UnixSocketController) is not installed")
        got = []

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                got.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
                # aiosmtpd's LMTP leaves RFC 2033's one reply per recipient to the handler
                return "\r\n".join("250 2.0.0 <%s> Ok" % r for r in envelope.rcpt_tos)

        class Ctl(UnixSocketController):
            def factory(self):
                return LMTP(self.handler)

        path = os.path.join(SOCKDIR, "aiosmtpd.sock")
        c = Ctl(Handler(), unix_socket=path)
        c.start()
        try:
            rep = deliver("unix:" + path, ["a@example.test", "b@example.test"])
        finally:
            c.stop()
        self.assertEqual(statuses(rep), [(OK, "2.0.0"), (OK, "2.0.0")])
        self.assertEqual(got[0][:2], ("s@example.test", ["a@example.test", "b@example.test"]))


if __name__ == "__main__":
    farmlib.run_tests("lmtp", lambda test: LAST_LOG or FD.log())
