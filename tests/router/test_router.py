#!/usr/bin/env python3
"""Integration tests of the router farm (issue #5).

One farmd runs an smtpserver farm and a router farm; a stand-in scheduler
(a Python unix socket server at run/private/scheduler) records what the
router submits and answers SchedAck, or holds its answers back.  Mail goes
in over SMTP; the tests read the routes from the queue file's control
records and the router's log.  Python 3 standard library only; prints
"N passed, N failed" and exits non-zero on failure.
"""

import os
import signal
import socket
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_SRCDIR = os.path.abspath(os.environ.get("top_srcdir") or os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(TOP_SRCDIR, "tests", "smtpserver"))
import smtplib_helpers as H  # noqa: E402
from smtplib_helpers import Raw, farmlib, qid_of, wait_until  # noqa: E402
import zfproto as P  # noqa: E402

ROUTER = H.ROUTER


# ---- the instance ----

FD = None
PORT = None
NOVERIFY = None   # an smtpserver farm that does not ask the router at RCPT
QUEUE = None
SCHED = None
TMP = None


def setUpModule():
    global FD, PORT, NOVERIFY, QUEUE, SCHED, TMP
    if not os.access(ROUTER, os.X_OK) or H.binaries_missing():
        raise unittest.SkipTest("not built")
    FD = farmlib.FarmdInstance(tag="router")
    TMP = FD.tmp
    with open(os.path.join(TMP, "aliases"), "w") as f:
        f.write("postmaster: alice\nteam: alice, bob, carol@remote.test\n"
                "loop1: loop2\nloop2: loop1\nbroken: :include:%s\n"
                % os.path.join(TMP, "no-such-include"))
    with open(os.path.join(TMP, "bulk.domains"), "w") as f:
        f.write("bulk.test\n.bulk.test\n")
    PORT = H.free_port()
    g = dict(H.BASE_GLOBALS)
    g.update({
        "router_endpoint": "unix:private/router",
        "mydestination": "localhost, example.test",
        "local_recipient_maps": "inline:{alice, bob}",
        "alias_maps": "aliases:" + os.path.join(TMP, "aliases"),
        "transport_maps": "inline:{partner.test=partner1:[127.0.0.1]:2626, dead.test=error:5.1.2 No such domain}",
        "log_level": "info",
    })
    NOVERIFY = H.free_port()
    farms = [
        H.smtp_farm("smtpserver", PORT),
        H.smtp_farm("noverify", NOVERIFY, smtpd_verify_recipients="no"),
        farmlib.farm_section("router", listen="unix:private/router", program=ROUTER,
                             process_limit=2, client_limit=20),
    ]
    channels = ("\n[channel bulk]\ndomains = set:%s\n\n[channel partner1]\n"
                "endpoint = unix:private/smtp\n" % os.path.join(TMP, "bulk.domains"))
    FD.write_config(farms, g)
    with open(FD.conf, "a") as f:
        f.write(channels)
    os.makedirs(os.path.join(FD.run, "private"), mode=0o700, exist_ok=True)
    SCHED = H.FakeScheduler(os.path.join(FD.run, "private", "scheduler"))
    QUEUE = H.start_instance(FD, [PORT, NOVERIFY])


def tearDownModule():
    global LAST_LOG
    if FD is not None:
        LAST_LOG = FD.log()
        FD.cleanup()
    if SCHED is not None:
        SCHED.close()


def send(rcpts, sender="s@example.test", port=None):
    with Raw(port or PORT) as r:
        r.send("EHLO x\r\n")
        r.reply()
        assert r.cmd("MAIL FROM:<%s>" % sender).startswith("250")
        for a in rcpts:
            got = r.cmd("RCPT TO:<%s>" % a)
            assert got.startswith("250"), (a, got)
        assert r.cmd("DATA").startswith("354")
        r.send("Subject: routing\r\n\r\nhello\r\n.\r\n")
        code, lines = r.reply()
        assert code == 250, lines
        return qid_of(lines[-1])


def router_children():
    """Live router children of farmd (their command line names the program)."""
    out = []
    for pid in FD.children():
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                if f.read().split(b"\0")[0] == ROUTER.encode():
                    out.append(pid)
        except OSError:
            pass
    return out


