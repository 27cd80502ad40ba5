#!/usr/bin/env python3
"""Integration tests of the scheduler daemon (issue #6).

farmd runs smtpserver, router and scheduler; a stand-in transport farm for
the smtp channel (a Python unix socket server at run/private/smtp) answers
each DeliveryRequest per recipient by its local part: ok* delivered,
temp* deferred, perm* failed.  The tests read the queue files' control
records.  Python 3 standard library only; prints "N passed, N failed".
"""

import os
import signal
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_SRCDIR = os.path.abspath(os.environ.get("top_srcdir") or os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(TOP_SRCDIR, "tests", "smtpserver"))
import smtplib_helpers as H  # noqa: E402
from smtplib_helpers import Raw, Queue, farmlib, qid_of, wait_until  # noqa: E402
import zfproto as P  # noqa: E402

SCHEDULER = H.SCHEDULER

FD = PORT = QUEUE = TRANSPORT = None
LAST_LOG = ""


class FakeTransport(P.FrameServer):
    """A transport farm stand-in: records DeliveryRequests as (qid, channel,
    nexthop, [(index, address)]) and answers per recipient by local part:
    ok* delivered, perm* failed, anything else deferred; hold: no answer."""

    def __init__(self, path):
        self.requests = []
        self.hold = False
        super().__init__(path, self.answer)

    def answer(self, f):
        if P.DELIVERY not in f:
            return None
        rq = P.fields(f[P.DELIVERY][0])
        qid = P.fields(rq[1][0])[1][0].decode()
        rcpts = [(P.fields(r).get(1, [0])[0], P.fields(r)[2][0].decode())
                 for r in rq.get(5, [])]
        with self.lock:
            self.requests.append((qid, rq[2][0].decode(), rq[3][0].decode(), rcpts))
            if self.hold:
                return None
        results = b""
        for index, addr in rcpts:
            local = addr.split("@")[0]
            if local.startswith("ok"):
                st, code, enh, text = 1, 250, "2.0.0", "250 ok"
            elif local.startswith("perm"):
                st, code, enh, text = 3, 550, "5.1.1", "550 no such user"
            else:
                st, code, enh, text = 2, 451, "4.3.0", "451 try later"
            results += P.pb_bytes(1, P.pb_varint(1, index) + P.pb_varint(2, st)
                                  + P.pb_varint(3, code) + P.pb_bytes(4, enh)
                                  + P.pb_bytes(5, text))
        reply = results + P.pb_bytes(2, "fake.transport[127.0.0.1]")
        return P.frame(f[2][0], P.DELIVERY_REPLY, reply)

    def for_qid(self, qid):
        with self.lock:
            return [r for r in self.requests if r[0] == qid]


def setUpModule():
    global FD, PORT, QUEUE, TRANSPORT
    if not (os.access(SCHEDULER, os.X_OK) and os.access(H.ROUTER, os.X_OK)):
        raise unittest.SkipTest("not built")
    FD = farmlib.FarmdInstance(tag="sched")
    PORT = H.free_port()
    g = dict(H.BASE_GLOBALS)
    g.update({"router_endpoint": "unix:private/router",
              "scheduler_endpoint": "unix:private/scheduler",
              "smtpd_verify_recipients": "no", "log_level": "info",
              "minimal_backoff_time": "300s"})
    FD.write_config([
        H.smtp_farm("smtpserver", PORT),
        farmlib.farm_section("router", listen="unix:private/router", program=H.ROUTER,
                             process_limit=2, client_limit=20),
        farmlib.farm_section("scheduler", kind="single", listen="unix:private/scheduler",
                             program=SCHEDULER, client_limit=100),
    ], g)
    os.makedirs(os.path.join(FD.run, "private"), mode=0o700, exist_ok=True)
    TRANSPORT = FakeTransport(os.path.join(FD.run, "private", "smtp"))
    try:
        FD.start()
        wait_until(lambda: farmlib.can_connect(PORT), 10, what="smtpserver")
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
    if TRANSPORT is not None:
        TRANSPORT.close()


def send(rcpts, sender="s@example.test"):
    with Raw(PORT) as r:
        r.send("EHLO x\r\n")
        r.reply()
        assert r.cmd("MAIL FROM:<%s>" % sender).startswith("250")
        for a in rcpts:
            assert r.cmd("RCPT TO:<%s>" % a).startswith("250")
        assert r.cmd("DATA").startswith("354")
        r.send("Subject: sched\r\n\r\nbody\r\n.\r\n")
        code, lines = r.reply()
        assert code == 250, lines
        return qid_of(lines[-1])


