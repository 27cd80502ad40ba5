#!/usr/bin/env python3
"""Integration tests of the scheduler daemon (issue #6).

farmd runs smtpserver, router and scheduler; a stand-in transport farm for
the smtp channel (a Python unix socket server at run/private/smtp) answers
each DeliveryRequest per recipient by its local part: ok* delivered,
temp* deferred, perm* failed, garbage* a frame that is no DeliveryReply,
silent* nothing (the scheduler's transport_timeout).  A second stand-in
at run/private/bounce takes the notices (every recipient OK).  Queue
control requests go to run/private/qctl and run/public/showq.  The tests
read the queue files' control records.  Requeue (T05-T07): routed again,
waiting for a running delivery, hold released, ALL, unknown IDs, a
requeue record without new routes at start (a crash in between), and an
alias change taking effect after a reload.  Python 3 standard library
only; prints "N passed, N failed".
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_SRCDIR = os.path.abspath(os.environ.get("top_srcdir") or os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(TOP_SRCDIR, "tests", "smtpserver"))
import smtplib_helpers as H  # noqa: E402
from smtplib_helpers import Raw, Queue, farmlib, qid_of, wait_until  # noqa: E402
import zfproto as P  # noqa: E402

SCHEDULER = H.SCHEDULER

FD = PORT = QUEUE = TRANSPORT = NOTICES = None
LAST_LOG = ""


class FakeTransport(P.FrameServer):
    """A transport farm stand-in: records DeliveryRequests as (qid, channel,
    nexthop, [(index, address)]) and answers per recipient by local part:
    ok* delivered, perm* failed, anything else deferred; hold: no answer."""

    def __init__(self, path, all_ok=False):
        self.requests = []
        self.raw = []  # the DeliveryRequests' fields, in the same order
        self.hold = False
        self.gate = None  # a threading.Event: answers wait for it (bounded)
        self.all_ok = all_ok
        super().__init__(path, self.answer)

    def answer(self, f):
        if P.DELIVERY not in f:
            return None
        rq = P.fields(f[P.DELIVERY][0])
        qid = P.fields(rq[1][0])[1][0].decode()
        rcpts = [(P.fields(r).get(1, [0])[0], P.fields(r)[2][0].decode())
                 for r in rq.get(5, [])]
        with self.lock:
            self.requests.append((qid, rq[2][0].decode(), rq.get(3, [b""])[0].decode(), rcpts))
            self.raw.append(rq)
            if self.hold:
                return None
            gate = self.gate
        if gate is not None:
            gate.wait(30)
        if any(a.startswith("garbage") for _, a in rcpts):
            return P.frame(f[2][0], P.PING, P.pb_bytes(1, "not a DeliveryReply"))
        if any(a.startswith("silent") for _, a in rcpts):
            return None
        results = b""
        for index, addr in rcpts:
            local = addr.split("@")[0]
            if self.all_ok:
                st, code, enh, text = 1, 250, "2.0.0", "notice queued as FAKEQID"
            elif local.startswith("ok"):
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

    def raw_for_qid(self, qid):
        with self.lock:
            return [raw for r, raw in zip(self.requests, self.raw) if r[0] == qid]


def qctl(op, sock="private/qctl", ids=(), **kw):
    """One QueueControlRequest; the reply's fields (ok 1, error 2, entries 3,
    counters 4, destinations 5, affected 6, truncated 7)."""
    body = P.pb_varint(1, op)
    for q in ids:
        body += P.pb_bytes(2, q)
    for name, field in (("channel", 3), ("destination", 4), ("status", 5), ("after", 7)):
        if name in kw:
            body += P.pb_bytes(field, kw[name])
    if "limit" in kw:
        body += P.pb_varint(6, kw["limit"])
    with socket.socket(socket.AF_UNIX) as c:
        c.settimeout(10)
        c.connect(os.path.join(FD.run, sock))
        c.sendall(P.frame(7, P.QUEUE_CONTROL, body))
        buf = b""
        while True:
            d = c.recv(65536)
            if not d:
                return None  # closed without a reply
            frames, buf = P.read_frames(buf + d)
            if frames:
                f = frames[0]
                assert f[2][0] == 7
                return P.fields(f[P.QUEUE_CONTROL_REPLY][0]) if P.QUEUE_CONTROL_REPLY in f \
                    else None


LIST, SUMMARY, FLUSH, HOLD, RELEASE, DELETE, BOUNCE, REQUEUE, COUNTERS, SHOW = range(1, 11)


def entries(reply):
    """[(qid, held, [(address, status, reason)])] of a LIST/SHOW reply."""
    out = []
    for e in reply.get(3, []):
        e = P.fields(e)
        rs = []
        for r in e.get(6, []):
            r = P.fields(r)
            rs.append((r[1][0].decode(), r[4][0].decode(), r.get(5, [b""])[0].decode()))
        out.append((e[1][0].decode(), bool(e.get(5, [0])[0]), rs))
    return out


def counters(reply):
    return {(P.fields(c)[1][0].decode(), P.fields(c).get(2, [b""])[0].decode()):
            P.fields(c).get(3, [0])[0] for c in reply.get(4, [])}


def packed(b):
    """The values of a packed repeated varint field."""
    out, i = [], 0
    while i < len(b):
        v, i = P.read_varint(b, i)
        out.append(v)
    return out


def ctl_kinds(qid):
    """qid's control records in order: ("route", index, address), ("routed",),
    ("result", index, status), ("requeue", [indexes]), ("held", flag) ..."""
    out = []
    for rec in QUEUE.ctl(qid):
        if 1 in rec:
            r = P.fields(rec[1][0])
            out.append(("route", r.get(1, [0])[0], r[5][0].decode()))
        elif 2 in rec:
            r = P.fields(rec[2][0])
            out.append(("result", r.get(1, [0])[0], r.get(2, [0])[0]))
        elif 3 in rec:
            out.append(("routed",))
        elif 4 in rec:
            out.append(("held", rec[4][0]))
        elif 7 in rec:
            r = P.fields(rec[7][0])
            out.append(("requeue", sum((packed(v) if isinstance(v, bytes) else [v]
                                        for v in r.get(1, [])), [])))
        else:
            out.append(("other", sorted(rec)))
    return out


def markers(qid):
    return sum(1 for k in ctl_kinds(qid) if k[0] == "routed")


def taken_in(qid, sets):
    """qid has `sets` routing sets and the scheduler holds it again (the
    router writes the set before the scheduler has the message)."""
    return markers(qid) == sets and bool(entries(qctl(SHOW, ids=[qid])))


def requested(qid):
    """[(index, address)] of every DeliveryRequest for qid, in order."""
    return [ir for r in TRANSPORT.for_qid(qid) for ir in r[3]]


def setUpModule():
    global FD, PORT, QUEUE, TRANSPORT, NOTICES
    if not (os.access(SCHEDULER, os.X_OK) and os.access(H.ROUTER, os.X_OK)):
        raise unittest.SkipTest("not built")
    FD = farmlib.FarmdInstance(tag="sched")
    PORT = H.free_port()
    g = dict(H.BASE_GLOBALS)
    g.update({"router_endpoint": "unix:private/router",
              "scheduler_endpoint": "unix:private/scheduler",
              "smtpd_verify_recipients": "no", "log_level": "info",
              "minimal_backoff_time": "300s", "transport_timeout": "3s",
              "transport_retry_time": "1s"})
    FD.write_config([
        H.smtp_farm("smtpserver", PORT),
        farmlib.farm_section("router", listen="unix:private/router", program=H.ROUTER,
                             process_limit=2, client_limit=20),
        farmlib.farm_section("scheduler", kind="single",
                             listen="unix:private/scheduler, qctl=unix:private/qctl, "
                                    "showq=unix:public/showq",
                             program=SCHEDULER, client_limit=100),
    ], g)
    os.makedirs(os.path.join(FD.run, "private"), mode=0o700, exist_ok=True)
    TRANSPORT = FakeTransport(os.path.join(FD.run, "private", "smtp"))
    NOTICES = FakeTransport(os.path.join(FD.run, "private", "bounce"), all_ok=True)
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
    for t in (TRANSPORT, NOTICES):
        if t is not None:
            t.close()


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
        wait_until(lambda: not QUEUE.has(qid), 15,
                   what="%s delivered and removed" % qid)
        reqs = TRANSPORT.for_qid(qid)
        self.assertEqual(len(reqs), 1)
        self.assertEqual(reqs[0][1:3], ("smtp", "remote.test"))
        FD.wait_log(r"%s: to=<ok1@remote.test>, relay=fake.transport\[127.0.0.1\], "
                    r"dsn=2.0.0, status=sent" % qid)
        FD.wait_log(r"%s: removed" % qid)

    def test_one_delivery_for_three_recipients(self):
        qid = send(["ok2@remote.test", "ok3@remote.test", "ok4@remote.test"])
        wait_until(lambda: not QUEUE.has(qid), 15, what="delivered")
        reqs = TRANSPORT.for_qid(qid)
        self.assertEqual(len(reqs), 1)
        self.assertEqual(sorted(a for _, a in reqs[0][3]),
                         ["ok2@remote.test", "ok3@remote.test", "ok4@remote.test"])

    def test_deferred_stays_with_its_result(self):
        qid = send(["temp1@remote.test", "ok5@remote.test"])
        wait_until(lambda: len(QUEUE.results(qid)) == 2, 15, what="two results recorded")
        self.assertEqual(sorted(st for _, st in QUEUE.results(qid)), [1, 2])
        self.assertTrue(QUEUE.has(qid))
        FD.wait_log(r"%s: to=<temp1@remote.test>, .*status=deferred" % qid)

    def test_failed_with_null_sender_is_removed(self):
        qid = send(["perm1@remote.test"], sender="")
        wait_until(lambda: not QUEUE.has(qid), 15, what="removed")
        FD.wait_log(r"%s: to=<perm1@remote.test>, .*dsn=5.1.1, status=bounced" % qid)
        FD.wait_log(r"%s: 1 recipient\(s\) of a message from the null sender failed; no "
                    r"notice \(double_bounce_recipient is not set\)" % qid)
        self.assertEqual(NOTICES.for_qid(qid), [])

    def test_failed_gets_one_notice(self):
        """Two failures and a delivery: one notice (channel bounce) about the
        two failures, with what RFC 3464 needs; then the message goes."""
        qid = send(["perm2@remote.test", "ok7@remote.test", "perm3@remote.test"])
        wait_until(lambda: not QUEUE.has(qid), 15, what="removed")
        reqs = NOTICES.raw_for_qid(qid)
        self.assertEqual(len(reqs), 1)
        rq = reqs[0]
        self.assertEqual(rq[2][0], b"bounce")
        self.assertEqual(rq[4][0], b"s@example.test")   # sender
        self.assertEqual(rq[9][0], b"s@example.test")   # notice_to
        self.assertGreater(rq[10][0], 0)                # retry_until
        rcpts = sorted((P.fields(r)[2][0], P.fields(r)[7][0], P.fields(r)[8][0],
                        P.fields(r)[9][0], P.fields(r)[10][0]) for r in rq[5])
        self.assertEqual(rcpts, [
            (b"perm2@remote.test", b"failed", b"5.1.1", 550, b"550 no such user"),
            (b"perm3@remote.test", b"failed", b"5.1.1", 550, b"550 no such user")])
        FD.wait_log(r"%s: sender non-delivery notification: notice queued as FAKEQID" % qid)

    def test_channel_without_transport_defers(self):
        qid = send(["root@localhost"])  # channel local: no transport farm here
        wait_until(lambda: len(QUEUE.results(qid)) == 1, 15, what="a deferral recorded")
        self.assertEqual(QUEUE.results(qid), [(0, 2)])


class T02BrokenTransport(unittest.TestCase):
    def test_garbage_reply_defers_and_rests_the_channel(self):
        qid = send(["garbage1@remote.test"])
        wait_until(lambda: QUEUE.results(qid), 15, what="a deferral recorded")
        self.assertEqual(QUEUE.results(qid), [(0, 2)])
        FD.wait_log(r"%s: channel smtp: delivery ended without a reply \(unexpected frame\); "
                    r"the channel rests for 1 s" % qid)
        # The channel works again after its rest.
        qid2 = send(["ok8@remote.test"])
        wait_until(lambda: not QUEUE.has(qid2), 15, what="delivered")

    def test_silent_transport_times_out(self):
        qid = send(["silent1@remote.test"])
        wait_until(lambda: QUEUE.results(qid), 15, what="a deferral after the timeout")
        self.assertEqual(QUEUE.results(qid), [(0, 2)])
        FD.wait_log(r"%s: channel smtp: delivery ended without a reply" % qid)


class T03Control(unittest.TestCase):
    def test_list_show_and_counters(self):
        qid = send(["temp5@remote.test", "ok10@remote.test"])
        wait_until(lambda: len(QUEUE.results(qid)) == 2, 15, what="results")
        e = entries(qctl(LIST, sock="public/showq"))
        mine = [x for x in e if x[0] == qid]
        self.assertEqual(len(mine), 1)
        self.assertEqual(sorted(mine[0][2]), [
            ("ok10@remote.test", "delivered", "250 ok"),
            ("temp5@remote.test", "deferred", "451 try later")])
        ids = [x[0] for x in e]
        self.assertEqual(ids, sorted(ids))
        # Filters and paging.
        self.assertIn(qid, [x[0] for x in entries(qctl(LIST, status="deferred"))])
        self.assertNotIn(qid, [x[0] for x in entries(qctl(LIST, status="hold"))])
        self.assertNotIn(qid, [x[0] for x in entries(qctl(LIST, after=qid))])
        page = qctl(LIST, limit=1)
        self.assertEqual(len(page.get(3, [])), 1)
        self.assertEqual(page.get(7, [0])[0], 1 if len(e) > 1 else 0)
        show = qctl(SHOW, ids=[qid])
        self.assertEqual(entries(show)[0][0], qid)
        gone = qctl(SHOW, ids=["0000000000000000"])
        self.assertEqual(gone.get(1, [0])[0], 0)
        self.assertIn(b"no such message", gone[2][0])
        c = counters(qctl(COUNTERS, sock="public/showq"))
        self.assertGreaterEqual(c[("delivered", "")], 1)
        self.assertGreaterEqual(c[("deferred", "smtp")], 1)
        dests = [P.fields(d) for d in qctl(SUMMARY).get(5, [])]
        self.assertIn((b"smtp", b"remote.test"), [(d.get(1, [b""])[0], d.get(2, [b""])[0]) for d in dests])

    def test_hold_release_flush_delete(self):
        qid = send(["temp6@remote.test"])
        wait_until(lambda: QUEUE.results(qid), 15, what="deferred")
        refused = qctl(HOLD, sock="public/showq", ids=[qid])
        self.assertEqual(refused.get(1, [0])[0], 0)
        self.assertIn(b"not permitted", refused[2][0])
        r = qctl(HOLD, ids=[qid])
        self.assertEqual((r.get(1, [0])[0], r.get(6, [0])[0]), (1, 1))
        self.assertIn((4, [1]), [(k, v) for c in QUEUE.ctl(qid) for k, v in c.items()])
        self.assertTrue(entries(qctl(SHOW, ids=[qid]))[0][1])
        # A flush does not send a held message.
        n = len(TRANSPORT.for_qid(qid))
        qctl(FLUSH, ids=[qid])
        r = qctl(RELEASE, ids=[qid])
        self.assertEqual(r.get(6, [0])[0], 1)
        self.assertFalse(entries(qctl(SHOW, ids=[qid]))[0][1])
        self.assertEqual(len(TRANSPORT.for_qid(qid)), n)
        r = qctl(FLUSH, ids=[qid])
        self.assertEqual(r.get(6, [0])[0], 1)
        wait_until(lambda: len(TRANSPORT.for_qid(qid)) == n + 1, 15, what="flushed delivery")
        r = qctl(DELETE, ids=[qid, "0000000000000000"])
        self.assertEqual(r.get(1, [0])[0], 0)  # one unknown
        self.assertEqual(r.get(6, [0])[0], 1)
        self.assertIn(b"0000000000000000: no such message", r[2][0])
        wait_until(lambda: not QUEUE.has(qid), 15, what="deleted")
        FD.wait_log(r"%s: removed \(deleted by the queue administrator\)" % qid)
        self.assertEqual(NOTICES.for_qid(qid), [])

    def test_bounce_now(self):
        qid = send(["temp7@remote.test"])
        wait_until(lambda: QUEUE.results(qid), 15, what="deferred")
        r = qctl(BOUNCE, ids=[qid])
        self.assertEqual((r.get(1, [0])[0], r.get(6, [0])[0]), (1, 1))
        wait_until(lambda: not QUEUE.has(qid), 15, what="returned")
        rq = NOTICES.raw_for_qid(qid)[0]
        rc = P.fields(rq[5][0])
        self.assertEqual((rc[7][0], rc[8][0], rc[10][0]),
                         (b"failed", b"5.0.0", b"message returned by the queue administrator"))

    def test_tools_against_the_scheduler(self):
        """mailq and zfqueue (tools/) on the real sockets: a deferred message
        is listed with its reason, held (the mark "!"), shown, deleted."""
        tools = os.path.join(farmlib.TOP_BUILDDIR, "tools")

        def run(prog, *args):
            return subprocess.run([os.path.join(tools, prog), "-c", FD.conf] + list(args),
                                  capture_output=True, text=True, timeout=30)
        qid = send(["temp8@remote.test"])
        wait_until(lambda: QUEUE.results(qid), 15, what="deferred")
        out = run("mailq")
        self.assertEqual(out.returncode, 0, out.stderr)
        block = out.stdout[out.stdout.index(qid):]
        self.assertIn("s@example.test", block.splitlines()[0])
        self.assertIn("(451 try later)", block)
        self.assertIn("temp8@remote.test", block)
        self.assertEqual(run("zfqueue", "hold", qid).returncode, 0)
        self.assertIn(qid + "!", run("mailq").stdout)
        js = json.loads(run("zfqueue", "list", "--json").stdout)
        mine = [e for e in js["entries"] if e["queue_id"] == qid]
        self.assertTrue(mine and mine[0]["held"])
        show = run("zfqueue", "show", qid)
        self.assertEqual(show.returncode, 0, show.stderr)
        self.assertIn("Subject: sched", show.stdout)
        self.assertEqual(run("zfqueue", "delete", qid).returncode, 0)
        wait_until(lambda: not QUEUE.has(qid), 15, what="deleted")
        gone = run("zfqueue", "show", qid)
        self.assertEqual(gone.returncode, 1)
        self.assertIn("no such message", gone.stderr)

    def test_submit_socket_takes_no_control(self):
        self.assertIsNone(qctl(LIST, sock="private/scheduler"))


class T04Crash(unittest.TestCase):
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
        wait_until(lambda: not QUEUE.has(qid), 15,
                   what="%s delivered by the new scheduler and removed" % qid)
        self.assertEqual(len(TRANSPORT.for_qid(qid)), 2)


class T05Requeue(unittest.TestCase):
    def test_pending_recipient_routed_again(self):
        """A delivered and a deferred recipient: the requeue supersedes the
        deferred route only (RequeueRecord after both results), the router
        routes that recipient again as route 2, the scheduler delivers it
        from there; the delivered one is not sent again, mailq shows two."""
        qid = send(["ok20@remote.test", "temp20@remote.test"])
        wait_until(lambda: len(QUEUE.results(qid)) == 2, 15, what="two results")
        r = qctl(REQUEUE, ids=[qid])
        self.assertEqual((r.get(1, [0])[0], r.get(6, [0])[0]), (1, 1), r)
        wait_until(lambda: (2, "temp20@remote.test") in requested(qid), 15,
                   what="temp20 delivered again as route 2")
        FD.wait_log(r"%s: requeued by the queue administrator: 1 recipient\(s\) to route "
                    r"again" % qid)
        FD.wait_log(r"%s: requeued: routing 1 of 2 recipient\(s\) again" % qid)
        self.assertEqual([ir for ir in requested(qid) if ir[1] == "ok20@remote.test"],
                         [(0, "ok20@remote.test")])
        wait_until(lambda: len(QUEUE.results(qid)) == 3, 15, what="route 2's result")
        kinds = ctl_kinds(qid)
        self.assertEqual(kinds[:3], [("route", 0, "ok20@remote.test"),
                                     ("route", 1, "temp20@remote.test"), ("routed",)])
        self.assertEqual(sorted(kinds[3:5]), [("result", 0, 1), ("result", 1, 2)])
        self.assertEqual(kinds[5:], [("requeue", [1]), ("route", 0, "temp20@remote.test"),
                                     ("routed",), ("result", 2, 2)])
        e = entries(qctl(SHOW, ids=[qid]))
        self.assertEqual(sorted((a, st) for a, st, _ in e[0][2]),
                         [("ok20@remote.test", "delivered"), ("temp20@remote.test", "deferred")])
        # Again: only the new route is superseded.
        r = qctl(REQUEUE, ids=[qid])
        self.assertEqual(r.get(6, [0])[0], 1)
        wait_until(lambda: (3, "temp20@remote.test") in requested(qid), 15,
                   what="temp20 delivered again as route 3")
        self.assertIn(("requeue", [2]), ctl_kinds(qid))
        qctl(DELETE, ids=[qid])

    def test_waits_for_the_running_delivery(self):
        """Requeued while its delivery runs: the answer comes at once, the
        requeue when the delivery has ended and its result is recorded."""
        TRANSPORT.gate = threading.Event()
        try:
            qid = send(["temp21@remote.test"])
            wait_until(lambda: TRANSPORT.for_qid(qid), 15, what="the delivery to start")
            r = qctl(REQUEUE, ids=[qid])
            self.assertEqual((r.get(1, [0])[0], r.get(6, [0])[0]), (1, 1), r)
        finally:
            TRANSPORT.gate.set()
            TRANSPORT.gate = None
        wait_until(lambda: (1, "temp21@remote.test") in requested(qid), 15,
                   what="the new route delivered")
        self.assertEqual(ctl_kinds(qid)[:6], [
            ("route", 0, "temp21@remote.test"), ("routed",), ("result", 0, 2),
            ("requeue", [0]), ("route", 0, "temp21@remote.test"), ("routed",)])
        # The delivery ended (its reply, or transport_timeout) before the requeue.
        log = FD.log()
        ended = re.search(r"%s: (to=<temp21@remote.test>|channel smtp: delivery ended)" % qid,
                          log)
        self.assertIsNotNone(ended)
        self.assertLess(ended.start(), log.index("%s: requeued by the queue administrator" % qid))
        qctl(DELETE, ids=[qid])

    def test_releases_a_held_message(self):
        """postsuper -r takes mail out of hold; so does requeue."""
        qid = send(["temp22@remote.test"])
        wait_until(lambda: QUEUE.results(qid), 15, what="deferred")
        self.assertEqual(qctl(HOLD, ids=[qid]).get(6, [0])[0], 1)
        self.assertTrue(entries(qctl(SHOW, ids=[qid]))[0][1])
        r = qctl(REQUEUE, ids=[qid])
        self.assertEqual(r.get(6, [0])[0], 1)
        FD.wait_log(r"%s: requeued by the queue administrator: 1 recipient\(s\) to route "
                    r"again, released from hold" % qid)
        wait_until(lambda: (1, "temp22@remote.test") in requested(qid), 15,
                   what="the released message delivered")
        self.assertFalse(entries(qctl(SHOW, ids=[qid]))[0][1])
        qctl(DELETE, ids=[qid])

    def test_all_unknown_and_the_tool(self):
        """ALL requeues every message the scheduler holds; an unknown ID is
        named; zfqueue prints the count and exits 1 for an unknown ID."""
        tools = os.path.join(farmlib.TOP_BUILDDIR, "tools")

        def zfq(*args):
            return subprocess.run([os.path.join(tools, "zfqueue"), "-c", FD.conf] + list(args),
                                  capture_output=True, text=True, timeout=30)
        qids = [send(["temp23@remote.test"]), send(["temp24@remote.test", "ok24@remote.test"])]
        for q in qids:
            wait_until(lambda: QUEUE.results(q), 15, what="deferred")
        r = qctl(REQUEUE, ids=[qids[0], "0000000000000000"])
        self.assertEqual((r.get(1, [0])[0], r.get(6, [0])[0]), (0, 1))
        self.assertIn(b"0000000000000000: no such message in the queue", r[2][0])
        # back in the scheduler, or ALL could count it and LIST not
        wait_until(lambda: taken_in(qids[0], 2), 15, what="routed again and taken in")
        listed = [e[0] for e in entries(qctl(LIST))]
        self.assertIn(qids[1], listed)
        before = {q: FD.log_count(r"%s: requeued by the queue administrator" % q)
                  for q in listed}
        out = zfq("requeue", "ALL")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout, "requeued: %d\n" % len(listed))
        for q in listed:
            wait_until(lambda: FD.log_count(r"%s: requeued by the queue administrator" % q)
                       > before[q], 15, what="%s requeued" % q)
        wait_until(lambda: taken_in(qids[0], 3) and taken_in(qids[1], 2), 15,
                   what="routed again and taken in")
        out = zfq("requeue", "0000000000000000")
        self.assertEqual(out.returncode, 1)
        self.assertIn("no such message", out.stderr)
        self.assertEqual(out.stdout, "requeued: 0\n")
        out = zfq("requeue", qids[1])
        self.assertEqual((out.returncode, out.stdout), (0, "requeued: 1\n"), out.stderr)
        wait_until(lambda: markers(qids[1]) == 3, 15, what="routed again")
        self.assertEqual([ir for ir in requested(qids[1]) if ir[1] == "ok24@remote.test"],
                         [(1, "ok24@remote.test")])
        qctl(DELETE, ids=qids)


class T06RequeueCrash(unittest.TestCase):
    def test_requeue_record_without_new_routes(self):
        """A crash after the RequeueRecord and before the router recorded new
        routes leaves the message unrouted: the scheduler's start sends it
        to the router (the reinjector does too; not running here)."""
        qid = send(["temp25@remote.test"])
        wait_until(lambda: QUEUE.results(qid), 15, what="deferred")
        FD.stop()
        rq = P.pb_bytes(7, P.pb_bytes(1, P.varint(0)))
        QUEUE.ctl_append(qid, rq)
        n = len(requested(qid))
        FD.start()
        wait_until(lambda: farmlib.can_connect(PORT), 10, what="smtpserver")
        FD.wait_log(r"%s: requeued, new routes not recorded yet: to the router again" % qid,
                    timeout=15)
        wait_until(lambda: (1, "temp25@remote.test") in requested(qid)[n:], 15,
                   what="the new route delivered")
        self.assertEqual(ctl_kinds(qid)[2:6], [
            ("result", 0, 2), ("requeue", [0]), ("route", 0, "temp25@remote.test"),
            ("routed",)])
        qctl(DELETE, ids=[qid])


class T07RequeueAfterReload(unittest.TestCase):
    def test_changed_alias_takes_effect(self):
        """virtual_alias_maps changes (farmd reload): temp26 now expands to
        ok26 (delivered before: not again) and ok27, temp27 to ok28 at
        another destination; the requeue delivers ok27 and ok28 once and
        the message is done."""
        qid = send(["ok26@remote.test", "temp26@remote.test", "temp27@remote.test"])
        wait_until(lambda: len(QUEUE.results(qid)) == 3, 15, what="three results")
        vfile = os.path.join(FD.tmp, "virtual")
        with open(vfile, "w") as f:
            f.write("temp26@remote.test ok26@remote.test, ok27@remote.test\n"
                    "temp27@remote.test ok28@other.test\n")
        text = open(FD.conf).read()
        before = FD.log_count(r"took in \d+ queued message")
        FD.write_config(None, raw=text.replace("\n[farm ", "\nvirtual_alias_maps = hash:%s\n"
                                               "\n[farm " % vfile, 1))
        r = FD.ctl("reload")
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_until(lambda: FD.log_count(r"took in \d+ queued message") > before, 20,
                   what="the new scheduler taking the queue in")
        r = qctl(REQUEUE, ids=[qid])
        self.assertEqual((r.get(1, [0])[0], r.get(6, [0])[0]), (1, 1), r)
        wait_until(lambda: not QUEUE.has(qid), 15,
                   what="%s delivered and removed" % qid)
        got = sorted(a for _, a in requested(qid))
        self.assertEqual(got, ["ok26@remote.test", "ok27@remote.test", "ok28@other.test",
                               "temp26@remote.test", "temp27@remote.test"])
        self.assertIn(("smtp", "other.test"),
                      [(r[1], r[2]) for r in TRANSPORT.for_qid(qid)])
        FD.wait_log(r"%s: to=<ok26@remote.test>, orig_to=<temp26@remote.test>: final already, "
                    r"not routed again" % qid)


if __name__ == "__main__":
    farmlib.run_tests("scheduler", lambda test: LAST_LOG)
