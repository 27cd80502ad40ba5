#!/usr/bin/env python3
"""Integration tests of farmd, the farm manager (issue #3).

Run by `make check` as `python3 tests/farmd/test_farmd.py` with top_builddir
and top_srcdir in the environment.  Each test runs its own farmd in a temp
dir (run_directory, config, log) with echo farms from tests/farm/echo_farm
(or small Python programs written by the test) on 127.0.0.1 ports, waits
for conditions with deadlines (farmlib.wait_until) and always stops farmd
and kills leftover children.  Prints "N passed, N failed" at the end and
exits non-zero if anything failed.
"""

import errno
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmlib  # noqa: E402
from farmlib import (Client, ask_once, alive, can_connect, farm_section,  # noqa: E402
                     free_port, observe, wait_until)


def once_prepare(marker):
    """The FIFO the once job (ONCE_SCRIPT) waits on."""
    os.mkfifo(marker + ".go")


def once_release(marker):
    """Let the once job go: open its FIFO for writing once the job has it
    open for reading (ENXIO until then)."""
    def opened():
        try:
            os.close(os.open(marker + ".go", os.O_WRONLY | os.O_NONBLOCK))
            return True
        except OSError as e:
            if e.errno != errno.ENXIO:
                raise
            return False
    wait_until(opened, 10, what="the once job waiting on " + marker + ".go")


def echo_farm(name, port=None, listen=None, **params):
    """A [farm NAME] section running echo_farm on 127.0.0.1:port."""
    if listen is None:
        listen = "inet:127.0.0.1:%d" % port
    p = {"listen": listen, "program": "echo_farm"}
    p.update(params)
    return farm_section(name, **p)


# A farm program in Python that speaks the status protocol badly (or not at
# all).  argv[1] is the mode.  It accepts and closes connections on its
# inherited listen sockets so pending connections never pile up.
ROGUE_SCRIPT = r'''
import os, select, signal, socket, sys, time

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)

def frame(pid, generation, state=1):
    st = b"\x08" + varint(pid) + b"\x10" + varint(generation) + b"\x18" + varint(state)
    fr = b"\x08\x01" + varint((16 << 3) | 2) + varint(len(st)) + st
    return len(fr).to_bytes(4, "big") + fr

mode = sys.argv[1]
status_fd = int(os.environ["ZFARM_STATUS_FD"])
gen = int(os.environ["ZFARM_GENERATION"])
pid = os.getpid()
if mode == "good":
    os.write(status_fd, frame(pid, gen))
elif mode == "wrongpid":
    os.write(status_fd, frame(pid + 100000, gen))
elif mode == "wronggen":
    os.write(status_fd, frame(pid, gen + 7))
elif mode == "garbage":
    os.write(status_fd, b"\x00\x00\x00\x07garbage")
elif mode == "silent":
    pass
else:
    sys.exit("bad mode " + mode)
nfds = int(os.environ.get("LISTEN_FDS", "0"))
socks = [socket.socket(fileno=3 + i) for i in range(nfds)]
while True:
    if not socks:
        signal.pause()  # until farmd stops us
        continue
    r, _, _ = select.select(socks, [], [], 3600)
    for s in r:
        try:
            conn, _ = s.accept()
            conn.close()
        except (BlockingIOError, InterruptedError):
            pass
'''

# A run-once job that finishes only when the test releases it
# (once_release: a writer opens the FIFO argv[1].go, which the job waits to
# open for reading; 30 s at most), then leaves argv[1] behind.
ONCE_SCRIPT = r'''
import os, signal, sys
signal.signal(signal.SIGALRM, lambda *a: sys.exit("never released"))
signal.alarm(30)
os.close(os.open(sys.argv[1] + ".go", os.O_RDONLY))
signal.alarm(0)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write("done\n")
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
sys.exit(0)
'''


# Writes its fds (as exec'd by farmd) and LISTEN_*/ZFARM_* variables as JSON
# to argv[1], then idles until farmd stops it.
FDS_SCRIPT = r"""
import json, os, signal, sys
fds = {}
d = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
for f in os.listdir(d):
    if int(f) == d:
        continue
    try:
        fds[int(f)] = os.readlink("/proc/self/fd/" + f)
    except OSError:
        pass
os.close(d)
env = {k: v for k, v in os.environ.items() if k.startswith(("LISTEN_", "ZFARM_"))}
with open(sys.argv[1] + ".tmp", "w") as out:
    json.dump({"pid": os.getpid(), "fds": fds, "env": env}, out)
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
signal.pause()
"""


class FreePortTest(unittest.TestCase):
    """farmlib.free_port: a port is handed out once per process, and not to
    another test process while this one runs (a test wanting a dozen
    listeners drew one port twice once: farmd refused the config)."""

    def test_free_port_never_twice(self):
        mine = [free_port() for _ in range(300)]
        self.assertEqual(len(set(mine)), len(mine))
        code = ("import sys; sys.path.insert(0, %r); import farmlib; "
                "print(' '.join(str(farmlib.free_port()) for _ in range(300)))"
                % os.path.dirname(os.path.abspath(farmlib.__file__)))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=60, check=True).stdout
        theirs = [int(p) for p in out.split()]
        self.assertEqual(len(theirs), 300)
        self.assertEqual(set(mine) & set(theirs), set())


