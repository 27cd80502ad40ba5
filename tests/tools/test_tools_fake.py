#!/usr/bin/env python3
"""zfqueue(8) and mailq(1) against a stand-in scheduler (issue: queue tools).

Run by `make check` as `python3 tests/tools/test_tools_fake.py` with
top_builddir and top_srcdir in the environment.  FakeScheduler listens
where the real scheduler's queue control module does,
<run>/public/showq (read-only ops) and <run>/private/qctl (all ops), and
answers QueueControlRequests from a list of fake entries following the
contract in tools/qctl_client.h: LIST pages (limit, after, truncated),
SHOW, SUMMARY, COUNTERS, FLUSH/HOLD/RELEASE/DELETE/BOUNCE ("ALL", unknown
IDs named in the error), REQUEUE "not supported".  Every request is kept
(decoded) with the socket it came on, so tests check what the tools sent
as well as what they print and their exit status.  The tools run with a
minimal config file and -o run_directory=<tmp run dir>, TZ=UTC.
Prints "N passed, N failed" at the end.
"""

import calendar
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "farmd"))
import farmlib  # noqa: E402
from zfproto import FrameServer, fields, frame, pb_bytes, pb_varint  # noqa: E402

ZFQUEUE = os.path.join(farmlib.TOP_BUILDDIR, "tools", "zfqueue")
MAILQ = os.path.join(farmlib.TOP_BUILDDIR, "tools", "mailq")

QUEUE_CONTROL, QUEUE_CONTROL_REPLY = 28, 29
OPS = {1: "LIST", 2: "SUMMARY", 3: "FLUSH", 4: "HOLD", 5: "RELEASE", 6: "DELETE",
       7: "BOUNCE", 8: "REQUEUE", 9: "COUNTERS", 10: "SHOW"}
READ_ONLY = {"LIST", "SHOW", "SUMMARY", "COUNTERS"}

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Mon Nov 23 10:00:00 2026 UTC, the arrival of the example in zfqueue(8).
T0 = calendar.timegm((2026, 11, 23, 10, 0, 0))


def qid(time_us, pid=4711):
    """A queue ID as common/qid.c makes them: 11 base32 time digits, 5 pid."""
    def digits(v, n):
        return "".join(CROCKFORD[(v >> (5 * (n - 1 - i))) & 31] for i in range(n))
    return digits(time_us, 11) + digits(pid, 5)


def rcpt(address, status="pending", reason="", channel="smtp", nexthop="example.net",
         next_attempt=0, attempts=0):
    return dict(address=address, channel=channel, nexthop=nexthop, status=status,
                reason=reason, next_attempt=next_attempt, attempts=attempts)


def entry(queue_id, arrival=T0, size=4096, sender="sender@example.org", held=False,
          recipients=None):
    return dict(queue_id=queue_id, arrival=arrival, size=size, sender=sender, held=held,
                recipients=recipients if recipients is not None
                else [rcpt("rcpt@example.net")])


# ---- protobuf encoding of the replies (proto/qctl.proto) ----

def s(v):
    return v.encode() if isinstance(v, str) else v


def enc_rcpt(r):
    return (pb_bytes(1, s(r["address"])) + pb_bytes(2, s(r["channel"])) +
            pb_bytes(3, s(r["nexthop"])) + pb_bytes(4, s(r["status"])) +
            pb_bytes(5, s(r["reason"])) + pb_varint(6, r["next_attempt"]) +
            pb_varint(7, r["attempts"]))


def enc_entry(e):
    out = (pb_bytes(1, e["queue_id"]) + pb_varint(2, e["arrival"]) + pb_varint(3, e["size"]) +
           pb_bytes(4, s(e["sender"])) + pb_varint(5, 1 if e["held"] else 0))
    for r in e["recipients"]:
        out += pb_bytes(6, enc_rcpt(r))
    return out


