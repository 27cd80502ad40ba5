#!/usr/bin/env python3
"""Integration tests of the bounce transport farm (issue 7).

farmd runs an smtpserver farm (originals go in over SMTP) and a bounce farm
(transport/bounce) at run/private/bounce.  A stand-in router (a Python unix
socket server at run/private/router) records the RouteRequests and answers
RouteReply OK, or holds its answers back.  The test plays the scheduler:
it sends DeliveryRequest frames of channel "bounce" to the bounce farm,
reads the DeliveryReply, and checks the notice it queued: envelope from
the queue file, content through Python's email package.  Python 3
standard library only; prints "N passed, N failed".
"""

import email
import email.policy
import os
import socket
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_SRCDIR = os.path.abspath(os.environ.get("top_srcdir") or os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(TOP_SRCDIR, "tests", "smtpserver"))
import smtplib_helpers as H  # noqa: E402
from smtplib_helpers import Raw, farmlib, qid_of, wait_until  # noqa: E402
import zfproto as P  # noqa: E402

BOUNCE = os.path.join(H.TOP_BUILDDIR, "transport", "bounce")
SIZE_LIMIT = 20000
HOST = "mx.example.test"

OK, TEMPFAIL, PERMFAIL = 1, 2, 3

FD = PORT = QUEUE = ROUTER = None
LAST_LOG = ""


class FakeRouter(P.FrameServer):
    """Records the queue ID of every RouteRequest; answers RouteReply OK
    unless hold is set."""

    def __init__(self, path):
        self.hold = False
        super().__init__(path, self.answer)

    def answer(self, f):
        if P.ROUTE not in f or self.hold:
            return None
        return P.frame(f[2][0], P.ROUTE_REPLY, P.pb_varint(1, OK) + P.pb_varint(3, 1))

    def routed(self):
        with self.lock:
            return [H.submitted_qid(f) for f in self.frames if P.ROUTE in f]


def setUpModule():
    global FD, PORT, QUEUE, ROUTER
    if not os.access(BOUNCE, os.X_OK) or H.binaries_missing():
        raise unittest.SkipTest("not built")
    FD = farmlib.FarmdInstance(tag="bounce")
    PORT = H.free_port()
    g = dict(H.BASE_GLOBALS)
    g.update({"router_endpoint": "unix:private/router", "smtpd_verify_recipients": "no",
              "myhostname": HOST, "bounce_size_limit": str(SIZE_LIMIT),
              "log_level": "info"})
    FD.write_config([
        H.smtp_farm("smtpserver", PORT),
        farmlib.farm_section("bounce", listen="unix:private/bounce", program=BOUNCE,
                             process_limit=1, client_limit=20),
    ], g)
    os.makedirs(os.path.join(FD.run, "private"), mode=0o700, exist_ok=True)
    ROUTER = FakeRouter(os.path.join(FD.run, "private", "router"))
    QUEUE = H.start_instance(FD, [PORT], ["bounce"])


def tearDownModule():
    global LAST_LOG
    if FD is not None:
        LAST_LOG = FD.log()
        FD.cleanup()
    if ROUTER is not None:
        ROUTER.close()


# ---- originals ----

BODY8 = "Gr\u00fc\u00dfe aus K\u00f6ln, na\u00efve caf\u00e9.\r\n"


def send(rcpts=("bob@remote.test", "carol@remote.test"), sender="s@example.test",
         mail_params="", body=None, subject="original"):
    """An original into the queue over SMTP; its queue ID."""
    if body is None:
        body = "First line.\r\n" + BODY8 + "..a dot-stuffed line\r\nLast line.\r\n"
    with Raw(PORT) as r:
        r.send("EHLO x\r\n")
        r.reply()
        got = r.cmd("MAIL FROM:<%s>%s" % (sender, mail_params))
        assert got.startswith("250"), got
        for a in rcpts:
            assert r.cmd("RCPT TO:<%s>" % a).startswith("250")
        assert r.cmd("DATA").startswith("354")
        r.send(("From: Sender <%s>\r\nTo: bob@remote.test\r\nSubject: %s\r\n"
                "Message-ID: <orig-%s@example.test>\r\n\r\n" % (sender or "nobody", subject,
                                                                  time.time())
                + body + ".\r\n").encode("utf-8"))
        code, lines = r.reply()
        assert code == 250, lines
        return qid_of(lines[-1])


