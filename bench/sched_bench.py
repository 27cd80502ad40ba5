#!/usr/bin/env python3
"""sched_bench - the scheduler with a big queue: take-in, dispatch rate, CPU, memory.

Not a test (tests/scheduler/test_sched_load.py is the `make check` version,
and imports SchedRun from here).  Issue 6 asks: after a restart with
100,000 queued messages, how soon does the scheduler feed transports, how
many dispatches per second does it make with an instant-ack transport, how
much CPU per message, and how much memory for 100k and 1M queued
recipients.

Per scenario and run: bench/qfill fills a fresh queue directory with routed
messages (the router's route records + routed marker, channel smtp), then
farmd starts with only two farms: the scheduler (kind single, listen
unix:private/scheduler, queue_directory = the filled queue) and
bench/ack_transport as the smtp channel's farm (kind single, listen
unix:private/smtp), which answers every DeliveryRequest at once, every
recipient delivered.  The scheduler takes the queue in at start
(schedd_recover), delivers, appends the ResultRecords (fdatasync'ed each)
and removes every message.  Measured, from the moment farmd is started:

  took-in s      when the "took in N queued message(s) in X s" log line was
                 seen (polled every 20 ms), and X, the scheduler's own figure
  1st dlv s      the ack transport's first DeliveryRequest (its
                 CLOCK_MONOTONIC time from $ZF_ACK_STATS, same clock as ours)
  all gone s     every message removed (files under QUEUE/msg/ counted)
  dlv/s, rcpt/s  deliveries and recipients the transport answered, divided
                 by (all gone - 1st dlv)
  CPU us/msg     the scheduler's utime+stime (/proc/PID/stat, sampled just
                 before stopping) per message
  HWM            the scheduler's VmHWM (peak RSS) at the end, and that minus
                 the VmHWM of a scheduler with an empty queue, per message
                 and per recipient

Scenarios: a) -n messages (100,000) x 1 recipient over 1,000 destinations;
b) the same messages x 10 recipients (1M recipients).  Each runs with
qmgr_message_active_limit above the message count (everything in memory:
the RSS figure) and with the default 20,000 (the rest waits in the backlog
list and is loaded as messages finish).  In b) a message's recipients share
one destination (one delivery of 10; qfill -g) unless --spread, which puts
each at a different destination (10 deliveries per message).

The queue lives under --queue-dir-base (default: a temporary directory in
/tmp, a real disk here); --fs disk,tmpfs runs both, tmpfs meaning /dev/shm.
On a disk the scheduler's fdatasync per ResultRecord append bounds the
dispatch rate; tmpfs shows the CPU-bound rate.  farmd's own directory and
log stay in /tmp.  The queue is warm in the page cache right after the
fill (a scheduler restart); --drop-caches drops the cache first (root), so
the take-in reads the disk as after a reboot.  --strace S attaches
strace -c to the scheduler for S seconds after the first delivery (it
slows the scheduler: use it for where the time goes, not for the rates).

    python3 bench/sched_bench.py [-n 100000] [-r 10] [--quick] [--fs disk,tmpfs]
        [--queue-dir-base DIR] [--scenarios a,b] [--limits big,default]
        [--spread] [--drop-caches] [--strace S] [--keep] [-v]

Binaries from $top_builddir (default the source tree): farmd/farmd,
scheduler/scheduler, bench/qfill, bench/ack_transport.  Python 3 stdlib.
"""

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.environ.get("top_srcdir") or os.path.join(HERE, ".."),
                                "tests", "farmd"))
import farmlib  # noqa: E402
import qspool  # noqa: E402

SCHEDULER = os.path.join(farmlib.TOP_BUILDDIR, "scheduler", "scheduler")
QFILL = os.path.join(farmlib.TOP_BUILDDIR, "bench", "qfill")
ACK_TRANSPORT = os.path.join(farmlib.TOP_BUILDDIR, "bench", "ack_transport")

DEFAULT_ACTIVE_LIMIT = 20000
DESTINATIONS = 1000
TOOK_IN_RE = re.compile(r"scheduler\[\d+\]: (?:\w+: )?took in (\d+) queued message\(s\) "
                        r"in ([0-9.]+) s \((\d+) waiting")

VERBOSE = False


def log(msg):
    if VERBOSE:
        print("# " + msg, file=sys.stderr, flush=True)


def binaries_missing():
    return [p for p in (farmlib.FARMD, SCHEDULER, QFILL, ACK_TRANSPORT)
            if not os.access(p, os.X_OK)]


# ---- machine and processes ----