def enc_reply(ok=True, error="", entries=(), counters=(), destinations=(), affected=0,
              truncated=False):
    out = pb_varint(1, 1 if ok else 0)
    if error:
        out += pb_bytes(2, error)
    for e in entries:
        out += pb_bytes(3, enc_entry(e))
    for name, channel, value in counters:
        out += pb_bytes(4, pb_bytes(1, name) + pb_bytes(2, channel) + pb_varint(3, value))
    for d in destinations:
        out += pb_bytes(5, pb_bytes(1, d["channel"]) + pb_bytes(2, d["nexthop"]) +
                        pb_varint(3, d["messages"]) + pb_varint(4, d["recipients"]) +
                        pb_varint(5, 1 if d["dead"] else 0) + pb_varint(6, d["window"]) +
                        pb_varint(7, d["active"]))
    out += pb_varint(6, affected) + pb_varint(7, 1 if truncated else 0)
    return out


def dec_request(payload):
    f = fields(payload)
    one = lambda n, d=b"": f.get(n, [d])[0]  # noqa: E731
    return dict(op=OPS.get(one(1, 0), "?"), queue_ids=[q.decode() for q in f.get(2, [])],
                channel=one(3).decode(), destination=one(4).decode(),
                status=one(5).decode(), limit=one(6, 0), after=one(7).decode())


# ---- the stand-in scheduler ----

class FakeScheduler:
    """Answers queue control requests on <run>/public/showq and
    <run>/private/qctl from self.entries (sorted by queue ID)."""

    COUNTERS = [("received", "", 10), ("delivered", "", 7), ("delivered", "smtp", 5),
                ("delivered", "local", 2), ("messages", "", 3), ("backlog", "", 0)]
    DESTINATIONS = [dict(channel="smtp", nexthop="example.net", messages=2, recipients=3,
                         dead=False, window=10, active=1),
                    dict(channel="smtp", nexthop="dead.example", messages=1, recipients=1,
                         dead=True, window=1, active=0)]

    def __init__(self, run, entries=(), silent=False):
        self.entries = sorted(entries, key=lambda e: e["queue_id"])
        self.requests = []  # (socket, decoded request)
        self.lock = threading.Lock()
        self.servers = []
        for sub, name in (("public", "showq"), ("private", "qctl")):
            os.makedirs(os.path.join(run, sub), exist_ok=True)
            path = os.path.join(run, sub, name)
            handle = (lambda f, where=sub: self.handle(where, f))
            self.servers.append(FrameServer(path, None if silent else handle,
                                            close_after=1 if silent else None))

    def close(self):
        for srv in self.servers:
            srv.close()

    def ops(self):
        with self.lock:
            return [r["op"] for _, r in self.requests]

    def handle(self, where, f):
        rid = f[2][0]
        req = dec_request(f[QUEUE_CONTROL][0])
        with self.lock:
            self.requests.append((where, req))
        return frame(rid, QUEUE_CONTROL_REPLY, self.answer(where, req))

    def find(self, ids):
        by_id = {e["queue_id"]: e for e in self.entries}
        if ids == ["ALL"]:
            return list(self.entries), []
        return [by_id[i] for i in ids if i in by_id], [i for i in ids if i not in by_id]

    def answer(self, where, req):
        op = req["op"]
        if where == "public" and op not in READ_ONLY:
            return enc_reply(ok=False, error="not permitted on this socket")
        if op == "LIST":
            es = [e for e in self.entries if e["queue_id"] > req["after"]]
            if req["queue_ids"]:
                es = [e for e in es if e["queue_id"] in req["queue_ids"]]
            if req["status"] == "hold":
                es = [e for e in es if e["held"]]
            elif req["status"]:
                want = ("active", "pending") if req["status"] == "active" else ("deferred",)
                es = [e for e in es if any(r["status"] in want for r in e["recipients"])]
            limit = req["limit"] or 1000
            return enc_reply(entries=es[:limit], truncated=len(es) > limit)
        if op == "SHOW":
            found, unknown = self.find(req["queue_ids"][:1])
            if unknown or not found:
                return enc_reply(ok=False, error="%s: no such message in the queue"
                                 % (req["queue_ids"] or [""])[0])
            return enc_reply(entries=found)
        if op == "SUMMARY":
            return enc_reply(destinations=self.DESTINATIONS)
        if op == "COUNTERS":
            return enc_reply(counters=self.COUNTERS)
        if op == "REQUEUE":
            return enc_reply(ok=False, error="not supported")
        if op == "FLUSH" and not req["queue_ids"]:
            return enc_reply(affected=len(self.entries))
        if op in ("FLUSH", "HOLD", "RELEASE", "DELETE", "BOUNCE"):
            found, unknown = self.find(req["queue_ids"])
            if unknown:
                return enc_reply(ok=False, affected=len(found),
                                 error="unknown queue IDs: %s" % ", ".join(unknown))
            return enc_reply(affected=len(found))
        return enc_reply(ok=False, error="unknown op")