_ORIGINALS = {}


def original(kind="plain"):
    """One shared original per kind (a message per test would be slow)."""
    if kind not in _ORIGINALS:
        if kind == "plain":
            _ORIGINALS[kind] = send(mail_params=" BODY=8BITMIME RET=FULL ENVID=env-42")
        elif kind == "null":
            _ORIGINALS[kind] = send(sender="")
        elif kind == "big":
            line = "x" * 70 + "\r\n"
            _ORIGINALS[kind] = send(body=line * (2 * SIZE_LIMIT // len(line)))
    return _ORIGINALS[kind]


# ---- the scheduler's side ----

def recipient(index, address, action="failed", status="5.1.1", code=0, text="",
              orcpt="", orig=None, last=0):
    m = (P.pb_varint(1, index) + P.pb_bytes(2, address) + P.pb_bytes(6, orig or address)
         + P.pb_bytes(7, action) + P.pb_bytes(8, status))
    if orcpt:
        m += P.pb_bytes(3, orcpt)
    if code:
        m += P.pb_varint(9, code)
    if text:
        m += P.pb_bytes(10, text)
    if last:
        m += P.pb_varint(11, last)
    return m


def request(qid, rcpts, notice_to="s@example.test", ret="", envid="", retry_until=0,
            sender="s@example.test"):
    m = (P.pb_bytes(1, P.queue_ref(qid)) + P.pb_bytes(2, "bounce") + P.pb_bytes(4, sender)
         + b"".join(P.pb_bytes(5, r) for r in rcpts))
    if envid:
        m += P.pb_bytes(6, envid)
    if ret:
        m += P.pb_bytes(7, ret)
    if notice_to:
        m += P.pb_bytes(9, notice_to)
    if retry_until:
        m += P.pb_varint(10, retry_until)
    return m


def Sched(timeout=10.0):
    """One connection to the bounce farm, as the scheduler keeps it."""
    return P.TransportClient(os.path.join(FD.run, "private", "bounce"), timeout)


def deliver(rq):
    """One request on a fresh connection: (request id echoed, sent id, [results], relay)."""
    with Sched() as s:
        rid = s.send(rq)
        f = s.read()
    assert f is not None, "the bounce farm closed the connection without a reply"
    assert P.DELIVERY_REPLY in f, "got frame fields %r" % sorted(f)
    rep = P.delivery_reply(f)
    return rep["rid"], rid, rep["results"], rep["relay"]


def envelope(qid):
    env, _ = QUEUE.read(qid)
    e = P.fields(env)
    s = lambda n: e.get(n, [b""])[0].decode()  # noqa: E731
    rcpts = [P.fields(r) for r in e.get(8, [])]
    return {"sender": s(7), "protocol": s(6), "notice": s(15), "body": s(12),
            "rcpts": [(r.get(1, [b""])[0].decode(), r.get(3, [0])[0]) for r in rcpts]}


def notice_of(results):
    """The notice's queue ID from an all-OK reply."""
    texts = set(r["text"] for r in results)
    assert len(texts) == 1, texts
    return qid_of(texts.pop())


def parse(qid):
    """(raw content, email message) of a queued notice; checks CR LF."""
    _, content = QUEUE.read(qid)
    assert b"\n" not in content.replace(b"\r\n", b""), "bare LF in the notice"
    assert b"\r" not in content.replace(b"\r\n", b""), "bare CR in the notice"
    for line in content.split(b"\r\n"):
        assert len(line) <= 998, "line of %d bytes" % len(line)
    return content, email.message_from_bytes(content, policy=email.policy.default)


def parts(msg):
    assert msg.get_content_type() == "multipart/report", msg.get_content_type()
    assert msg.get_param("report-type") == "delivery-status"
    p = list(msg.iter_parts())
    assert len(p) == 3, [x.get_content_type() for x in p]
    assert p[0].get_content_type() == "text/plain"
    assert p[1].get_content_type() == "message/delivery-status"
    return p


def status_blocks(part):
    """Per-message fields and per-recipient field blocks of the delivery-status part."""
    blocks = part.get_payload()
    return blocks[0], blocks[1:]


def bounce_pid():
    pids = []
    for pid in FD.children():
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                if f.read().split(b"\0")[0] == BOUNCE.encode():
                    pids.append(pid)
        except OSError:
            pass
    return pids


# ---- tests ----

class T01Failure(unittest.TestCase):
    def test_failure_notice_two_recipients(self):
        orig = original()
        now = int(time.time())
        rq = request(orig, [
            recipient(0, "bob@remote.test", code=550, status="5.1.1",
                      text="550 5.1.1 <bob@remote.test>: user unknown",
                      orcpt="rfc822;bob@remote.test", last=now),
            recipient(1, "carol@remote.test", status="5.4.4",
                      text="Host or domain name not found", orig="team@example.test"),
        ], envid="env-42")
        rid_back, rid, results, relay = deliver(rq)
        self.assertEqual(rid_back, rid)
        self.assertEqual(sorted(r["index"] for r in results), [0, 1])
        for r in results:
            self.assertEqual((r["status"], r["enhanced"]), (OK, "2.0.0"))
            self.assertRegex(r["text"], r"^notice queued as [0-9A-Z]{16}$")
        new = notice_of(results)
        self.assertTrue(QUEUE.has(new))

        env = envelope(new)
        self.assertEqual(env["sender"], "")
        self.assertEqual(env["rcpts"], [("s@example.test", 1)])  # NOTIFY never
        self.assertEqual(env["notice"], "bounce")
        self.assertEqual(env["body"], "8BITMIME")

        content, msg = parse(new)
        self.assertEqual(str(msg["Subject"]), "Undelivered Mail Returned to Sender")
        self.assertEqual(msg["From"].addresses[0].addr_spec, "MAILER-DAEMON@" + HOST)
        self.assertEqual(msg["To"].addresses[0].addr_spec, "s@example.test")
        self.assertEqual(str(msg["Auto-Submitted"]), "auto-replied")
        self.assertTrue(str(msg["Message-ID"]).endswith("@%s>" % HOST))
        self.assertIn(new, str(msg["Received"]))
        self.assertIsNotNone(msg["Date"].datetime)

        text, ds, returned = parts(msg)
        body = text.get_content()
        self.assertIn("<bob@remote.test>: 550 5.1.1 <bob@remote.test>: user unknown", body)
        self.assertIn("<carol@remote.test> (expanded from <team@example.test>): "
                      "Host or domain name not found", body)

        per_msg, blocks = status_blocks(ds)
        self.assertEqual(per_msg["Reporting-MTA"], "dns; " + HOST)
        self.assertEqual(per_msg["X-Zfarm-Queue-ID"], orig)
        self.assertEqual(per_msg["Original-Envelope-Id"], "env-42")
        self.assertIsNotNone(per_msg["Arrival-Date"])
        self.assertEqual(len(blocks), 2)
        b0, b1 = blocks
        self.assertEqual(b0["Final-Recipient"], "rfc822; bob@remote.test")
        self.assertEqual(b0["Original-Recipient"], "rfc822;bob@remote.test")
        self.assertEqual(b0["Action"], "failed")
        self.assertEqual(b0["Status"], "5.1.1")
        self.assertEqual(b0["Diagnostic-Code"],
                         "smtp; 550 5.1.1 <bob@remote.test>: user unknown")
        self.assertIsNotNone(b0["Last-Attempt-Date"])
        self.assertEqual(b1["Final-Recipient"], "rfc822; carol@remote.test")
        self.assertIsNone(b1["Original-Recipient"])
        self.assertEqual(b1["Status"], "5.4.4")
        self.assertEqual(b1["Diagnostic-Code"], "x-zfarm; Host or domain name not found")
        self.assertIsNone(b1["Will-Retry-Until"])

        # the whole original, byte for byte, as message/rfc822
        self.assertEqual(returned.get_content_type(), "message/rfc822")
        self.assertEqual(returned["Content-Transfer-Encoding"], "8bit")
        inner = returned.get_payload(0)
        self.assertEqual(str(inner["Subject"]), "original")
        _, orig_content = QUEUE.read(orig)
        self.assertIn(b"\r\n\r\n" + orig_content + b"\r\n--", content)
        self.assertIn(BODY8.encode("utf-8"), orig_content)
        self.assertIn(b"\r\n.a dot-stuffed line\r\n", orig_content)

        wait_until(lambda: new in ROUTER.routed(), 10, what="the RouteRequest for " + new)
        FD.wait_log(r"%s: sender non-delivery notice %s, to=<s@example\.test>, failed=2, "
                    r"delayed=0, delivered=0" % (orig, new))

    def test_ret_hdrs(self):
        orig = original()
        _, _, results, _ = deliver(request(orig, [recipient(0, "bob@remote.test")],
                                           ret="HDRS"))
        content, msg = parse(notice_of(results))
        returned = parts(msg)[2]
        self.assertEqual(returned.get_content_type(), "text/rfc822-headers")
        got = returned.get_payload(decode=True)
        self.assertIn(b"Subject: original\r\n", got)
        self.assertNotIn(b"First line", content)
        self.assertNotIn(BODY8.encode("utf-8"), content)

    def test_over_the_size_limit(self):
        orig = original("big")
        _, content = QUEUE.read(orig)
        self.assertGreater(len(content), SIZE_LIMIT)
        _, _, results, _ = deliver(request(orig, [recipient(0, "bob@remote.test")]))
        content, msg = parse(notice_of(results))
        returned = parts(msg)[2]
        self.assertEqual(returned.get_content_type(), "text/rfc822-headers")
        self.assertIn(b"Subject: original\r\n", returned.get_payload(decode=True))
        self.assertNotIn(b"x" * 70, content)
        self.assertLess(len(content), 10000)

    def test_delay_notice(self):
        orig = original()
        until = int(time.time()) + 4 * 86400
        _, _, results, _ = deliver(request(
            orig, [recipient(0, "dave@slow.test", action="delayed", status="4.4.1",
                             text="connection timed out")], retry_until=until))
        _, msg = parse(notice_of(results))
        self.assertEqual(str(msg["Subject"]), "Delayed Mail (still being retried)")
        text, ds, _ = parts(msg)
        self.assertIn("YOU DO NOT NEED TO RESEND", text.get_content())
        _, blocks = status_blocks(ds)
        self.assertEqual(blocks[0]["Action"], "delayed")
        self.assertIsNotNone(blocks[0]["Will-Retry-Until"])

    def test_double_bounce(self):
        orig = original("null")
        self.assertEqual(envelope(orig)["sender"], "")
        _, _, results, _ = deliver(request(orig, [recipient(0, "bob@remote.test")],
                                           notice_to="postmaster@example.test", sender=""))
        new = notice_of(results)
        env = envelope(new)
        self.assertEqual(env["notice"], "double-bounce")
        self.assertEqual(env["rcpts"], [("postmaster@example.test", 1)])
        _, msg = parse(new)
        self.assertEqual(msg["To"].addresses[0].addr_spec, "postmaster@example.test")

    def test_crlf_in_text_does_not_break_the_notice(self):
        orig = original()
        evil = "bad\r\nInjected: yes\r\n\r\n--fake-boundary\r\nContent-Type: text/html\r\n\x00tail"
        _, _, results, _ = deliver(request(
            orig, [recipient(0, "bob@remote.test", code=550, text=evil),
                   recipient(1, "carol@remote.test", text="x" * 3000)]))
        content, msg = parse(notice_of(results))
        self.assertIsNone(msg["Injected"])
        self.assertIsNone(msg["Bcc"])
        self.assertNotIn(b"\r\nInjected:", content)
        self.assertNotIn(b"\r\n--fake-boundary", content)
        _, ds, returned = parts(msg)
        _, blocks = status_blocks(ds)
        self.assertEqual(len(blocks), 2)
        self.assertTrue(blocks[0]["Diagnostic-Code"].startswith("smtp; 550 bad??Injected: yes"),
                        blocks[0]["Diagnostic-Code"])
        self.assertEqual(returned.get_content_type(), "message/rfc822")


class T02Refusals(unittest.TestCase):
    def test_empty_notice_to(self):
        _, _, results, _ = deliver(request(original(), [recipient(0, "bob@remote.test"),
                                                         recipient(3, "x@remote.test")],
                                           notice_to=""))
        self.assertEqual(sorted((r["index"], r["status"], r["enhanced"]) for r in results),
                         [(0, PERMFAIL, "5.3.0"), (3, PERMFAIL, "5.3.0")])

    def test_notice_to_with_crlf(self):
        _, _, results, _ = deliver(request(original(), [recipient(0, "bob@remote.test")],
                                           notice_to="s@example.test\r\nBcc: v@example.net"))
        self.assertEqual([(r["status"], r["text"]) for r in results],
                         [(PERMFAIL, "bad notice recipient address")])

    def test_unknown_queue_id(self):
        orig = original()
        gone = orig[:11] + "ZZZZZ"
        self.assertFalse(QUEUE.has(gone))
        _, _, results, _ = deliver(request(gone, [recipient(0, "bob@remote.test")]))
        self.assertEqual([(r["status"], r["text"]) for r in results],
                         [(PERMFAIL, "original message is gone")])

    def test_no_recipients(self):
        _, _, results, _ = deliver(request(original(), []))
        self.assertEqual(results, [])


class T03Protocol(unittest.TestCase):
    def assert_closed(self, s):
        self.assertIsNone(s.read(), "the connection should have been closed")

    def assert_still_serving(self):
        _, _, results, _ = deliver(request(original(), [recipient(0, "a@b.test")],
                                           notice_to=""))
        self.assertEqual([r["status"] for r in results], [PERMFAIL])

    def test_garbage_frame(self):
        pids = bounce_pid()
        with Sched() as s:
            s.send_raw(b"\x00\x00\x00\x05hello")
            self.assert_closed(s)
        self.assert_still_serving()
        self.assertEqual(bounce_pid(), pids)
        FD.wait_log(r"bounce\[\d+\]: warning: scheduler connection closed: ")

    def test_oversized_length(self):
        with Sched() as s:
            s.send_raw(b"\x7f\x00\x00\x00")
            self.assert_closed(s)
        self.assert_still_serving()

    def test_other_frame(self):
        with Sched() as s:
            s.send_raw(P.frame(1, P.ROUTE, P.pb_bytes(1, P.queue_ref(original()))))
            self.assert_closed(s)
        self.assert_still_serving()
        FD.wait_log(r"the scheduler sent a route frame, not a DeliveryRequest")

    def test_bad_queue_id(self):
        with Sched() as s:
            s.send(request("not-a-queue-id", [recipient(0, "a@b.test")]))
            self.assert_closed(s)
        self.assert_still_serving()

    def test_two_pipelined_requests(self):
        # Held router answers keep the first job running when the second arrives.
        orig = original()
        ROUTER.hold = True
        try:
            with Sched() as s:
                rq = request(orig, [recipient(0, "bob@remote.test")])
                s.send_raw(P.frame(1, P.DELIVERY, rq) + P.frame(2, P.DELIVERY, rq))
                self.assert_closed(s)
        finally:
            ROUTER.hold = False
        FD.wait_log(r"protocol error: a second DeliveryRequest")
        self.assert_still_serving()

    def test_scheduler_leaves_during_the_hand_off(self):
        orig = original()
        before = len(ROUTER.routed())
        ROUTER.hold = True
        try:
            with Sched() as s:
                s.send(request(orig, [recipient(0, "bob@remote.test")]))
                wait_until(lambda: len(ROUTER.routed()) > before, 10,
                           what="the notice's RouteRequest")
        finally:
            ROUTER.hold = False
        new = ROUTER.routed()[-1]
        FD.wait_log(r"%s: the scheduler went away while the notice was handed to the router"
                    % new)
        self.assertTrue(QUEUE.has(new))  # durable all the same
        self.assert_still_serving()

    def test_several_requests_on_one_connection(self):
        with Sched() as s:
            for i in range(3):
                rid = s.send(request(original(), [recipient(i, "a@b.test")], notice_to=""))
                f = s.read()
                self.assertEqual(f[2][0], rid)
                self.assertIn(P.DELIVERY_REPLY, f)


if __name__ == "__main__":
    farmlib.run_tests("bounce", lambda test: LAST_LOG or FD.log())