def machine_info():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) // 1024
    except OSError:
        pass
    return "%s, %d CPUs, %d MiB RAM, Linux %s, Python %s" % (
        model, os.cpu_count() or 0, mem, platform.release(), platform.python_version())


def fs_type(path):
    """The filesystem type of path's mount (from /proc/self/mounts)."""
    best, kind = "", "?"
    path = os.path.realpath(path)
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1].replace("\\040", " ")
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) \
                        and len(mnt) >= len(best):
                    best, kind = mnt, parts[2]
    except OSError:
        pass
    return kind


def proc_cpu_seconds(pid):
    """utime + stime of pid in seconds, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status_kb(pid, key):
    """A "Key:  N kB" value of /proc/PID/status in kB, or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def count_messages(queue_dir):
    """Committed messages: slots and files under QUEUE/msg/XX/ (qspool)."""
    return qspool.Queue(queue_dir).count()


def read_stats(path):
    """The ack transport's stats file as a dict of floats, {} if none yet."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return {}
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            try:
                out[k] = float(v)
            except ValueError:
                pass
    return out


def fill(queue_dir, messages, recipients, destinations=DESTINATIONS, group=False,
         threads=8):
    """Run qfill; return its wall-clock seconds."""
    cmd = [QFILL, "-q", "-n", str(messages), "-r", str(recipients),
           "-d", str(destinations), "-j", str(threads)]
    if group:
        cmd.append("-g")
    cmd.append(queue_dir)
    log("fill: " + " ".join(cmd))
    t0 = time.monotonic()
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError("qfill exit %d: %s" % (r.returncode, r.stderr.strip()))
    return time.monotonic() - t0


class LogTail:
    """Reads a growing log file incrementally (the log of 1M deliveries is
    hundreds of MB: never read it whole while polling)."""

    def __init__(self, path):
        self.path = path
        self.off = 0
        self.partial = b""

    def lines(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.off)
                data = f.read(16 << 20)
        except FileNotFoundError:
            return []
        self.off += len(data)
        data = self.partial + data
        parts = data.split(b"\n")
        self.partial = parts.pop()
        return [p.decode("utf-8", "replace") for p in parts]


class SchedRun:
    """One farmd with the scheduler and the ack transport over queue_dir.

    start(), then wait_took_in(), wait_first_delivery(), wait_all_gone()
    (each records its time since start in self.r), sample(), cleanup()."""

    def __init__(self, queue_dir, messages, recipients, active_limit=None, tag="schedbench",
                 log_level="info"):
        self.queue_dir = queue_dir
        self.messages = messages
        self.recipients = recipients  # in all
        self.fd = farmlib.FarmdInstance(tag=tag, verbose=False)
        self.stats_path = os.path.join(self.fd.tmp, "ack.stats")
        self.fd.extra_env["ZF_ACK_STATS"] = self.stats_path
        g = {"queue_directory": queue_dir, "log_level": log_level,
             # A big queue may take longer to load than the default 30 s
             # farmd gives a child to report.
             "startup_timeout": "600s"}
        if active_limit:
            g["qmgr_message_active_limit"] = str(active_limit)
        self.fd.write_config([
            farmlib.farm_section("scheduler", kind="single", listen="unix:private/scheduler",
                                 program=SCHEDULER, client_limit=100),
            farmlib.farm_section("smtp", kind="single", listen="unix:private/smtp",
                                 program=ACK_TRANSPORT, client_limit=200, max_requests=0),
        ], g)
        self.tail = LogTail(self.fd.logpath)
        self.t0 = None
        self.pid = None
        self.r = {}

    def start(self):
        self.t0 = time.monotonic()
        self.fd.start(wait=False)

    def since(self):
        return time.monotonic() - self.t0

    def scheduler_pid(self):
        if self.pid is None and self.fd.running():
            for pid in farmlib.children_of(self.fd.pid):
                try:
                    with open("/proc/%d/cmdline" % pid, "rb") as f:
                        if f.read().split(b"\0")[0] == SCHEDULER.encode():
                            self.pid = pid
                except OSError:
                    pass
        return self.pid

    def check_alive(self):
        if not self.fd.running():
            raise AssertionError("farmd exited with %s; log tail:\n%s"
                                 % (self.fd.proc.returncode, self.log_tail()))

    def log_tail(self, n=40):
        return "\n".join(self.fd.log().splitlines()[-n:])

    def wait_took_in(self, timeout):
        def pred():
            self.check_alive()
            self.scheduler_pid()
            for line in self.tail.lines():
                m = TOOK_IN_RE.search(line)
                if m:
                    return m
            return None
        m = farmlib.wait_until(pred, timeout, what="the scheduler's took-in line")
        self.r["took_in_seen"] = self.since()
        self.r["took_in"] = int(m.group(1))
        self.r["took_in_s"] = float(m.group(2))
        self.r["backlog"] = int(m.group(3))
        pid = self.scheduler_pid()
        if pid:
            self.r["rss_after_take_in_kb"] = proc_status_kb(pid, "VmRSS")
        return m

    def wait_first_delivery(self, timeout):
        def pred():
            self.check_alive()
            st = read_stats(self.stats_path)
            return st if st.get("deliveries", 0) > 0 else None
        st = farmlib.wait_until(pred, timeout, what="the first DeliveryRequest")
        self.r["first_delivery"] = st["first_request_mono"] - self.t0
        return st

    def wait_all_gone(self, timeout, interval=0.1):
        """Until the transport saw every recipient and no message is left."""
        def delivered():
            self.check_alive()
            self.tail.lines()  # keep up, cheaply
            return read_stats(self.stats_path).get("recipients", 0) >= self.recipients
        deadline = time.monotonic() + timeout
        farmlib.wait_until(delivered, timeout, interval, what="every recipient delivered")
        left = max(0.001, deadline - time.monotonic())
        farmlib.wait_until(lambda: count_messages(self.queue_dir) == 0, left, interval,
                           what="every message removed")
        self.r["all_gone"] = self.since()
        return self.r["all_gone"]

    def sample(self):
        """CPU and memory of the scheduler, the transport's totals."""
        pid = self.scheduler_pid()
        if pid:
            self.r["cpu_s"] = proc_cpu_seconds(pid)
            self.r["hwm_kb"] = proc_status_kb(pid, "VmHWM")
        st = read_stats(self.stats_path)
        self.r["deliveries"] = int(st.get("deliveries", 0))
        self.r["recipients"] = int(st.get("recipients", 0))
        self.r["last_delivery"] = st.get("last_request_mono", self.t0) - self.t0
        return self.r

    def strace_summary(self, seconds):
        """strace -c -f of the scheduler for a measuring window (text)."""
        pid = self.scheduler_pid()
        if not pid or not shutil.which("strace"):
            return ""
        r = subprocess.run(["timeout", "-s", "INT", str(seconds), "strace", "-c", "-p",
                            str(pid)], capture_output=True, text=True)
        return r.stderr

    def cleanup(self, keep=False):
        self.fd.cleanup(keep=keep)