# ---- spool messages for `show` (layout: common/qstore.h) ----

def write_spool_message(queue_dir, queue_id, sender, recipients, content):
    env = pb_bytes(1, queue_id) + pb_bytes(3, "192.0.2.7") + pb_bytes(4, "client.example")
    env += pb_bytes(5, "client.example") + pb_bytes(6, "ESMTP") + pb_bytes(7, sender)
    for r in recipients:
        env += pb_bytes(8, pb_bytes(1, r) + pb_varint(3, 4 | 8))
    msg = b"ZFQ1" + len(env).to_bytes(4, "big") + env + content
    d = os.path.join(queue_dir, "msg", queue_id[-2:])
    os.makedirs(d, exist_ok=True)
    for sub in ("tmp", "free", "corrupt"):
        os.makedirs(os.path.join(queue_dir, sub), exist_ok=True)
    with open(os.path.join(d, queue_id), "wb") as f:
        f.write(b"ZSP1" + bytes(4) + len(msg).to_bytes(8, "big") + msg)


class ToolTest(unittest.TestCase):
    def setUp(self):
        missing = [p for p in (ZFQUEUE, MAILQ) if not os.access(p, os.X_OK)]
        if missing:
            self.fail("not built: %s" % ", ".join(missing))
        self.tmp = tempfile.mkdtemp(prefix="zfarm-tools-")
        self.run_dir = os.path.join(self.tmp, "run")
        os.makedirs(self.run_dir)
        self.conf = os.path.join(self.tmp, "zfarm.conf")
        with open(self.conf, "w") as f:
            f.write("# minimal config for the queue tools\n"
                    "run_directory = /nonexistent/overridden/by/-o\n"
                    "queue_directory = $run_directory/queue\n")
        self.fake = None

    def tearDown(self):
        if self.fake:
            self.fake.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def serve(self, entries=(), **kw):
        self.fake = FakeScheduler(self.run_dir, entries, **kw)
        return self.fake

    def tool(self, prog, *args, stdin=None, conf=True):
        cmd = [prog]
        if conf:
            cmd += ["-c", self.conf]
        cmd += ["-o", "run_directory=%s" % self.run_dir] + list(args)
        env = dict(os.environ, TZ="UTC")
        env.pop("ZFARM_CONFIG", None)
        return subprocess.run(cmd, input=stdin, capture_output=True, timeout=60, env=env)

    def zfq(self, *args, **kw):
        return self.tool(ZFQUEUE, *args, **kw)

    def mailq(self, *args, **kw):
        return self.tool(MAILQ, *args, **kw)

    def check(self, r, status, stdout=None):
        self.assertEqual(r.returncode, status,
                         "exit %d, want %d; stderr: %s" % (r.returncode, status,
                                                          r.stderr.decode(errors="replace")))
        if stdout is not None:
            self.assertEqual(r.stdout.decode(), stdout)