class T01Delivery(unittest.TestCase):
    def test_delivered_and_removed(self):
        qid = send(["ok1@remote.test"])
        wait_until(lambda: not os.path.exists(QUEUE.msg_path(qid)), 15,
                   what="%s delivered and removed" % qid)
        reqs = TRANSPORT.for_qid(qid)
        self.assertEqual(len(reqs), 1)
        self.assertEqual(reqs[0][1:3], ("smtp", "remote.test"))
        FD.wait_log(r"%s: to=<ok1@remote.test>, relay=fake.transport\[127.0.0.1\], "
                    r"dsn=2.0.0, status=sent" % qid)
        FD.wait_log(r"%s: removed" % qid)

    def test_one_delivery_for_three_recipients(self):
        qid = send(["ok2@remote.test", "ok3@remote.test", "ok4@remote.test"])
        wait_until(lambda: not os.path.exists(QUEUE.msg_path(qid)), 15, what="delivered")
        reqs = TRANSPORT.for_qid(qid)
        self.assertEqual(len(reqs), 1)
        self.assertEqual(sorted(a for _, a in reqs[0][3]),
                         ["ok2@remote.test", "ok3@remote.test", "ok4@remote.test"])

    def test_deferred_stays_with_its_result(self):
        qid = send(["temp1@remote.test", "ok5@remote.test"])
        wait_until(lambda: len(QUEUE.results(qid)) == 2, 15, what="two results recorded")
        self.assertEqual(sorted(st for _, st in QUEUE.results(qid)), [1, 2])
        self.assertTrue(os.path.exists(QUEUE.msg_path(qid)))
        FD.wait_log(r"%s: to=<temp1@remote.test>, .*status=deferred" % qid)

    def test_failed_with_null_sender_is_removed(self):
        qid = send(["perm1@remote.test"], sender="")
        wait_until(lambda: not os.path.exists(QUEUE.msg_path(qid)), 15, what="removed")
        FD.wait_log(r"%s: to=<perm1@remote.test>, .*dsn=5.1.1, status=bounced" % qid)

    def test_failed_waits_for_the_bounce(self):
        qid = send(["perm2@remote.test"])
        FD.wait_log(r"%s: 1 recipient\(s\) failed; the bounce to <s@example.test> waits" % qid)
        self.assertEqual(QUEUE.results(qid), [(0, 3)])
        self.assertTrue(os.path.exists(QUEUE.msg_path(qid)))

    def test_channel_without_transport_defers(self):
        qid = send(["root@localhost"])  # channel local: no transport farm here
        wait_until(lambda: len(QUEUE.results(qid)) == 1, 15, what="a deferral recorded")
        self.assertEqual(QUEUE.results(qid), [(0, 2)])


class T02Crash(unittest.TestCase):
    def test_kill_9_during_a_delivery(self):
        """kill -9 of the scheduler while a delivery runs: farmd starts a new
        one, which takes the queue in again and makes the delivery again
        (at worst twice, never lost)."""
        TRANSPORT.hold = True
        try:
            qid = send(["ok9@remote.test"])
            wait_until(lambda: TRANSPORT.for_qid(qid), 15, what="the first DeliveryRequest")
            pids = []
            for pid in FD.children():
                try:
                    with open("/proc/%d/cmdline" % pid, "rb") as f:
                        if f.read().split(b"\0")[0] == SCHEDULER.encode():
                            pids.append(pid)
                except OSError:
                    pass
            self.assertEqual(len(pids), 1, "one scheduler process")
            before = FD.log_count(r"took in \d+ queued message")
            os.kill(pids[0], signal.SIGKILL)
        finally:
            TRANSPORT.hold = False
        wait_until(lambda: FD.log_count(r"took in \d+ queued message") > before, 15,
                   what="a new scheduler taking the queue in")
        wait_until(lambda: not os.path.exists(QUEUE.msg_path(qid)), 15,
                   what="%s delivered by the new scheduler and removed" % qid)
        self.assertEqual(len(TRANSPORT.for_qid(qid)), 2)


if __name__ == "__main__":
    farmlib.run_tests("scheduler", lambda test: LAST_LOG)