# ---- one measured run ----

def drop_caches():
    """Write dirty pages, then drop the page cache, dentries and inodes (root
    only): the scheduler then reads the queue from the disk, as after a
    reboot."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def run_one(base, messages, rcpt_per_msg, group, active_limit, keep, strace=0, cold=False):
    qdir = tempfile.mkdtemp(prefix="zfarm-schedq-", dir=base)
    res = {"n": messages, "r": rcpt_per_msg, "limit": active_limit or DEFAULT_ACTIVE_LIMIT,
           "fs": fs_type(qdir)}
    run = None
    try:
        res["fill_s"] = fill(qdir, messages, rcpt_per_msg, group=group)
        log("filled %s in %.1f s" % (qdir, res["fill_s"]))
        if cold:
            drop_caches()
        run = SchedRun(qdir, messages, messages * rcpt_per_msg, active_limit)
        run.start()
        run.wait_took_in(600)
        run.wait_first_delivery(600)
        if strace:
            res["strace"] = run.strace_summary(strace)
        run.wait_all_gone(3600)
        run.sample()
        res.update(run.r)
        log("run: %r" % (run.r,))
    except AssertionError as e:
        res["error"] = str(e)
        if run is not None:
            res["error"] += "\n" + run.log_tail()
    finally:
        if run is not None:
            run.cleanup(keep=keep)
        if keep:
            print("# kept %s" % qdir, file=sys.stderr)
        else:
            shutil.rmtree(qdir, ignore_errors=True)
    return res


def baseline_hwm(base):
    """VmHWM (kB) of a scheduler that took in an empty queue."""
    qdir = tempfile.mkdtemp(prefix="zfarm-schedq-", dir=base)
    run = SchedRun(qdir, 0, 0, None, tag="schedbase")
    try:
        run.start()
        run.wait_took_in(30)
        pid = run.scheduler_pid()
        return proc_status_kb(pid, "VmHWM") if pid else None
    finally:
        run.cleanup()
        shutil.rmtree(qdir, ignore_errors=True)


def fmt(v, spec):
    return "-" if v is None else spec % v


def row(name, res, base_kb):
    if "error" in res:
        return "| %s | %s | error: %s |" % (name, res["fs"], res["error"].splitlines()[0])
    n, rc = res["n"], res["n"] * res["r"]
    span = res["all_gone"] - res["first_delivery"]
    hwm = res.get("hwm_kb")
    per_msg = per_rcpt = None
    if hwm is not None and base_kb is not None and n:
        per_msg = (hwm - base_kb) * 1024 / n
        per_rcpt = (hwm - base_kb) * 1024 / rc
    return ("| %s | %s | %d | %d | %.1f | %.2f | %.3f (%d + %d) | %.2f | %.1f | %s | %s | %s "
            "| %s | %s | %s |" % (
                name, res["fs"], n, rc, res["fill_s"], res["took_in_seen"], res["took_in_s"],
                res["took_in"], res["backlog"], res["first_delivery"], res["all_gone"],
                fmt(res["deliveries"] / span if span > 0 else None, "%.0f"),
                fmt(rc / span if span > 0 else None, "%.0f"),
                fmt(res["cpu_s"] * 1e6 / n if res.get("cpu_s") is not None else None, "%.0f"),
                fmt(hwm / 1024 if hwm is not None else None, "%.1f"),
                fmt(per_msg, "%.0f"), fmt(per_rcpt, "%.0f")))


HEADER = ("| run | fs | msgs | rcpts | fill s | took-in seen s | took-in own s (in + backlog) "
          "| 1st dlv s | all gone s | dlv/s | rcpt/s | CPU us/msg | HWM MiB | B/msg | B/rcpt |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def main():
    global VERBOSE
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=100000, help="messages per scenario")
    ap.add_argument("-r", type=int, default=10, help="recipients per message in scenario b")
    ap.add_argument("--quick", action="store_true", help="10,000 messages (sanity run)")
    ap.add_argument("--fs", default="disk,tmpfs",
                    help="where the queue lives: disk (--queue-dir-base), tmpfs (/dev/shm)")
    ap.add_argument("--queue-dir-base", default=tempfile.gettempdir(),
                    help="directory for the disk runs' queues (default %(default)s)")
    ap.add_argument("--scenarios", default="a,b")
    ap.add_argument("--limits", default="big,default",
                    help="big: active limit above the message count; default: 20000")
    ap.add_argument("--spread", action="store_true",
                    help="b: each recipient at another destination (10 deliveries/message)")
    ap.add_argument("--strace", type=int, default=0, metavar="S",
                    help="strace -c the scheduler for S seconds after the first delivery")
    ap.add_argument("--drop-caches", action="store_true",
                    help="drop the page cache before each start (root): a cold take-in, as "
                    "after a reboot")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("-v", action="store_true", help="progress on stderr")
    a = ap.parse_args()
    VERBOSE = a.v
    missing = binaries_missing()
    if missing:
        sys.exit("not built: %s" % ", ".join(missing))
    n = 10000 if a.quick else a.n
    bases = []
    for fs in a.fs.split(","):
        if fs == "disk":
            bases.append(("disk", a.queue_dir_base))
        elif fs == "tmpfs":
            if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
                bases.append(("tmpfs", "/dev/shm"))
            else:
                print("# no writable /dev/shm: tmpfs runs skipped", file=sys.stderr)
        else:
            sys.exit("--fs: disk or tmpfs, not %r" % fs)
    print("machine: %s" % machine_info())
    print("scheduler %s; queue: %d messages; %d destinations; ack transport answers "
          "at once; smtp channel concurrency 20 (default)"
          % (SCHEDULER, n, DESTINATIONS))
    base_kb = baseline_hwm(bases[0][1]) if bases else None
    print("scheduler VmHWM with an empty queue: %s kB (subtracted for B/msg, B/rcpt)"
          % base_kb)
    results = []
    for fsname, base in bases:
        for sc in a.scenarios.split(","):
            r = 1 if sc == "a" else a.r
            group = sc == "b" and not a.spread
            for lim in a.limits.split(","):
                limit = n + 1 if lim == "big" else None
                name = "%s) %dx%d%s, limit %s" % (sc, n, r, " grouped" if group and r > 1
                                                 else "", "%d" % (n + 1) if limit else
                                                 "20000")
                log("run %s on %s (%s)" % (name, fsname, base))
                res = run_one(base, n, r, group, limit, a.keep, a.strace, a.drop_caches)
                results.append((name, res))
                print("# %s" % row(name, res, base_kb), file=sys.stderr, flush=True)
    print()
    print(HEADER)
    for name, res in results:
        print(row(name, res, base_kb))
    for name, res in results:
        if res.get("strace"):
            print("\nstrace -c of the scheduler, %d s after the first delivery, %s on %s:\n"
                  "```\n%s```" % (a.strace, name, res["fs"], res["strace"]))
    return 1 if any("error" in r for _, r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