class TestList(ToolTest):
    def test_mailq_text_like_postfix(self):
        a, b, c = qid(T0 * 10**6), qid(T0 * 10**6 + 1), qid(T0 * 10**6 + 2)
        self.serve([
            entry(a, recipients=[rcpt("rcpt@example.net", "deferred",
                                      "4.4.1 destination not responding")]),
            entry(b, size=100, sender="", held=True, recipients=[
                rcpt("x@example.net", "deferred", "4.4.1 destination not responding"),
                rcpt("done@example.net", "delivered", "250 ok"),
                rcpt("y@example.net", "pending"),
                rcpt("z@example.net", "deferred", "4.2.2 mailbox full"),
                rcpt("w@example.net", "deferred", "4.4.1 destination not responding")]),
            entry(c, size=1, recipients=[rcpt("act@example.net", "active"),
                                         rcpt("gone@example.net", "failed",
                                              "550 5.1.1 no such user")]),
        ])
        ind = " " * 48
        want = (
            "-Queue ID-       --Size-- ----Arrival Time---- -Sender/Recipient-------\n"
            + "%s     4096 Mon Nov 23 10:00:00  sender@example.org\n" % a
            + ind + "(4.4.1 destination not responding)\n"
            + ind + "rcpt@example.net\n\n"
            + "%s!     100 Mon Nov 23 10:00:00  MAILER-DAEMON\n" % b
            + ind + "y@example.net\n"
            + ind + "(4.2.2 mailbox full)\n"
            + ind + "z@example.net\n"
            + ind + "(4.4.1 destination not responding)\n"
            + ind + "x@example.net\n"
            + ind + "w@example.net\n\n"
            + "%s*       1 Mon Nov 23 10:00:00  sender@example.org\n" % c
            + ind + "act@example.net\n\n"
            + "-- 5 Kbytes in 3 Requests.\n")
        r = self.mailq()
        self.check(r, 0, want)
        self.assertEqual(self.fake.requests, [("public", dict(
            op="LIST", queue_ids=[], channel="", destination="", status="", limit=0,
            after=""))])
        # zfqueue list prints the same.
        self.check(self.zfq("list"), 0, want)

    def test_example_of_the_brief(self):
        self.serve([entry("0HZX5M3W2Q000A1B", recipients=[
            rcpt("rcpt@example.net", "deferred", "4.4.1 destination not responding"),
            rcpt("busy@example.net", "active")])])
        want = """-Queue ID-       --Size-- ----Arrival Time---- -Sender/Recipient-------
0HZX5M3W2Q000A1B*    4096 Mon Nov 23 10:00:00  sender@example.org
                                                busy@example.net
                                                (4.4.1 destination not responding)
                                                rcpt@example.net

-- 4 Kbytes in 1 Request.
"""
        self.check(self.mailq(), 0, want)

    def test_verbose_lists_final_recipients(self):
        a = qid(T0 * 10**6)
        self.serve([entry(a, recipients=[
            rcpt("ok@example.net", "delivered", "250 2.0.0 ok", attempts=1),
            rcpt("no@example.net", "failed", "550 5.1.1 no such user", attempts=1),
            rcpt("later@example.net", "deferred", "4.4.1 timeout", attempts=3,
                 next_attempt=T0 + 1800)])])
        out = self.mailq("-v").stdout.decode()
        self.assertIn("(250 2.0.0 ok)\n" + " " * 48 +
                      "ok@example.net (delivered, smtp example.net, 1 attempt)\n", out)
        self.assertIn("(550 5.1.1 no such user)\n", out)
        self.assertIn("later@example.net (deferred, smtp example.net, 3 attempts, "
                      "next Mon Nov 23 10:30:00)\n", out)
        plain = self.mailq().stdout.decode()
        self.assertNotIn("ok@example.net", plain)
        self.assertNotIn("no@example.net", plain)

    def test_paging_2500_entries(self):
        ids = [qid(T0 * 10**6 + i) for i in range(2500)]
        self.serve([entry(i, size=1024) for i in ids])
        r = self.zfq("list")
        self.check(r, 0)
        out = r.stdout.decode()
        self.assertTrue(out.endswith("\n-- 2500 Kbytes in 2500 Requests.\n"), out[-200:])
        listed = [line[:16] for line in out.splitlines() if line[:16] in set(ids)]
        self.assertEqual(listed, ids)
        reqs = [req for _, req in self.fake.requests]
        self.assertEqual([q["after"] for q in reqs], ["", ids[999], ids[1999]])
        self.assertEqual([q["op"] for q in reqs], ["LIST"] * 3)
        # The JSON listing pages the same way and is one valid object.
        self.fake.requests.clear()
        r = self.zfq("list", "--json")
        self.check(r, 0)
        doc = json.loads(r.stdout)
        self.assertEqual([e["queue_id"] for e in doc["entries"]], ids)
        self.assertEqual(len(self.fake.requests), 3)

    def test_filters_are_sent(self):
        a, b = qid(T0 * 10**6), qid(T0 * 10**6 + 1)
        self.serve([entry(a), entry(b, held=True)])
        r = self.zfq("list", "--status", "hold", "--channel=smtp", "--destination",
                     "example.net")
        self.check(r, 0)
        self.assertIn(b + "!", r.stdout.decode())
        self.assertNotIn(a, r.stdout.decode())
        (where, req), = self.fake.requests
        self.assertEqual((where, req["status"], req["channel"], req["destination"]),
                         ("public", "hold", "smtp", "example.net"))
        self.fake.entries = []
        self.check(self.zfq("list", "--status", "deferred"), 0, "No messages match\n")

    def test_json_escaping(self):
        nasty = "q\"uote\\back\x01ctl\x1b[31m\ttab\nnl\x7f"
        a = qid(T0 * 10**6)
        self.serve([entry(a, sender="jöhn@exämple.org", recipients=[
            rcpt("ü@例え.jp", "deferred", nasty),
            rcpt(b"bad\xffbyte@example.net", "pending")])])
        r = self.mailq("--json")
        self.check(r, 0)
        doc = json.loads(r.stdout.decode("utf-8"))
        e, = doc["entries"]
        self.assertEqual(e["queue_id"], a)
        self.assertEqual(e["sender"], "jöhn@exämple.org")
        self.assertEqual(e["arrival"], T0)
        self.assertEqual(e["size"], 4096)
        self.assertIs(e["held"], False)
        self.assertEqual(e["recipients"][0]["address"], "ü@例え.jp")
        self.assertEqual(e["recipients"][0]["reason"], nasty)
        self.assertEqual(e["recipients"][1]["address"], "bad\ufffdbyte@example.net")
        self.assertNotIn(b"\x1b", r.stdout)
        self.assertIn("jöhn@exämple.org".encode(), r.stdout)  # UTF-8 passes as is
        # Text output: no terminal escapes either, UTF-8 kept.
        r = self.mailq()
        self.assertNotIn(b"\x1b", r.stdout)
        self.assertNotIn(b"\x01", r.stdout)
        self.assertIn("ü@例え.jp".encode(), r.stdout)
        self.assertIn(b"bad?byte@example.net", r.stdout)

    def test_mailq_empty_queue(self):
        self.serve([])
        self.check(self.mailq(), 0, "Mail queue is empty\n")
        r = self.mailq("--json")
        self.check(r, 0)
        self.assertEqual(json.loads(r.stdout), {"entries": []})