class T01Routing(unittest.TestCase):
    def test_four_channels(self):
        """One message, recipients in local, smtp, bulk and partner1 (seed
        001's D1011 idea): routed durably, split by channel, submitted."""
        qid = send(["alice@localhost", "u@remote.test", "v@x.bulk.test", "w@partner.test"])
        wait_until(lambda: SCHED.count(qid) == 1, 10, what="SchedSubmit of %s" % qid)
        rs, markers = QUEUE.routes(qid)
        self.assertEqual(markers, 1)
        got = sorted((r["channel"], r["nexthop"], r["address"]) for r in rs)
        self.assertEqual(got, [("bulk", "x.bulk.test", "v@x.bulk.test"),
                               ("local", "", "alice@localhost"),
                               ("partner1", "[127.0.0.1]:2626", "w@partner.test"),
                               ("smtp", "remote.test", "u@remote.test")])
        self.assertTrue(all(r["total"] == 4 for r in rs))
        FD.wait_log(r"%s: to=<alice@localhost>, orig_to=<alice@localhost>, channel=local" % qid)
        FD.wait_log(r"%s: to=<v@x.bulk.test>, orig_to=<v@x.bulk.test>, channel=bulk, "
                    r"nexthop=x.bulk.test" % qid)

    def test_aliases_and_errors(self):
        qid = send(["team@localhost", "postmaster@example.test", "nobody@localhost",
                    "loop1@localhost", "x@dead.test"], port=NOVERIFY)
        wait_until(lambda: SCHED.count(qid) == 1, 10, what="SchedSubmit")
        rs, _ = QUEUE.routes(qid)
        ok = sorted((r["channel"], r["address"]) for r in rs if not r["error"])
        errors = sorted((r["orig"], r["error"].split()[0]) for r in rs if r["error"])
        # team -> alice, bob, carol@remote.test; postmaster -> alice: an
        # unqualified alias target is in the first local domain, so both give
        # alice@localhost, delivered once
        self.assertEqual(ok, [("local", "alice@localhost"), ("local", "bob@localhost"),
                              ("smtp", "carol@remote.test")])
        self.assertEqual(errors, [("loop1@localhost", "5.4.6"),
                                  ("nobody@localhost", "5.1.1"),
                                  ("x@dead.test", "5.1.2")])


class T01aVerify(unittest.TestCase):
    def test_rcpt_checked_by_the_router(self):
        with Raw(PORT) as r:
            r.send("EHLO x\r\n")
            r.reply()
            self.assertEqual(r.cmd("MAIL FROM:<s@example.test>"), "250 2.1.0 Ok")
            self.assertEqual(r.cmd("RCPT TO:<alice@localhost>"), "250 2.1.5 Ok")
            self.assertEqual(r.cmd("RCPT TO:<team@example.test>"), "250 2.1.5 Ok")
            self.assertEqual(r.cmd("RCPT TO:<nobody@localhost>"),
                             "550 5.1.1 <nobody@localhost>: Recipient address rejected: "
                             "User unknown in local recipient table")
            got = r.cmd("RCPT TO:<loop1@localhost>")
            self.assertTrue(got.startswith("550 5.4.6 <loop1@localhost>: Recipient address "
                                           "rejected: "), got)
            self.assertEqual(r.cmd("RCPT TO:<u@remote.test>"), "250 2.1.5 Ok")
            # pipelined RCPTs keep their order through the asynchronous checks
            r.send("RCPT TO:<nobody@localhost>\r\nRCPT TO:<bob@localhost>\r\n"
                   "RCPT TO:<nobody2@localhost>\r\nRSET\r\n")
            got = [r.reply_line() for _ in range(4)]
            self.assertEqual([g[:3] for g in got], ["550", "250", "550", "250"], got)
        FD.wait_log(r"NOQUEUE: reject: RCPT from unknown\[127.0.0.1\]: 550 5.1.1 "
                    r"<nobody@localhost>: Recipient address rejected")


class T01cTempfail(unittest.TestCase):
    def test_unreadable_include_routes_nothing(self):
        """A 4.x routing error (an :include: file that cannot be read) writes
        no routing set: the message waits unrouted, nothing is submitted."""
        qid = send(["broken@localhost"], port=NOVERIFY)
        FD.wait_log(r"%s: not routed: temporary routing failure for <broken@localhost>: "
                    r"4\.3\.0" % qid)
        self.assertEqual(QUEUE.routes(qid), ([], 0))
        self.assertEqual(SCHED.count(qid), 0)


class T01bDedup(unittest.TestCase):
    def test_two_recipients_one_delivery(self):
        qid = send(["team@localhost", "bob@localhost"])
        wait_until(lambda: SCHED.count(qid) == 1, 10, what="SchedSubmit")
        rs, _ = QUEUE.routes(qid)
        self.assertEqual(sum(1 for r in rs if r["user"] == "bob"), 1, rs)


