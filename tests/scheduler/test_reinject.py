#!/usr/bin/env python3
"""Integration tests of the reinjector (issue #6, queue recovery).

Mail is accepted while no router is configured (router_endpoint = none), so
it stays unrouted in the queue; a damaged file and a tmp/ leftover are
planted; then farmd starts again with the router farm, a stand-in scheduler
and the reinject once job: the unrouted messages are routed and submitted,
the damaged file is quarantined, tmp/ is cleared.  A third start submits
the now routed messages straight to the scheduler.  Python 3 standard
library only; prints "N passed, N failed".
"""

import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_SRCDIR = os.path.abspath(os.environ.get("top_srcdir") or os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(TOP_SRCDIR, "tests", "smtpserver"))
import smtplib_helpers as H  # noqa: E402
from smtplib_helpers import Raw, Queue, farmlib, qid_of, wait_until  # noqa: E402
from qspool import qid_is_slot  # noqa: E402

REINJECT = H.REINJECT

LAST_LOG = ""


def send(port, rcpt):
    with Raw(port) as r:
        r.send("EHLO x\r\n")
        r.reply()
        assert r.cmd("MAIL FROM:<s@example.test>").startswith("250")
        assert r.cmd("RCPT TO:<%s>" % rcpt).startswith("250")
        assert r.cmd("DATA").startswith("354")
        r.send("Subject: later\r\n\r\nbody\r\n.\r\n")
        code, lines = r.reply()
        assert code == 250, lines
        return qid_of(lines[-1])


class T01Recovery(unittest.TestCase):
    def test_restart_recovers_the_queue(self):
        """Messages in slot files (the default)."""
        self.recover(slots=True)

    def test_restart_recovers_msg_files(self):
        """Messages of the tmp/ + msg/XX way (ZFARM_SPOOL_SLOTS=0)."""
        self.recover(slots=False)

    def recover(self, slots):
        global LAST_LOG
        if not (os.access(REINJECT, os.X_OK) and os.access(H.ROUTER, os.X_OK)):
            self.skipTest("not built")
        fd = farmlib.FarmdInstance(tag="reinject")
        if not slots:
            fd.extra_env["ZFARM_SPOOL_SLOTS"] = "0"
        sched = None
        try:
            port = H.free_port()
            g = dict(H.BASE_GLOBALS)
            g.update({"router_endpoint": "none", "local_recipient_maps": "inline:{alice}",
                      "log_level": "info"})
            smtp = H.smtp_farm("smtpserver", port)
            # 1. accept three messages that nobody routes
            fd.write_config([smtp], g)
            fd.start()
            wait_until(lambda: farmlib.can_connect(port), 10, what="smtpserver")
            qids = [send(port, rcpt) for rcpt in
                    ("alice@localhost", "u@remote.test", "v@remote.test")]
            fd.stop()
            queue = Queue(os.path.join(fd.run, "queue"))
            for qid in qids:
                self.assertEqual(queue.routes(qid), ([], 0))
            # a damaged queue file and a leftover in tmp/
            bad = "1K0000000000" + qids[0][-4:]
            bad_path = queue.msg_path(bad)
            os.makedirs(os.path.dirname(bad_path), exist_ok=True)
            with open(bad_path, "wb") as f:
                f.write(b"ZSP1garbage")
            with open(os.path.join(fd.run, "queue", "tmp", "999.1.1"), "wb") as f:
                f.write(b"half a message")
            self.assertEqual(all(qid_is_slot(q) for q in qids), slots)
            # an OS crash that lost a lazy append after the file had grown:
            # zeros where records were to be; the routes appended after
            # them must not hide behind them (a slot's records end at the
            # first frame that does not check: nothing to cut)
            queue.ctl_write_raw(qids[1], bytes(40))

            # 2. restart with the router, a scheduler stand-in and reinject;
            # the smtpserver waits for reinject's first run (as in
            # etc/zfarm.conf: nothing writes to the queue while it recovers)
            g["router_endpoint"] = "unix:private/router"
            g["scheduler_endpoint"] = "unix:private/scheduler"
            farms = [
                H.smtp_farm("smtpserver", port, start_after="reinject"),
                farmlib.farm_section("router", listen="unix:private/router",
                                     program=H.ROUTER, process_limit=2, client_limit=20),
                farmlib.farm_section("reinject", kind="once", program=REINJECT),
            ]
            fd.write_config(farms, g)
            os.makedirs(os.path.join(fd.run, "private"), mode=0o700, exist_ok=True)
            sched = H.FakeScheduler(os.path.join(fd.run, "private", "scheduler"))
            fd.start()
            wait_until(lambda: all(sched.count(q) == 1 for q in qids), 15,
                       what="the three messages submitted")
            fd.wait_log(r"reinjected 4 message\(s\) in [0-9.]+ s: 3 to the router, "
                        r"0 to the scheduler, 1 quarantined")
            fd.wait_log(r"cleared 1 unfinished message file\(s\)")
            fd.wait_log(r"farms started: smtpserver \(after reinject\)")
            if not slots:
                fd.wait_log(r"%s: control record: cut a torn tail a crash left" % qids[1])
            for qid in qids:
                rs, markers = queue.routes(qid)
                self.assertEqual((len(rs), markers), (1, 1))
            self.assertFalse(os.path.exists(bad_path))
            self.assertTrue(os.path.exists(os.path.join(fd.run, "queue", "corrupt", bad)))
            self.assertEqual(os.listdir(os.path.join(fd.run, "queue", "tmp")), [])
            fd.stop()

            # 3. once more: routed messages go straight to the scheduler
            fd.start()
            wait_until(lambda: all(sched.count(q) == 2 for q in qids), 15,
                       what="the three messages submitted again")
            fd.wait_log(r"reinjected 3 message\(s\) in [0-9.]+ s: 0 to the router, "
                        r"3 to the scheduler, 0 quarantined")
            for qid in qids:  # no second routing set
                rs, markers = queue.routes(qid)
                self.assertEqual((len(rs), markers), (1, 1))
        finally:
            LAST_LOG = fd.log()
            fd.cleanup()
            if sched is not None:
                sched.close()


if __name__ == "__main__":
    farmlib.run_tests("reinject", lambda test: LAST_LOG)