class TestReports(ToolTest):
    def test_summary(self):
        self.serve()
        r = self.zfq("summary", "--json")
        self.check(r, 0)
        self.assertEqual(json.loads(r.stdout), {"destinations": FakeScheduler.DESTINATIONS})
        r = self.zfq("summary")
        self.check(r, 0)
        lines = r.stdout.decode().splitlines()
        self.assertEqual(lines[0].split(), ["channel", "nexthop", "messages", "recipients",
                                            "active", "window", "state"])
        self.assertEqual(lines[1].split(), ["smtp", "example.net", "2", "3", "1", "10", "-"])
        self.assertEqual(lines[2].split(), ["smtp", "dead.example", "1", "1", "0", "1",
                                            "dead"])
        self.assertEqual({w for w, _ in self.fake.requests}, {"public"})

    def test_counters(self):
        self.serve()
        r = self.zfq("counters", "--json")
        self.check(r, 0)
        self.assertEqual(json.loads(r.stdout)["counters"],
                         [dict(name=n, channel=c, value=v) for n, c, v in
                          FakeScheduler.COUNTERS])
        r = self.zfq("counters")
        self.check(r, 0)
        self.assertIn(["delivered", "smtp", "5"],
                      [line.split() for line in r.stdout.decode().splitlines()])
        self.assertIn(["received", "-", "10"],
                      [line.split() for line in r.stdout.decode().splitlines()])