class T02Idempotent(unittest.TestCase):
    def test_route_again_after_kill(self):
        """kill -9 of the router child while the scheduler holds its ack: the
        message is routed on disk; routing it again (a new child, as the
        reinjector would ask) writes no second set and submits it again."""
        SCHED.hold = True
        try:
            qid = send(["bob@localhost"])
            wait_until(lambda: SCHED.count(qid) == 1, 10, what="the first SchedSubmit")
            kids = router_children()
            self.assertTrue(kids, "no router child found")
            for pid in kids:
                os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not any(farmlib.alive(p) for p in kids), 5,
                       what="the router children to die")
        finally:
            SCHED.hold = False
        rs, markers = QUEUE.routes(qid)
        self.assertEqual((len(rs), markers), (1, 1))
        # as the reinjector will: a RouteRequest straight to the router socket
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(os.path.join(FD.run, "private", "router"))
        s.sendall(P.frame(7, P.ROUTE, P.pb_bytes(1, P.queue_ref(qid))))
        buf = b""
        while len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[:4], "big"):
            d = s.recv(65536)
            self.assertTrue(d, "router closed without a reply")
            buf += d
        s.close()
        f = P.fields(buf[4:])
        self.assertEqual(f[2][0], 7)
        reply = P.fields(f[P.ROUTE_REPLY][0])
        self.assertEqual(reply[1][0], 1)          # OK
        self.assertEqual(reply.get(3, [0])[0], 1)  # routed: 1
        self.assertEqual(SCHED.count(qid), 2)
        rs, markers = QUEUE.routes(qid)
        self.assertEqual((len(rs), markers), (1, 1))


class T02bPipelined(unittest.TestCase):
    def test_requests_pipelined_on_one_connection(self):
        """Several RouteRequests in one write (as the reinjector and a busy
        smtpserver child send them): every one answered, the child lives."""
        qids = [send(["alice@localhost"], port=NOVERIFY) for _ in range(5)]
        for qid in qids:
            wait_until(lambda: SCHED.count(qid) >= 1, 10, what="SchedSubmit")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(os.path.join(FD.run, "private", "router"))
        out = b""
        for i, qid in enumerate(qids):
            out += P.frame(100 + i, P.ROUTE, P.pb_bytes(1, P.queue_ref(qid)))
        s.sendall(out)
        buf, ids = b"", set()
        while len(ids) < len(qids):
            d = s.recv(65536)
            self.assertTrue(d, "router closed with %d replies" % len(ids))
            buf += d
            frames, buf = P.read_frames(buf)
            for f in frames:
                self.assertEqual(P.fields(f[P.ROUTE_REPLY][0])[1][0], 1)
                ids.add(f[2][0])
        s.close()
        self.assertEqual(ids, set(range(100, 105)))
        self.assertNotIn("panic", FD.log())


class T03Reload(unittest.TestCase):
    def routed_to(self, rcpt):
        qid = send([rcpt])
        wait_until(lambda: SCHED.count(qid) == 1, 10, what="SchedSubmit")
        return [r["address"] for r in QUEUE.routes(qid)[0]]

    def test_alias_file_change(self):
        path = os.path.join(TMP, "aliases")
        with open(path + ".new", "w") as f:
            f.write("postmaster: alice\nteam: bob\nloop1: loop2\nloop2: loop1\n")
        os.rename(path + ".new", path)
        # the router looks at its tables at most once a second: poll
        wait_until(lambda: self.routed_to("team@localhost") == ["bob@localhost"], 10,
                   what="the new aliases in use")
        # a broken file keeps the old table
        with open(path + ".new", "w") as f:
            f.write("team: alice\nteam: bob\n")
        os.rename(path + ".new", path)
        before = FD.log_count("not reloaded")
        wait_until(lambda: self.routed_to("team@localhost") == ["bob@localhost"]
                   and FD.log_count("not reloaded") > before, 10,
                   what="the broken aliases refused")
        self.assertEqual(self.routed_to("team@localhost"), ["bob@localhost"])
        FD.wait_log(r"not reloaded, the old one stays in use: .*duplicate key")


LAST_LOG = ""  # farmd's log, kept by tearDownModule for failures


def main():
    farmlib.run_tests("router", lambda test: LAST_LOG)


if __name__ == "__main__":
    main()