class FarmdTest(unittest.TestCase):
    """One farmd per test; tearDown stops it (and checks it stops cleanly)."""

    check_clean_stop = True

    def shortDescription(self):
        return None  # print test names, not docstrings

    def setUp(self):
        missing = farmlib.binaries_missing()
        if missing:
            self.fail("not built: %s" % ", ".join(missing))
        self.fd = farmlib.FarmdInstance(tag=self._testMethodName)
        self.farmd_log = ""

    def tearDown(self):
        fd = self.fd
        problems = []
        ok = getattr(getattr(self, "_outcome", None), "success", True)
        try:
            if fd.running():
                fd.children()
                rc = fd.stop(signal.SIGTERM, timeout=15)
                if rc != 0:
                    problems.append("farmd exit status %s on SIGTERM" % rc)
                left = fd.leftovers()
                if left:
                    problems.append("processes left after farmd stopped: %s" % left)
        finally:
            self.farmd_log = fd.log()
            fd.cleanup()
        if problems and ok and self.check_clean_stop:
            self.fail("; ".join(problems))

    # -- helpers --

    def farm(self, name):
        f = self.fd.farm(name)
        self.assertIsNotNone(f, "farm %s not in status" % name)
        return f

    def wait_farm(self, name, timeout=5.0, **want):
        try:
            return wait_until(self.fd.farm_is(name, **want), timeout)
        except farmlib.Timeout as e:
            raise AssertionError("%s; last status: %s" % (e, self.fd.farm(name)))

    def watch_overlap(self, old, timeout=10.0):
        """Until pid old exits: the other children of farmd seen meanwhile."""
        seen = set()

        def old_gone():
            kids = self.fd.children()
            if not alive(old):
                return True
            seen.update(p for p in kids if p != old)
            return False
        wait_until(old_gone, timeout, what="pid %d to exit" % old)
        return seen

    def echo_pid(self, client):
        ans = client.ask("PID")
        self.assertIsNotNone(ans, "no answer to PID")
        return int(ans)

    # ------------------------------------------------------------------
    # 1. no child available + under the limit: farmd watches the sockets
    # ------------------------------------------------------------------
    def test_01_spawn_on_demand(self):
        port = free_port()
        self.fd.write_config([echo_farm("echo", port, process_limit=5, process_min_avail=0,
                                        client_limit=1)])
        self.fd.start()
        f = self.farm("echo")
        self.assertEqual((f["total"], f["spawned"]), (0, 0), f)
        # A tick goes by: still nothing is spawned without a connection.
        observe(1.2)
        f = self.farm("echo")
        self.assertEqual((f["total"], f["spawned"]), (0, 0), f)

        with Client(port) as c:
            pid = self.echo_pid(c)
            self.assertEqual(c.ask("hello"), "hello")
            self.wait_farm("echo", total=1, spawned=1)
            self.assertIn(pid, self.fd.children())
        # 20 sequential connections, each once the child is available again.
        served = 1
        for i in range(20):
            def ready():
                f = self.fd.farm("echo")
                return f["available"] == 1 and f["served"] >= served
            wait_until(ready, 5, what="child available again")
            with Client(port) as c:
                self.assertEqual(self.echo_pid(c), pid)
                self.assertEqual(c.ask("line %d" % i), "line %d" % i)
            served += 1
        f = self.wait_farm("echo", available=1)
        self.assertEqual((f["total"], f["spawned"]), (1, 1), f)

    # ------------------------------------------------------------------
    # 2. process_min_avail prefork; idle surplus retired after max_idle
    # ------------------------------------------------------------------
    def test_02_min_avail_and_idle_retire(self):
        port = free_port()
        self.fd.write_config([echo_farm("echo", port, process_limit=10, process_min_avail=3,
                                        client_limit=1, max_idle="1s")])
        self.fd.start()
        self.wait_farm("echo", timeout=5, total=3, available=3)
        self.assertEqual(len(wait_until(lambda: len(self.fd.children()) == 3
                                        and self.fd.children(), 5)), 3)
        # Grow: 6 concurrent slow sessions, each in its own child.
        clients = [Client(port) for _ in range(6)]
        try:
            pids = [self.echo_pid(c) for c in clients]
            self.assertEqual(len(set(pids)), 6, pids)
            for c in clients:
                c.send("SLOW 1000")
            peak = wait_until(lambda: self.farm("echo")["total"] >= 6 and self.farm("echo"),
                              5, what="total >= 6")
            for c in clients:
                self.assertEqual(c.readline(), "OK")
        finally:
            for c in clients:
                c.close()
        self.assertGreaterEqual(peak["total"], 6)
        # The surplus goes back to min_avail after max_idle (1 s).
        self.wait_farm("echo", timeout=8, total=3, available=3)
        wait_until(lambda: len(self.fd.children()) == 3, 5, what="3 children left")
        self.assertRegex(self.fd.log(), r"farm echo: retiring idle pid \d+")
        self.assertEqual(ask_once(port, "still here"), "still here")

    def test_02b_idle_retire_after_coalesced_report(self):
        # client_limit 2: going idle is a change of busy and sessions only
        # (the state stays AVAILABLE), which children report coalesced.
        port = free_port()
        self.fd.write_config([echo_farm("echo", port, process_limit=3, process_min_avail=1,
                                        client_limit=2, max_idle="1s")])
        self.fd.start()
        self.wait_farm("echo", total=1, available=1)
        clients = []
        try:
            # Two fill the first child (TAKEN); the third starts a second one.
            for _ in range(3):
                clients.append(Client(port))
                self.echo_pid(clients[-1])
            pids = [self.echo_pid(c) for c in clients]
            self.assertEqual(len(set(pids)), 2, pids)
            self.wait_farm("echo", total=2, busy=2)
        finally:
            for c in clients:
                c.close()
        # Both report idle (coalesced); the surplus one retires after max_idle.
        self.wait_farm("echo", timeout=3, busy=0)
        self.wait_farm("echo", timeout=6, total=1, available=1)
        self.assertRegex(self.fd.log(), r"farm echo: retiring idle pid \d+")
        self.assertEqual(ask_once(port, "still here"), "still here")

    def test_02c_full_until_resume_mark(self):
        # A child full at client_limit (16) takes clients again only below
        # its resume mark (16 - 16/8 = 14): a load hovering at the limit
        # does not turn its listeners off and on (and report) per session.
        port = free_port()
        self.fd.write_config([echo_farm("echo", port, process_limit=1, process_min_avail=1,
                                        client_limit=16)])
        self.fd.start()
        self.wait_farm("echo", total=1, available=1)
        clients = [Client(port) for _ in range(16)]
        try:
            self.assertEqual(len({self.echo_pid(c) for c in clients}), 1)
            self.wait_farm("echo", total=1, available=0)
            for n in (1, 2):
                clients.pop().close()
                # served counts ended sessions: the child saw the close
                # (a change of state would have gone out with it).
                self.wait_farm("echo", timeout=5, served=n, available=0)
            clients.pop().close()  # 13 < 14
            self.wait_farm("echo", timeout=5, served=3, available=1)
            clients.append(Client(port))
            self.echo_pid(clients[-1])
        finally:
            for c in clients:
                c.close()

    # ------------------------------------------------------------------
    # 3. at process_limit connections wait; one warning per interval
    # ------------------------------------------------------------------
    def test_03_process_limit_waits_and_warns_once(self):
        port = free_port()
        self.fd.write_config([echo_farm("lim", port, process_limit=2, process_min_avail=0,
                                        client_limit=1)])
        self.fd.start()
        for rnd in range(3):
            a, b = Client(port), Client(port)
            try:
                pa, pb = self.echo_pid(a), self.echo_pid(b)
                self.assertNotEqual(pa, pb)
                self.wait_farm("lim", total=2, available=0)
                a.send("SLOW 500")
                b.send("SLOW 500")
                # The third client is not refused: it waits in the backlog.
                c = Client(port)
                got = {}

                def third():
                    got["answer"] = c.ask("PID")
                    got["t"] = time.monotonic()
                t = threading.Thread(target=third)
                t.start()
                self.assertEqual(a.readline(), "OK")
                t_free = time.monotonic()
                a.close()
                self.assertEqual(b.readline(), "OK")
                b.close()
                t.join(10)
                c.close()
                self.assertFalse(t.is_alive(), "third client never answered")
                self.assertIn(int(got["answer"]), (pa, pb))
                self.assertGreaterEqual(got["t"], t_free,
                                        "third client answered while both children were busy")
                f = self.farm("lim")
                self.assertLessEqual(f["total"], 2, f)
                self.assertLessEqual(f["spawned"], 2, f)
            finally:
                a.close()
                b.close()
        self.wait_farm("lim", available=2)
        self.assertEqual(self.fd.log_count(r"farm lim has reached its process limit 2"), 1,
                         self.fd.log())

    # ------------------------------------------------------------------
    # 4. stress mode
    # ------------------------------------------------------------------
    def test_04_stress(self):
        hot, cold = free_port(), free_port()
        self.fd.write_config([
            echo_farm("hot", hot, process_limit=1, process_min_avail=0, client_limit=1,
                      stress=True),
            echo_farm("cold", cold, process_limit=1, process_min_avail=0, client_limit=1,
                      stress=False),
        ], extra_globals={"stress_duration": "60s"})
        self.fd.start()
        for name, port, want in (("hot", hot, "1"), ("cold", cold, "0")):
            with Client(port) as c:
                pid1 = self.echo_pid(c)
                # Born before the limit was reached: not in stress.
                self.assertEqual(c.ask("STRESS"), "0")
                self.wait_farm(name, total=1, available=0)
                if name == "hot":
                    self.wait_farm("hot", stress=True)
                    self.assertRegex(self.fd.log(), r"farm hot: entering stress mode")
            # Make room for a new child, born after the limit was hit.
            os.kill(pid1, signal.SIGTERM)
            wait_until(lambda: not alive(pid1), 5, what="pid %d gone" % pid1)
            self.wait_farm(name, total=0)
            with Client(port) as c:
                pid2 = self.echo_pid(c)
                self.assertNotEqual(pid1, pid2)
                self.assertEqual(c.ask("STRESS"), want, "farm %s" % name)
        self.assertTrue(self.farm("hot")["stress"])
        self.assertFalse(self.farm("cold")["stress"])
        self.assertNotRegex(self.fd.log(), r"farm cold: entering stress mode")

    # ------------------------------------------------------------------
    # 5. throttling of a farm whose program fails at once
    # ------------------------------------------------------------------
    def test_05a_throttle_program_fails_at_once(self):
        port = free_port()
        self.fd.write_config([echo_farm("bad", port, args="-Z", process_limit=3,
                                        process_min_avail=1, throttle_delay="1s")],
                             extra_globals={"throttle_max": "60s"})
        t0 = time.monotonic()
        self.fd.start()
        self.fd.wait_log(r"farm bad: pid \d+ exit status 2", 5)
        self.fd.wait_log(r"farm bad: .*throttling", 5)
        f = wait_until(lambda: self.farm("bad")["throttled_until"] > 0 and self.farm("bad"),
                       3, what="throttled_until > 0")
        self.assertGreater(f["throttled_until"], time.time() - 2, f)
        # Over ~4 s: a handful of spawns (1 s, 2 s, 4 s back-off), not hundreds.
        observe(max(0.0, t0 + 4.0 - time.monotonic()))
        f = self.farm("bad")
        self.assertGreaterEqual(f["spawned"], 2, f)
        self.assertLessEqual(f["spawned"], 4, f)
        delays = [float(x) for x in
                  re.findall(r"farm bad: .*throttling for ([0-9.]+) s", self.fd.log())]
        self.assertEqual(delays, [1.0 * 2 ** i for i in range(len(delays))], delays)
        self.assertGreaterEqual(len(delays), 2, delays)
        # The operator ends the throttle: spawning resumes at once (next tick).
        spawned = f["spawned"]
        r = self.fd.ctl("throttle-reset", "bad")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.fd.wait_log(r"farm bad: throttle reset by operator", 3)
        wait_until(lambda: self.farm("bad")["spawned"] > spawned, 2.5,
                   what="a spawn after throttle-reset")
        r = self.fd.ctl("throttle-reset", "nosuchfarm")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("nosuchfarm", r.stderr)

    def test_05b_crash_after_work_is_not_throttled(self):
        port = free_port()
        self.fd.write_config([echo_farm("good", port, process_limit=3, process_min_avail=1,
                                        throttle_delay="1s")])
        # Under AddressSanitizer the SIGSEGV we send must kill, not be
        # turned into a report and exit status 1.
        self.fd.extra_env = {"ASAN_OPTIONS": "handle_segv=0"}
        self.fd.start()
        self.wait_farm("good", total=1, available=1)
        with Client(port) as c:
            pid = self.echo_pid(c)
        wait_until(lambda: self.farm("good")["served"] >= 1
                   and self.farm("good")["available"] >= 1, 5, what="served 1")
        os.kill(pid, signal.SIGSEGV)
        self.fd.wait_log(r"farm good: pid %d killed by signal 11" % pid, 5)
        wait_until(lambda: not alive(pid), 5)
        # Replaced: a new connection works, in another child.
        with Client(port) as c:
            pid2 = self.echo_pid(c)
            self.assertNotEqual(pid2, pid)
            self.assertEqual(c.ask("after crash"), "after crash")
        f = self.farm("good")
        self.assertEqual(f["throttled_until"], 0, f)
        self.assertEqual(f["crashed"], 1, f)
        self.assertNotRegex(self.fd.log(), r"farm good: .*throttling")

    # ------------------------------------------------------------------
    # 6. bad status reports, silent children
    # ------------------------------------------------------------------
    def test_06_bad_status_reports(self):
        script = self.fd.write_script("rogue.py", ROGUE_SCRIPT)
        ports = {m: free_port() for m in ("good", "wrongpid", "wronggen", "garbage", "silent")}

        def rogue(mode, **kw):
            p = dict(listen="inet:127.0.0.1:%d" % ports[mode], program=farmlib.PYTHON,
                     args="%s %s" % (script, mode), process_limit=1, client_limit=1)
            p.update(kw)
            return farm_section("r_" + mode, **p)

        self.fd.write_config([
            rogue("good", process_min_avail=1),
            rogue("wrongpid", process_min_avail=1),
            rogue("wronggen", process_min_avail=1),
            rogue("garbage", process_min_avail=1),
            rogue("silent", process_min_avail=0),
        ], extra_globals={"startup_timeout": "2s"})
        self.fd.start()
        # The silent one is started by a connection (counted available from birth).
        self.assertTrue(can_connect(ports["silent"]))
        self.wait_farm("r_silent", spawned=1)

        m = self.fd.wait_log(r"farm r_wrongpid: status report for pid (\d+) generation (\d+) "
                             r"on the channel of pid (\d+) generation (\d+): ignored", 5)
        self.assertNotEqual(m.group(1), m.group(3))
        self.assertEqual(m.group(2), m.group(4))
        m = self.fd.wait_log(r"farm r_wronggen: status report for pid (\d+) generation (\d+) "
                             r"on the channel of pid (\d+) generation (\d+): ignored", 5)
        self.assertEqual(m.group(1), m.group(3))
        self.assertNotEqual(m.group(2), m.group(4))
        self.fd.wait_log(r"farm r_garbage: pid \d+: status channel: \S", 5)
        self.assertIsNotNone(self.fd.try_status(), "farmd does not answer after garbage")

        # Never reported (validly): dropped after startup_timeout.
        m = self.fd.wait_log(r"farm r_silent: pid (\d+) sent no status within 2 s", 6)
        silent_pid = int(m.group(1))
        wait_until(lambda: not alive(silent_pid), 5, what="silent child killed")
        self.wait_farm("r_silent", total=0, available=0)
        for mode in ("wrongpid", "wronggen", "garbage"):
            self.fd.wait_log(r"farm r_%s: pid \d+ sent no status within 2 s" % mode, 6)
        # The well-behaved one (same encoding) is counted and kept.
        log = self.fd.log()
        self.assertNotRegex(log, r"farm r_good: .*(ignored|sent no status|status channel)")
        f = self.farm("r_good")
        self.assertEqual((f["total"], f["available"], f["spawned"]), (1, 1, 1), f)
        self.assertTrue(self.fd.running())
        self.assertIsNotNone(self.fd.try_status())

    # ------------------------------------------------------------------
    # 7. reload (zfarmctl reload and SIGHUP)
    # ------------------------------------------------------------------
    def test_07_reload(self):
        fd = self.fd
        P, Q, R = free_port(), free_port(), free_port()
        v1 = [echo_farm("echo", P, process_limit=3, process_min_avail=1),
              echo_farm("gone", Q, process_limit=2, process_min_avail=1)]
        fd.write_config(v1)
        fd.start()
        self.wait_farm("echo", total=1, available=1)
        self.wait_farm("gone", total=1, available=1)
        g1 = fd.status()["generation"]
        gone_pid = int(ask_once(Q, "PID"))

        slow = Client(P)
        old_pid = self.echo_pid(slow)
        slow.send("SLOW 2500")

        stats = {"ok": 0, "refused": 0, "errors": []}
        stop = threading.Event()

        def loop():
            i = 0
            while not (stop.is_set() and i >= 200) and i < 5000:
                text = "loop %d" % i
                i += 1
                try:
                    got = ask_once(P, text)
                    if got == text:
                        stats["ok"] += 1
                    else:
                        stats["errors"].append("%s -> %r" % (text, got))
                except ConnectionRefusedError:
                    stats["refused"] += 1
                except OSError as e:
                    stats["errors"].append("%s: %s" % (text, e))
        t = threading.Thread(target=loop)
        t.start()
        try:
            wait_until(lambda: stats["ok"] + stats["refused"] + len(stats["errors"]) >= 20, 10,
                       what="client loop running")
            v2 = [echo_farm("echo", P, process_limit=5, process_min_avail=1),
                  echo_farm("new", R, process_limit=2, process_min_avail=1)]
            fd.write_config(v2)
            r = fd.ctl("reload")
            self.assertEqual(r.returncode, 0, r.stderr)
        finally:
            stop.set()
            t.join(60)
        self.assertFalse(t.is_alive())
        self.assertEqual(stats["refused"], 0, stats)
        self.assertEqual(stats["errors"], [], stats)
        self.assertGreaterEqual(stats["ok"], 200, stats)

        st = fd.status()
        g2 = st["generation"]
        self.assertGreater(g2, g1)
        self.assertEqual(sorted(f["name"] for f in st["farms"]), ["echo", "new"])
        self.assertEqual(self.farm("echo")["limit"], 5)
        fd.wait_log(r"reloaded: generation %d" % g2, 3)
        # The old child finishes its session, then goes.
        self.assertEqual(slow.readline(), "OK")
        slow.close()
        wait_until(lambda: not alive(old_pid), 5, what="old echo child gone")
        # The removed farm's child got SIGTERM and went; its port is closed.
        wait_until(lambda: not alive(gone_pid), 5, what="removed farm's child gone")
        wait_until(lambda: not can_connect(Q), 5, what="removed farm's port closed")
        # The new farm runs.
        self.assertEqual(ask_once(R, "new farm"), "new farm")
        self.assertNotEqual(int(ask_once(P, "PID")), old_pid)

        # Asking made a child busy, so farmd may have started a second one
        # (process_min_avail=1): wait until the farm is quiet, then the
        # children of "new" are exactly those the log says started and not
        # exited.
        wait_until(lambda: (lambda f: f and f["available"] == f["total"])(fd.farm("new")),
                   5, what="farm new idle")
        log = fd.log()
        new_pids = (set(int(p) for p in re.findall(r"farm new: spawned pid (\d+)", log))
                    - set(int(p) for p in re.findall(r"farm new: pid (\d+) exited", log)))
        self.assertTrue(new_pids)
        spawned_before = log.count("farm new: spawned pid")
        # SIGHUP does the same; the unchanged farm "new" keeps its children.
        v3 = [echo_farm("echo", P, process_limit=4, process_min_avail=1),
              echo_farm("new", R, process_limit=2, process_min_avail=1)]
        text = fd.write_config(v3)
        os.kill(fd.pid, signal.SIGHUP)
        fd.wait_log(r"reloaded: generation %d" % (g2 + 1), 5)
        self.assertEqual(self.farm("echo")["limit"], 4)
        self.assertEqual(fd.status()["generation"], g2 + 1)
        self.assertEqual(fd.log().count("farm new: spawned pid"), spawned_before)
        for p in new_pids:
            self.assertTrue(alive(p), "farm new child %d gone after reload" % p)
        self.assertIn(int(ask_once(R, "PID")), new_pids)

        # A broken config: refused with file:line, the running farms stay.
        bad_line = text.count("\n") + 1
        fd.write_config(None, raw=text + "this is not valid\n")
        where = "%s:%d" % (os.path.basename(fd.conf), bad_line)
        # zfarmctl finding farmd without reading the broken file: farmd refuses.
        r = fd.ctl("reload", by_dir=True)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(where, r.stderr)
        fd.wait_log(r"reload failed, keeping the running configuration: .*%s" % re.escape(where),
                    3)
        # zfarmctl -c with the broken file: fails too, naming file:line.
        r = fd.ctl("reload")
        self.assertIn(r.returncode, (1, 2), r.stderr)
        self.assertIn(where, r.stderr)
        # SIGHUP with the broken config.
        n = fd.log_count(r"reload failed, keeping the running configuration")
        os.kill(fd.pid, signal.SIGHUP)
        fd.wait_log(r"reload failed, keeping the running configuration", 5, count=n + 1)
        self.assertTrue(fd.running())
        st = fd.ctl("status", "--json", by_dir=True)
        self.assertEqual(st.returncode, 0, st.stderr)
        st = json.loads(st.stdout)
        self.assertEqual(st["generation"], g2 + 1)
        self.assertEqual(sorted(f["name"] for f in st["farms"]), ["echo", "new"])
        self.assertEqual(ask_once(P, "still echo"), "still echo")
        self.assertEqual(ask_once(R, "still new"), "still new")
        fd.write_config(v3)  # so tearDown's zfarmctl can read it

    def test_07b_reload_section_parameters(self):
        """A reload restarts a farm when a service parameter in its own
        section changed (its children read it at start), and every farm
        when a [channel] section changed; an unchanged one keeps its
        children."""
        fd = self.fd
        P, Q = free_port(), free_port()
        chan = "[channel relay]\ndestination_concurrency = %d\n"

        def v(level, conc):
            return [echo_farm("echo", P, process_limit=2, process_min_avail=1,
                              log_level=level),
                    echo_farm("other", Q, process_limit=2, process_min_avail=1),
                    chan % conc]
        fd.write_config(v("info", 5))
        fd.start()
        self.wait_farm("echo", total=1, available=1)
        self.wait_farm("other", total=1, available=1)
        echo1, other1 = int(ask_once(P, "PID")), int(ask_once(Q, "PID"))
        g = fd.status()["generation"]

        fd.write_config(v("warn", 5))
        self.assertEqual(fd.ctl("reload").returncode, 0)
        fd.wait_log(r"reloaded: generation %d" % (g + 1), 5)
        wait_until(lambda: not alive(echo1), 5, what="the echo child of the old section gone")
        self.assertNotEqual(int(ask_once(P, "PID")), echo1)
        self.assertTrue(alive(other1), "farm other restarted, its section did not change")
        self.assertEqual(int(ask_once(Q, "PID")), other1)

        fd.write_config(v("warn", 7))
        self.assertEqual(fd.ctl("reload").returncode, 0)
        fd.wait_log(r"reloaded: generation %d" % (g + 2), 5)
        wait_until(lambda: not alive(other1), 5, what="farm other restarted after [channel]")

    def test_07d_ignored_section_parameter_warned(self):
        """A global parameter in the [farm] section of a program that reads
        globals only (all but smtpserver and pipe; log_level is read by
        every farm child) is warned about, naming file:line and the names."""
        fd = self.fd
        P = free_port()
        fd.write_config([echo_farm("echo", P, process_limit=1, log_level="info",
                                   myhostname="x.example", relayhost="[192.0.2.1]")])
        fd.start()
        fd.wait_log(r"\[farm echo\] sets myhostname, relayhost, which its program reads "
                    r"from the global settings only: no effect here", 5)
        self.assertNotIn("sets log_level", fd.log())

    def test_07e_reload_start_after(self):
        """Reload and start_after: a farm added while the once job's first
        run goes on waits for it; one added after it starts at once (the
        kept once farm is not run again); a start_after naming a farm that
        is not once is refused, the running configuration stays."""
        fd = self.fd
        P, Q, R = free_port(), free_port(), free_port()
        script = fd.write_script("once.py", ONCE_SCRIPT)
        marker = os.path.join(fd.tmp, "once.done")
        once_prepare(marker)
        init = farm_section("init", kind="once", program=farmlib.PYTHON,
                            args="%s %s" % (script, marker))
        free = echo_farm("free", P, process_min_avail=1)
        fd.write_config([init, free])
        fd.start()
        self.wait_farm("init", total=1)
        self.wait_farm("free", total=1, available=1)

        # 1. added while the first run goes on: waits for it
        late = echo_farm("late", Q, process_min_avail=1, start_after="init")
        fd.write_config([init, free, late])
        os.kill(fd.pid, signal.SIGHUP)
        fd.wait_log(r"reloaded: generation 2", 5)
        fd.wait_log(r"farms waiting for the first run of a once job: late \(after init\)", 3)
        self.assertEqual(self.farm("late")["spawned"], 0, "farm late started before init ended")
        self.assertEqual(self.farm("init")["spawned"], 1)
        once_release(marker)
        self.assertEqual(ask_once(Q, "late"), "late")
        fd.wait_log(r"farms started: late \(after init\); generation 2", 3)
        self.wait_farm("init", total=0, spawned=1)

        # 2. added after the first run: starts at once; init does not run again
        later = echo_farm("later", R, process_min_avail=1, start_after="init")
        fd.write_config([init, free, late, later])
        r = fd.ctl("reload")
        self.assertEqual(r.returncode, 0, r.stderr)
        fd.wait_log(r"farms started: later \(after init\); generation 3", 3)
        self.assertEqual(ask_once(R, "later"), "later")
        self.assertEqual(self.farm("init")["spawned"], 1, "the kept once farm ran again")

        # 3. refused: start_after naming a farm that is not once
        bad = fd.write_config([init, free, late, later,
                               echo_farm("wrong", free_port(), start_after="free")])
        r = fd.ctl("reload")
        self.assertEqual(r.returncode, 1, r.stderr)
        where = "%s:%d" % (os.path.basename(fd.conf), bad.count("\n"))
        self.assertIn("%s: farm wrong: start_after: farm free is of kind farm, not once" % where,
                      r.stderr)
        self.assertEqual(fd.status()["generation"], 3)
        self.assertEqual(ask_once(R, "still later"), "still later")
        fd.write_config([init, free, late, later])  # so tearDown's zfarmctl can read it

    def test_07c_failed_reload_keeps_serving(self):
        """After a refused reload the running configuration stays in force,
        also for children started later (they must not read the broken file
        and die at once)."""
        port = free_port()
        text = self.fd.write_config([echo_farm("echo", port, process_min_avail=1)])
        self.fd.start()
        self.wait_farm("echo", total=1, available=1)
        pid = int(ask_once(port, "PID"))
        self.fd.write_config(None, raw=text + "this is not valid\n")
        os.kill(self.fd.pid, signal.SIGHUP)
        self.fd.wait_log(r"reload failed, keeping the running configuration", 5)
        os.kill(pid, signal.SIGTERM)     # its successor starts under the old config
        wait_until(lambda: not alive(pid), 5)
        try:
            try:
                got = ask_once(port, "after failed reload", timeout=5)
            except OSError as e:
                got = "no answer (%s)" % e
            self.assertEqual(got, "after failed reload",
                             "the farm stopped serving after a refused reload")
        finally:
            self.fd.write_config(None, raw=text)
        self.assertNotRegex(self.fd.log(), r"farm echo: .*throttling")

    # ------------------------------------------------------------------
    # 8. stopping: SIGTERM, zfarmctl stop, kill -9 and restart
    # ------------------------------------------------------------------
    def _stop_setup(self):
        port = free_port()
        self.fd.write_config([echo_farm(
            "echo", listen="inet:127.0.0.1:%d, unix:public/echo" % port, process_limit=4,
            process_min_avail=2)])
        self.fd.start()
        self.wait_farm("echo", total=2, available=2)
        sock = os.path.join(self.fd.run, "public", "echo")
        with Client(path=sock) as c:
            self.assertEqual(c.ask("unix"), "unix")
        return port, sock

    def _assert_stopped(self, kids, sock):
        for p in kids:
            wait_until(lambda: not alive(p), 3, what="child %d gone" % p)
        self.assertFalse(os.path.exists(os.path.join(self.fd.run, "farmd.pid")),
                         "pid file left")
        self.assertFalse(os.path.exists(sock), "listen socket file left")
        self.assertFalse(os.path.exists(os.path.join(self.fd.run, "private", "control")),
                         "control socket left")

    def test_08a_sigterm(self):
        port, sock = self._stop_setup()
        # One child is stuck in a long request: killed at the end of stop_grace.
        stuck = Client(port)
        stuck_pid = self.echo_pid(stuck)
        stuck.send("SLOW 10000")
        wait_until(lambda: len(self.fd.children()) >= 3, 5)
        kids = self.fd.children()
        t0 = time.monotonic()
        self.fd.proc.send_signal(signal.SIGTERM)
        rc = self.fd.proc.wait(10)
        elapsed = time.monotonic() - t0
        stuck.close()
        self.assertEqual(rc, 0, self.fd.log())
        self.assertLess(elapsed, 2 + 1.5, "stop_grace is 2 s")
        self.assertIn(stuck_pid, kids)
        self.assertRegex(self.fd.log(), r"farm echo: pid %d still running after the grace "
                                        r"period: killed" % stuck_pid)
        self._assert_stopped(kids, sock)
        self.assertFalse(can_connect(port))

    def test_08b_zfarmctl_stop(self):
        port, sock = self._stop_setup()
        slow = Client(port)
        self.echo_pid(slow)
        slow.send("SLOW 600")
        kids = self.fd.children()
        t0 = time.monotonic()
        r = self.fd.ctl("stop")
        self.assertEqual(r.returncode, 0, r.stderr)
        # The session in progress is finished, not cut.
        self.assertEqual(slow.readline(), "OK")
        slow.close()
        rc = self.fd.proc.wait(10)
        self.assertEqual(rc, 0)
        self.assertLess(time.monotonic() - t0, 2.0, "should not need the grace period")
        self.assertNotRegex(self.fd.log(), r"still running after the grace period")
        self._assert_stopped(kids, sock)
        self.assertEqual(self.fd.ctl("status").returncode, 3)

    def test_08c_kill9_and_restart(self):
        port, sock = self._stop_setup()
        slow = Client(port)
        old_pid = self.echo_pid(slow)
        slow.send("SLOW 1500")
        wait_until(lambda: len(self.fd.children()) >= 3, 5)
        old_kids = self.fd.children()
        old = self.fd.proc
        old.kill()
        old.wait(5)
        # A new farmd starts at once on the same run directory and ports.
        t0 = time.monotonic()
        self.fd.start(timeout=5)
        self.assertLess(time.monotonic() - t0, 3)
        self.assertNotEqual(self.fd.pid, old.pid)
        pid = int(ask_once(port, "PID"))
        self.assertNotIn(pid, old_kids)
        with Client(path=sock) as c:
            self.assertNotIn(self.echo_pid(c), old_kids)
        # The orphans finish their session (the client gets its answer) and go.
        self.assertEqual(slow.readline(), "OK")
        slow.close()
        for p in old_kids:
            wait_until(lambda: not alive(p), 5, what="old child %d gone" % p)
        self.assertIn(old_pid, old_kids)

    # ------------------------------------------------------------------
    # 9. pid file lock
    # ------------------------------------------------------------------
    def test_09_pid_file_lock(self):
        port = free_port()
        self.fd.write_config([echo_farm("echo", port, process_min_avail=1)])
        self.fd.start()
        self.wait_farm("echo", total=1, available=1)
        try:
            r = subprocess.run([farmlib.FARMD, "-f", "-c", self.fd.conf],
                               capture_output=True, text=True, timeout=10)
        except subprocess.TimeoutExpired:
            self.fail("a second farmd on the same run directory did not exit")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("farmd.pid", r.stderr)
        self.assertIn("already runs", r.stderr)
        self.assertIn(str(self.fd.pid), r.stderr)
        # The first one is untouched.
        self.assertTrue(self.fd.running())
        with open(os.path.join(self.fd.run, "farmd.pid")) as f:
            self.assertEqual(int(f.read().strip()), self.fd.pid)
        self.assertEqual(self.fd.status()["pid"], self.fd.pid)
        self.assertEqual(ask_once(port, "first"), "first")

    # ------------------------------------------------------------------
    # other behaviour
    # ------------------------------------------------------------------
    def test_10_bad_config_at_start(self):
        port = free_port()
        good = self.fd.config_text([echo_farm("echo", port)])
        once = farm_section("init", kind="once", program=farmlib.PYTHON)
        name = os.path.basename(self.fd.conf)
        # what: (config text, what the message says after FILE:LINE: )
        cases = {
            "not a parameter": (good + "this is not valid\n", ""),
            "bad number": (good + "process_limit = lots\n", ""),
            "unknown parameter": (good + "procses_limit = 3\n",
                                  'unknown farm parameter "procses_limit"'),
            "min_avail above limit": (good + "process_limit = 2\nprocess_min_avail = 3\n",
                                      "farm echo: process_min_avail 3 above process_limit 2"),
            "start_after an unknown farm": (good + "start_after = init\n",
                                            'farm echo: start_after: no farm named "init"'),
            "start_after a farm not once": (
                self.fd.config_text([once, echo_farm("echo", port)]) +
                "start_after = init, echo\n",
                "farm echo: start_after: farm echo is of kind farm, not once"),
            "start_after a single farm": (
                self.fd.config_text([farm_section("init", kind="single", program="echo_farm"),
                                     echo_farm("echo", port)]) + "start_after = init\n",
                "farm echo: start_after: farm init is of kind single, not once"),
            "start_after on a once farm": (
                good + once + "start_after = init\n",
                "farm init: start_after on a farm of kind once: once farms run at start and "
                "wait for nothing"),
        }
        for what, (text, message) in cases.items():
            with self.subTest(what):
                self.fd.write_config(None, raw=text)
                # The error is on the last line (the min_avail case: that line too).
                line = text.count("\n")
                r = subprocess.run([farmlib.FARMD, "-f", "-c", self.fd.conf],
                                   capture_output=True, text=True, timeout=10)
                self.assertNotEqual(r.returncode, 0, r.stderr)
                self.assertIn("%s:%d: %s" % (name, line, message), r.stderr)
                self.assertFalse(os.path.exists(os.path.join(self.fd.run, "farmd.pid")))

    def test_11_zfarmctl_not_running(self):
        self.fd.write_config([echo_farm("echo", free_port())])
        r = self.fd.ctl("status")
        self.assertEqual(r.returncode, 3, r.stderr)
        r = self.fd.ctl("status", "--json")
        self.assertEqual(r.returncode, 3, r.stderr)
        r = self.fd.ctl("reload")
        self.assertEqual(r.returncode, 3, r.stderr)
        r = self.fd.ctl("frobnicate")
        self.assertEqual(r.returncode, 2, r.stderr)

    def test_12_start_after_waits_for_the_once_job(self):
        """A farm with start_after = the once farm gets no child, no prefork
        and no connection while the once job runs, however many ticks go
        by; a farm without start_after runs meanwhile.  The held farm
        starts (and answers the connection waiting in its backlog) when the
        job ends."""
        free_port_ = free_port()
        script = self.fd.write_script("once.py", ONCE_SCRIPT)
        marker = os.path.join(self.fd.tmp, "once.done")
        once_prepare(marker)
        held_sock = os.path.join(self.fd.run, "public", "held")
        self.fd.write_config([
            farm_section("init", kind="once", program=farmlib.PYTHON,
                         args="%s %s" % (script, marker)),
            # wakeup = 1s: each "wakeup received" line is one of farmd's
            # one-second ticks that went by (the tick sends wakeups).
            echo_farm("free", free_port_, process_min_avail=1, process_limit=2, wakeup="1s"),
            echo_farm("held", listen="unix:public/held", process_min_avail=1, process_limit=2,
                      start_after="init"),
        ])
        self.fd.start()
        # The once job runs until released; the farm without start_after
        # gets its child (prefork) meanwhile.
        self.wait_farm("init", total=1)
        self.wait_farm("free", timeout=5, total=1, available=1)
        st = self.fd.status()
        self.assertEqual({f["name"]: f["kind"] for f in st["farms"]},
                         {"init": "once", "free": "farm", "held": "farm"})
        self.fd.wait_log(r"farms waiting for the first run of a once job: held \(after init\)",
                         3)
        # A client of the held farm: its connect succeeds into the backlog.
        c = Client(path=held_sock)
        try:
            c.send("PID")
            # Two more ticks go by (two more wakeups of the free farm).
            ticks = self.fd.log_count(r"wakeup received, farm=free")
            wait_until(lambda: self.fd.log_count(r"wakeup received, farm=free") >= ticks + 2,
                       8, what="two more ticks of farmd (wakeups of farm free)")
            held = self.farm("held")
            self.assertEqual((held["total"], held["spawned"]), (0, 0),
                             "farm held started while the once job runs: %s" % held)
            self.assertEqual(held["waiting_for"], ["init"])
            self.assertEqual(self.farm("free")["waiting_for"], [])
            table = self.fd.ctl("status").stdout
            self.assertIn("held: not started, waits for the first run of init", table)
            self.assertFalse(os.path.exists(marker))
            r, _, _ = select.select([c.sock], [], [], 0)
            self.assertEqual(r, [], "farm held answered while the once job runs")
            self.assertNotRegex(self.fd.log(), r"farm held: spawned")
            # Release the job: the held farm starts and answers the client.
            once_release(marker)
            pid = int(c.readline())
        finally:
            c.close()
        self.assertTrue(os.path.exists(marker), "answered before the once job finished")
        born = farmlib.proc_start_time(pid)
        self.assertIsNotNone(born)
        # proc_start_time is good to a clock tick or two
        self.assertGreaterEqual(born + 0.05, os.stat(marker).st_mtime,
                                "held child born before the once job finished")
        self.fd.wait_log(r"farms started: held \(after init\); generation 1", 3)
        self.wait_farm("init", total=0, spawned=1)
        self.assertEqual(self.farm("held")["waiting_for"], [])
        self.assertNotIn("waits for", self.fd.ctl("status").stdout)
        self.assertNotRegex(self.fd.log(), r"once job failed")

    def test_13_max_processtime(self):
        port = free_port()
        self.fd.write_config([echo_farm("echo", port, process_limit=2, process_min_avail=0,
                                        max_processtime="1s")])
        self.fd.start()
        c = Client(port)
        try:
            pid = self.echo_pid(c)
            t0 = time.monotonic()
            c.send("SLOW 5000")
            self.fd.wait_log(r"farm echo: pid %d busy on one request for more than 1 s "
                             r"\(max_processtime\): killed" % pid, 4)
            self.assertIsNone(c.readline(), "the stuck request was answered")
            self.assertLess(time.monotonic() - t0, 4.0)
        finally:
            c.close()
        wait_until(lambda: not alive(pid), 3)
        self.assertEqual(ask_once(port, "next"), "next")
        self.assertEqual(self.farm("echo")["throttled_until"], 0)

    def test_13b_max_processtime_spares_continuous_work(self):
        # One connection is one request; they overlap so the child is busy
        # for 3 s without a pause, but requests keep finishing: not stuck.
        port = free_port()
        self.fd.write_config([echo_farm("echo", port, process_limit=1, process_min_avail=1,
                                        client_limit=3, max_processtime="1s")])
        self.fd.start()
        self.wait_farm("echo", total=1, available=1)
        prev = Client(port)
        try:
            pid = self.echo_pid(prev)
            n = 0
            t_end = time.monotonic() + 3.0
            while time.monotonic() < t_end:
                c = Client(port)
                self.assertEqual(self.echo_pid(c), pid, "child replaced after %d requests" % n)
                prev.close()
                prev = c
                n += 1
                observe(0.01)
        finally:
            prev.close()
        self.assertTrue(alive(pid))
        self.assertNotRegex(self.fd.log(), r"\(max_processtime\): killed")
        f = self.farm("echo")
        self.assertEqual((f["spawned"], f["crashed"]), (1, 0), f)

    def test_13c_max_processtime_explicit_requests(self):
        # Explicit requests: one stuck beside quick ones on another
        # connection is spared while those finish, killed once they stop.
        port = free_port()
        self.fd.write_config([echo_farm("echo", port, args="--explicit-requests",
                                        process_limit=1, process_min_avail=1,
                                        client_limit=2, max_processtime="1s")])
        self.fd.start()
        self.wait_farm("echo", total=1, available=1)
        a, b = Client(port), Client(port)
        try:
            pid = self.echo_pid(a)
            self.assertEqual(self.echo_pid(b), pid)
            a.send("SLOW 10000")
            t_end = time.monotonic() + 2.5
            while time.monotonic() < t_end:
                self.assertEqual(b.ask("quick"), "quick")
                observe(0.01)
            self.assertTrue(alive(pid))
            self.assertNotRegex(self.fd.log(), r"\(max_processtime\): killed")
            t1 = time.monotonic()
            # b stays open but idle: only the stuck request is left.
            self.fd.wait_log(r"farm echo: pid %d busy on one request for more than 1 s "
                             r"\(max_processtime\): killed" % pid, 5)
            took = time.monotonic() - t1
            self.assertLess(took, 4.0)
            self.assertIsNone(a.readline(), "the stuck request was answered")
        finally:
            a.close()
            b.close()
        wait_until(lambda: not alive(pid), 3)
        self.assertEqual(ask_once(port, "next"), "next")

    def test_14_max_requests(self):
        port = free_port()
        self.fd.write_config([echo_farm("echo", port, process_limit=3, process_min_avail=0,
                                        client_limit=1, max_requests=2)])
        self.fd.start()
        p1 = int(ask_once(port, "PID"))
        wait_until(lambda: self.farm("echo")["served"] >= 1
                   and self.farm("echo")["available"] == 1, 5)
        p2 = int(ask_once(port, "PID"))
        self.assertEqual(p1, p2)
        wait_until(lambda: not alive(p1), 5, what="child exits after 2 requests")
        p3 = int(ask_once(port, "PID"))
        self.assertNotEqual(p3, p1)
        f = self.farm("echo")
        self.assertEqual(f["spawned"], 2, f)
        self.assertEqual(f["throttled_until"], 0, f)

    def test_15_load(self):
        port = free_port()
        self.fd.write_config([echo_farm("echo", port, process_limit=10, process_min_avail=2,
                                        client_limit=1)])
        self.fd.verbose = False
        self.fd.start()
        self.wait_farm("echo", total=2, available=2)
        elapsed, ok, refused, errors = farmlib.load(port, 2000, 50)
        sys.stderr.write("\n    load: 2000 connections, 50 clients, process_limit 10: "
                         "%.2f s (%.0f conn/s) ... " % (elapsed, 2000 / elapsed))
        self.assertEqual(refused, 0)
        self.assertEqual(errors[:5], [])
        self.assertEqual(ok, 2000)
        # A child reports a request done after the client has its answer:
        # the last reports may still be on their way.
        try:
            wait_until(lambda: (self.fd.farm("echo") or {}).get("served", 0) >= 2000, 5,
                       what="2000 requests counted")
        except farmlib.Timeout:
            pass
        f = self.farm("echo")
        self.assertLessEqual(f["total"], 10, f)
        self.assertLessEqual(f["spawned"], 10, f)
        self.assertGreaterEqual(f["served"], 2000, f)

    def test_16_child_fds_and_environment(self):
        """An exec'd farm program gets exactly 0-2, its listen sockets from 3
        and the status socket after them: nothing else of farmd's (a
        program it runs in turn would inherit any extra fd)."""
        script = self.fd.write_script("fds.py", FDS_SCRIPT)
        out = os.path.join(self.fd.tmp, "fds.json")
        p1, p2 = free_port(), free_port()
        self.fd.write_config([
            echo_farm("other", p1, process_min_avail=1),
            farm_section("probe", listen="inet:127.0.0.1:%d, web=unix:public/probe" % p2,
                         program=farmlib.PYTHON, args="%s %s" % (script, out),
                         process_min_avail=1, process_limit=1),
        ])
        self.fd.start()
        wait_until(lambda: os.path.exists(out), 5, what="probe's report")
        with open(out) as f:
            got = json.load(f)
        fds = {int(k): v for k, v in got["fds"].items()}
        env = got["env"]
        self.assertEqual(env.get("LISTEN_FDS"), "2", env)
        self.assertEqual(env.get("LISTEN_FDNAMES"), "probe:web", env)
        self.assertEqual(env.get("LISTEN_PID"), str(got["pid"]), env)
        self.assertEqual(env.get("ZFARM_STATUS_FD"), "5", env)
        self.assertEqual(env.get("ZFARM_FARM"), "probe", env)
        # Children read farmd's snapshot of the config it runs, the same
        # text as the file (a file broken later never reaches them).
        snap = os.path.join(self.fd.run, "zfarm.conf.running")
        self.assertEqual(env.get("ZFARM_CONFIG"), snap, env)
        with open(snap) as a, open(self.fd.conf) as b:
            self.assertEqual(a.read(), b.read())
        self.assertEqual(env.get("ZFARM_GENERATION"), str(self.fd.status()["generation"]), env)
        self.assertEqual(sorted(fds), [0, 1, 2, 3, 4, 5],
                         "fds of the exec'd child: %s" % fds)
        self.assertEqual(len({fds[3], fds[4], fds[5]}), 3, fds)

    def test_17a_single_never_two_on_respawn(self):
        """kind = single keeps exactly one process: its successor starts
        only once the old one (draining a session) has exited."""
        port = free_port()
        self.fd.write_config([echo_farm("one", port, kind="single")])
        self.fd.start()
        self.wait_farm("one", total=1)
        c = Client(port)
        try:
            old = self.echo_pid(c)
            c.send("SLOW 1500")
            os.kill(old, signal.SIGTERM)   # drains: finishes the SLOW session
            overlap = self.watch_overlap(old)
            self.assertEqual(c.readline(), "OK")
        finally:
            c.close()
        self.assertEqual(overlap, set(), "a second process of single farm 'one' ran while "
                         "pid %d was still finishing" % old)
        self.wait_farm("one", total=1, spawned=2)
        self.assertNotEqual(int(ask_once(port, "PID")), old)

    def test_17b_single_never_two_on_reload(self):
        port = free_port()
        self.fd.write_config([echo_farm("one", port, kind="single")])
        self.fd.start()
        self.wait_farm("one", total=1)
        c = Client(port)
        try:
            old = self.echo_pid(c)
            c.send("SLOW 1500")
            self.fd.write_config([echo_farm("one", port, kind="single", args="-v")])
            r = self.fd.ctl("reload")
            self.assertEqual(r.returncode, 0, r.stderr)
            overlap = self.watch_overlap(old)
            self.assertEqual(c.readline(), "OK")
        finally:
            c.close()
        self.assertEqual(overlap, set(), "the new generation of single farm 'one' started "
                         "while the old process %d was still finishing" % old)
        wait_until(lambda: self.fd.farm("one")["total"] == 1, 5)
        self.assertNotEqual(int(ask_once(port, "PID")), old)

    def test_18_reload_removes_unix_socket_of_removed_farm(self):
        p1 = free_port()
        keep = echo_farm("keep", p1, process_min_avail=1)
        self.fd.write_config([keep, echo_farm("gone", listen="unix:public/gone",
                                                process_min_avail=1)])
        self.fd.start()
        path = os.path.join(self.fd.run, "public", "gone")
        self.wait_farm("gone", total=1, available=1)
        self.assertTrue(os.path.exists(path))
        self.fd.write_config([keep])
        r = self.fd.ctl("reload")
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_until(lambda: self.fd.children() and len(self.fd.children()) == 1, 5,
                   what="the removed farm's child gone")
        self.assertFalse(os.path.exists(path), "socket file of a removed farm left behind")

    def test_19_fd_limit_clamps_process_limit(self):
        """Seed 001: a hard fd limit too small for process_limit clamps it."""
        port = free_port()
        self.fd.write_config([echo_farm("big", port, process_limit=1000)])
        self.fd.rlimit_nofile = 128
        self.fd.start()
        f = self.farm("big")
        self.assertLess(f["limit"], 1000, f)
        self.assertGreaterEqual(f["limit"], 1, f)
        self.assertRegex(self.fd.log(), r"farm big: process_limit 1000 clamped to %d"
                         % f["limit"])
        self.assertEqual(ask_once(port, "clamped"), "clamped")

    def test_20_max_lifetime(self):
        port = free_port()
        self.fd.write_config([echo_farm("old", port, process_min_avail=1, process_limit=2,
                                        max_lifetime="1s")])
        self.fd.start()
        self.wait_farm("old", total=1, available=1)
        first = int(ask_once(port, "PID"))
        self.fd.wait_log(r"farm old: pid %d reached max_lifetime 1 s: draining" % first, 4)
        wait_until(lambda: not alive(first), 3)
        self.assertNotEqual(int(ask_once(port, "PID")), first)
        self.assertEqual(self.farm("old")["throttled_until"], 0)

    def test_21_wakeup(self):
        """wakeup = 1s: farmd pokes one child of the farm every second;
        a farm without it is never poked."""
        port, quiet = free_port(), free_port()
        self.fd.write_config([echo_farm("poked", port, process_min_avail=1, wakeup="1s"),
                              echo_farm("quiet", quiet, process_min_avail=1)])
        self.fd.start()
        self.wait_farm("poked", total=1, available=1)
        self.fd.wait_log(r"wakeup received, farm=poked", 4)
        wait_until(lambda: self.fd.log().count("wakeup received, farm=poked") >= 2, 4,
                   what="a second wakeup")
        self.assertNotIn("wakeup received, farm=quiet", self.fd.log())


# ---- runner: counts, prints "N passed, N failed", logs of failed tests ----

def main():
    farmlib.run_tests("farmd", lambda test: getattr(test, "farmd_log", ""))


if __name__ == "__main__":
    main()