class TestShow(ToolTest):
    def test_show_unknown_id(self):
        self.serve([entry(qid(T0 * 10**6))])
        missing = qid(T0 * 10**6 + 5)
        r = self.zfq("show", missing)
        self.check(r, 1)
        self.assertIn("%s: no such message in the queue" % missing, r.stderr.decode())
        self.assertEqual(r.stdout, b"")

    def test_show_reads_the_spool(self):
        a = qid(T0 * 10**6)
        self.serve([entry(a, recipients=[
            rcpt("rcpt@example.net", "deferred", "4.4.1 destination not responding",
                 attempts=2, next_attempt=T0 + 600)])])
        # Content: multi-byte characters straddle the tool's 64 KiB read size.
        content = (b"Subject: test\r\n\r\n" + b"x" * (65536 - 18) + "äöü€😀".encode() * 3
                   + b"\r\nend\r\n")
        write_spool_message(os.path.join(self.run_dir, "queue"), a, "sender@example.org",
                            ["rcpt@example.net"], content)
        r = self.zfq("show", a)
        self.check(r, 0)
        out = r.stdout
        self.assertIn(b"Queue ID:    " + a.encode() + b"\n", out)
        self.assertIn(b"reason:    4.4.1 destination not responding\n", out)
        self.assertIn(b"Client:      client.example[192.0.2.7]\n", out)
        self.assertIn(b"Recipient:   <rcpt@example.net> NOTIFY=FAILURE,DELAY\n", out)
        self.assertIn(b"*** MESSAGE CONTENT ***\n" + content + b"*** END OF MESSAGE ***\n",
                      out)
        r = self.zfq("show", a, "--json")
        self.check(r, 0)
        doc = json.loads(r.stdout)
        self.assertEqual(doc["entry"]["queue_id"], a)
        self.assertEqual(doc["envelope"]["sender"], "sender@example.org")
        self.assertEqual(doc["envelope"]["recipients"][0]["notify"], "FAILURE,DELAY")
        self.assertEqual(doc["content"], content.decode())
        r = self.zfq("show", "--no-body", a)
        self.check(r, 0)
        self.assertIn(b"*** ENVELOPE ***", r.stdout)
        self.assertNotIn(b"MESSAGE CONTENT", r.stdout)
        self.assertNotIn("content", json.loads(self.zfq("show", a, "--json", "--no-body").stdout))
        self.assertEqual({w for w, _ in self.fake.requests}, {"public"})
        self.assertEqual(self.fake.requests[0][1]["queue_ids"], [a])

    def test_show_without_spool_reports(self):
        a = qid(T0 * 10**6)
        self.serve([entry(a)])
        r = self.zfq("show", a)
        self.check(r, 1)
        self.assertIn(b"Queue ID:    " + a.encode(), r.stdout)
        self.assertIn("cannot read the message", r.stderr.decode())
        # A read-only tool does not create a queue directory.
        self.assertFalse(os.path.exists(os.path.join(self.run_dir, "queue")))


class TestChange(ToolTest):
    def setUp(self):
        super().setUp()
        self.ids = [qid(T0 * 10**6 + i) for i in range(3)]
        self.serve([entry(i) for i in self.ids])

    def test_hold_all(self):
        r = self.zfq("hold", "ALL")
        self.check(r, 0, "held: 3\n")
        (where, req), = self.fake.requests
        self.assertEqual((where, req["op"], req["queue_ids"]), ("private", "HOLD", ["ALL"]))

    def test_unknown_id(self):
        unknown = qid(T0 * 10**6 + 99)
        r = self.zfq("delete", self.ids[0], unknown)
        self.check(r, 1, "deleted: 1\n")
        self.assertIn(unknown, r.stderr.decode())
        self.assertEqual(self.fake.requests[0][1]["queue_ids"], [self.ids[0], unknown])

    def test_ids_from_stdin(self):
        text = "%s\n  %s*\t%s!\n\n" % tuple(self.ids)
        r = self.zfq("release", "-", stdin=text.encode())
        self.check(r, 0, "released: 3\n")
        (where, req), = self.fake.requests
        self.assertEqual((where, req["op"], req["queue_ids"]), ("private", "RELEASE", self.ids))

    def test_stdin_batches_and_bad_words(self):
        many = [qid(T0 * 10**6 + 1000 + i) for i in range(2500)]
        r = self.zfq("hold", self.ids[0], "-",
                     stdin=("\n".join(many) + "\nnot-an-id\n").encode())
        self.check(r, 1)
        self.assertIn('not a queue ID: "not-an-id"', r.stderr.decode())
        sent = [req["queue_ids"] for _, req in self.fake.requests]
        self.assertEqual([len(b) for b in sent], [1000, 1000, 501])
        self.assertEqual(sum(sent, []), [self.ids[0]] + many)

    def test_flush(self):
        self.check(self.zfq("flush"), 0, "flushed: 3\n")
        self.check(self.zfq("flush", "--destination", "example.net", "--channel", "smtp"), 0)
        self.check(self.zfq("flush", self.ids[1]), 0, "flushed: 1\n")
        # "-" with nothing on stdin must not become "flush everything".
        self.check(self.zfq("flush", "-", stdin=b""), 0, "flushed: 0\n")
        reqs = [req for _, req in self.fake.requests]
        self.assertEqual([(q["op"], q["queue_ids"], q["destination"], q["channel"])
                          for q in reqs],
                         [("FLUSH", [], "", ""), ("FLUSH", [], "example.net", "smtp"),
                          ("FLUSH", [self.ids[1]], "", "")])
        self.assertEqual({w for w, _ in self.fake.requests}, {"private"})

    def test_requeue_not_supported(self):
        r = self.zfq("requeue", self.ids[0])
        self.check(r, 1)
        self.assertIn("not supported", r.stderr.decode())

    def test_bounce(self):
        self.check(self.zfq("bounce", self.ids[2]), 0, "bounced: 1\n")
        self.check(self.zfq("bounce", "ALL"), 2)
        self.assertEqual(len(self.fake.requests), 1)


class TestFailures(ToolTest):
    def test_no_scheduler(self):
        for prog, args in ((MAILQ, ()), (ZFQUEUE, ("list",)), (ZFQUEUE, ("counters",)),
                           (ZFQUEUE, ("hold", qid(T0 * 10**6)))):
            with self.subTest(args=args):
                r = self.tool(prog, *args)
                self.check(r, 3)
                self.assertIn("not running", r.stderr.decode())
                self.assertEqual(r.stdout, b"")

    def test_scheduler_does_not_answer(self):
        self.serve(silent=True)
        r = self.zfq("list")
        self.check(r, 3)
        self.assertIn("no answer", r.stderr.decode())

    def test_usage(self):
        self.serve()
        for args in ((), ("frobnicate",), ("hold",), ("show",), ("show", "a", "b"),
                     ("hold", "not-an-id"), ("hold", "ALL", qid(T0 * 10**6)),
                     ("list", "--status", "bogus"), ("list", "--bogus"),
                     ("list", qid(T0 * 10**6)), ("summary", "--channel", "x"),
                     ("flush", "--channel", "smtp"),
                     ("flush", qid(T0 * 10**6), "--destination", "d"),
                     ("-o", "no equals sign", "list")):
            with self.subTest(args=args):
                r = self.zfq(*args)
                self.check(r, 2)
                self.assertTrue(r.stderr, "no reason given")
        r = self.mailq("extra")
        self.check(r, 2)
        r = self.mailq("--bogus")
        self.check(r, 2)
        with open(self.conf, "a") as f:
            f.write("bad line without equals\n")
        self.check(self.mailq(), 2)
        self.assertEqual(self.fake.requests, [])


def main():
    farmlib.run_tests("queue tools")


if __name__ == "__main__":
    main()
