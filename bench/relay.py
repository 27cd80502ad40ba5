#!/usr/bin/env python3
"""relay - end-to-end relay throughput: zfarm against Postfix, same run.

Not a test.  Postfix's smtp-source sends 4 KB messages over N parallel
sessions (one message per connection) to an MTA on 127.0.0.1, which
relays every message to Postfix's smtp-sink on 127.0.0.1 (relayhost
[127.0.0.1]:SINKPORT).  For each session count (default 1, 10, 50) it runs
zfarm and a private Postfix instance alternately (which one goes first
alternates too), each run on a fresh instance and a fresh sink, and prints
one markdown table:

    python3 bench/relay.py [--sessions 1,10,50] [-m 5000 | --quick]
        [--repeat N] [--dir BASE] [--only zfarm|postfix] [--warmup N]
        [--zfarm-log-level warn] [--json FILE] [--timeout S] [--keep] [-v]

Columns (the median over --repeat runs; "lost" is the sum):
  seconds   from the moment smtp-source is started (its first connect) until
            smtp-sink has counted the last message;
  msg/s     messages / seconds, end to end;
  CPU ms/msg  CPU time (user + system) of all the MTA's processes during the
            run, per message: the sum of utime+stime+cutime+cstime from
            /proc/PID/stat over the instance's live process tree (farmd or
            Postfix's master and all their descendants), after minus before.
            Children that exit during the run are reaped by farmd or master,
            so their whole CPU time moves into the parent's cutime/cstime:
            the difference counts them exactly once.  "After" is taken when
            the MTA's queue is empty again (deleting the queue file is part
            of the work).  smtp-source, smtp-sink and this script are not
            counted.  The progress lines also show the whole machine's
            busy CPU per message (/proc/stat) and the client's: smtp-source
            (its rusage) plus smtp-sink (its /proc/PID/stat), which tells
            whether an MTA makes the load generator work harder.
  peak PSS  the maximum over the run of the sum of Pss (smaps_rollup) of the
            instance's processes, sampled every 100 ms (less often when a
            sample costs more than 5% of that: Postfix at 50 sessions has
            over 100 processes; the sampler's CPU time is in the JSON);
  lost      messages sent minus messages counted by the sink (must be 0);
            "queue" the files left in the MTA's queue at the end (must be 0).
Then the ratio zfarm/Postfix msg/s per session count.

Counting at the sink: smtp-sink -c writes "\\rsess=S quit=Q mesg=M" to its
stdout (here a file) each time a session ends or "." is received; this
script polls the end of that file every 10 ms, so the end of a run is known
to about 10 ms and the sink does no work but one small write per event.

Each run: a fresh sink, a fresh MTA instance (its own directory under
--dir, default /var/tmp: a real disk, so fsync costs what it costs; the
filesystem type is printed), a warm-up (--warmup messages, delivered and
the queue empty again), then the timed smtp-source run.  Directories are
removed at the very end (--keep keeps them).

zfarm: from the build tree, with the example configuration:
    farmd/farmd -f -c etc/zfarm.conf -o program_directory=$PWD/libexec
        -o run_directory=DIR -o smtp_listen=127.0.0.1:P1
        -o submission_listen=127.0.0.1:P2 -o relayhost=[127.0.0.1]:SINKPORT
        -o log_level=warn
ready when 127.0.0.1:P1 answers 220; stopped with
    tools/zfarmctl -c etc/zfarm.conf -o run_directory=DIR stop
queue files: DIR/queue/msg.

Postfix: a private instance (never /etc/postfix, never the system service)
with its own config_directory (main.cf written here; master.cf is the
system's /etc/postfix/master.cf or master.cf.dist with only the services a
relay needs, chroot off, and smtpd on 127.0.0.1:P3 only), its own
queue_directory and data_directory, maillog_file in the instance directory
(postlogd); relayhost = [127.0.0.1]:SINKPORT, mydestination empty,
mynetworks 127.0.0.0/8, no DNS (smtp_dns_support_level = disabled; the
relayhost is an IP literal anyway), alias_maps empty (Debian's default
names nis:mail.aliases: a warning from every new smtpd), everything else
Postfix's defaults
(compatibility_level 3.6: queue files fsynced, default_destination_
concurrency_limit 20, default_process_limit 100, connection cache on
demand).  Started with `postfix -c DIR check` and `postfix -c DIR start`,
stopped with `postfix -c DIR stop` (`abort` and SIGKILL of leftovers if
needed).  Queue files: queue/{incoming,active,deferred,hold,maildrop,corrupt}.

Python 3 standard library only; must run as root (Postfix's master, smtp-sink
-u).  Needs Postfix installed (apt-get install postfix) and zfarm built.
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_SRCDIR = os.path.abspath(os.environ.get("top_srcdir") or os.path.join(HERE, ".."))
TOP_BUILDDIR = os.path.abspath(os.environ.get("top_builddir") or TOP_SRCDIR)
sys.path.insert(0, os.path.join(TOP_SRCDIR, "tests", "farmd"))
import qspool  # noqa: E402

FARMD = os.path.join(TOP_BUILDDIR, "farmd", "farmd")
ZFARMCTL = os.path.join(TOP_BUILDDIR, "tools", "zfarmctl")
LIBEXEC = os.path.join(TOP_BUILDDIR, "libexec")
ZFARM_CONF = os.path.join(TOP_SRCDIR, "etc", "zfarm.conf")

POSTFIX = "/usr/sbin/postfix"
POSTCONF = "/usr/sbin/postconf"
SMTP_SOURCE = "/usr/sbin/smtp-source"
SMTP_SINK = "/usr/sbin/smtp-sink"

MSG_SIZE = 4096
SENDER = "s@example.test"
RECIPIENT = "r@remote.test"
HELO_NAME = "client.bench.invalid"
SINK_USER = "nobody"

CLK_TCK = os.sysconf("SC_CLK_TCK")
VERBOSE = False


def log(msg):
    if VERBOSE:
        print("# " + msg, file=sys.stderr, flush=True)


def show_cmd(cmd):
    return " ".join(cmd)


class BenchError(Exception):
    pass


def wait_until(fn, timeout, interval=0.05, what="condition"):
    """fn() every interval until true (returned); BenchError after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise BenchError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def tail(text, lines=15):
    return "\n".join(text.rstrip("\n").split("\n")[-lines:])


def read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def smtp_ready(port, timeout=2.0):
    """True if 127.0.0.1:port answers with a 220 banner (then QUIT)."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError:
        return False
    try:
        s.settimeout(timeout)
        buf = b""
        while b"\n" not in buf:
            data = s.recv(1024)
            if not data:
                break
            buf += data
        ok = buf.startswith(b"220")
        if ok:
            try:
                s.sendall(b"QUIT\r\n")
                s.recv(1024)
            except OSError:
                pass
        return ok
    except OSError:
        return False
    finally:
        s.close()


# ---- processes ----

def proc_stat(pid):
    """(ppid, state, cpu ticks u+s+cu+cs, starttime) of pid, or None."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return None
    rp = data.rfind(b")")
    fields = data[rp + 2:].split()
    try:
        # fields[0] is field 3 (state): utime is field 14 -> index 11
        return (int(fields[1]), fields[0].decode(),
                int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14]),
                int(fields[19]))
    except (IndexError, ValueError):
        return None


def process_table():
    """{pid: proc_stat(pid)} of every process."""
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st is not None:
                table[int(name)] = st
    return table


def tree(root, table=None):
    """root and all its descendants: {pid: stat}."""
    if table is None:
        table = process_table()
    if root not in table:
        return {}
    kids = {}
    for pid, st in table.items():
        kids.setdefault(st[0], []).append(pid)
    out, todo = {}, [root]
    while todo:
        p = todo.pop()
        if p in out or p not in table:
            continue
        out[p] = table[p]
        todo.extend(kids.get(p, ()))
    return out


def tree_cpu_seconds(root):
    """CPU seconds of root's tree: utime+stime+cutime+cstime of every live
    process (exited children are in their reaper's cutime/cstime)."""
    t = tree(root)
    if not t:
        raise BenchError("process %d is gone" % root)
    return sum(st[2] for st in t.values()) / CLK_TCK


def pss_kb(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid, "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def alive(pid, starttime=None):
    st = proc_stat(pid)
    if st is None or st[1] in ("Z", "X", "x"):
        return False
    return starttime is None or st[3] == starttime


def kill_quietly(pid, sig=signal.SIGKILL):
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def pids_mentioning(marker):
    """Live processes whose command line or environment contains marker."""
    found = []
    m = marker.encode()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        for what in ("cmdline", "environ"):
            try:
                with open("/proc/%s/%s" % (name, what), "rb") as f:
                    if m in f.read():
                        if alive(int(name)):
                            found.append(int(name))
                        break
            except OSError:
                pass
    return found


def kill_leftovers(name, seen, marker, grace=10.0):
    """After the MTA's manager exited: its processes still running (seen by
    the sampler, or with marker in their command line or environment) get
    grace seconds to finish exiting, then SIGKILL.  Returns those killed."""
    def left():
        return sorted({p for p, st in seen if alive(p, st)} | set(pids_mentioning(marker)))
    deadline = time.monotonic() + grace
    pids = left()
    while pids and time.monotonic() < deadline:
        time.sleep(0.1)
        pids = left()
    for p in pids:
        kill_quietly(p)
    if pids:
        print("# %s: killed leftover processes %s" % (name, pids), file=sys.stderr)
    return pids


class Sampler(threading.Thread):
    """Every interval: the tree of root_fn(); the maximum of its summed Pss,
    and every (pid, starttime) seen (to find leftovers at stop).  The parent
    of a pid is read once (cached by pid and start time), so a sample costs a
    listing of /proc, a stat of each new process and one smaps_rollup per
    process of the instance; the sampler's own CPU time is reported (JSON)."""

    def __init__(self, root_fn, interval=0.1):
        super().__init__(daemon=True)
        self.root_fn = root_fn
        self.interval = interval
        self.stop_ev = threading.Event()
        self.peak_kb = 0
        self.peak_procs = 0
        self.samples = 0
        self.cpu_seconds = 0.0
        self.seen = set()
        self.parents = {}  # pid -> (ppid, starttime), for the pids listed last time

    def tree(self, root):
        pids = [int(n) for n in os.listdir("/proc") if n.isdigit()]
        parents = {}
        for p in pids:
            known = self.parents.get(p)
            if known is None:
                st = proc_stat(p)
                if st is None:
                    continue
                known = (st[0], st[3])
            parents[p] = known
        self.parents = parents
        kids = {}
        for p, (pp, _start) in parents.items():
            kids.setdefault(pp, []).append(p)
        out, todo = [], [root]
        while todo:
            p = todo.pop()
            if p in parents:
                out.append(p)
                self.seen.add((p, parents[p][1]))
                todo.extend(kids.get(p, ()))
        return out

    def sample(self):
        root = self.root_fn()
        if root is None:
            return
        pids = self.tree(root)
        total = sum(pss_kb(p) for p in pids)
        self.samples += 1
        if total > self.peak_kb:
            self.peak_kb = total
        self.peak_procs = max(self.peak_procs, len(pids))

    def run(self):
        # Every interval, but at most a 5% duty cycle: one smaps_rollup costs
        # about 0.1-0.3 ms of CPU, and Postfix runs 100+ processes at 50
        # sessions, which must not cost it a noticeable share of 2 CPUs.
        c0 = time.thread_time()
        while not self.stop_ev.is_set():
            t = time.thread_time()
            self.sample()
            self.stop_ev.wait(max(self.interval, 20 * (time.thread_time() - t)))
        self.cpu_seconds = time.thread_time() - c0

    def finish(self):
        self.stop_ev.set()
        self.join(5)


# ---- machine ----

def fs_type(path):
    best, kind = "", "?"
    path = os.path.realpath(path)
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1].replace("\\040", " ")
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, kind = mnt, parts[2]
    except OSError:
        pass
    return kind


def machine_info(base):
    info = {"nproc": len(os.sched_getaffinity(0)), "cpus": os.cpu_count(),
            "kernel": platform.release(), "machine": platform.machine()}
    for line in read_text("/proc/cpuinfo").split("\n"):
        if line.startswith("model name"):
            info["cpu_model"] = line.split(":", 1)[1].strip()
            break
    for line in read_text("/proc/meminfo").split("\n"):
        if line.startswith("MemTotal:"):
            info["mem_total_mb"] = int(line.split()[1]) // 1024
            break
    info["base_dir"] = base
    info["fs_type"] = fs_type(base)
    info["postfix_version"] = postconf_default("mail_version") or "?"
    try:
        info["zfarm_commit"] = subprocess.run(
            ["git", "-C", TOP_SRCDIR, "describe", "--always", "--dirty"],
            capture_output=True, text=True, timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        info["zfarm_commit"] = "?"
    info["python"] = platform.python_version()
    return info


def machine_busy_seconds():
    """Busy CPU seconds of the whole machine (all CPUs) from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]] + [0] * 10
    user, nice, system, _idle, _iowait, irq, softirq, steal = v[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def count_files(dirs):
    n = 0
    for d in dirs:
        for root, _dirs, files in os.walk(d):
            for name in files:
                try:
                    st = os.lstat(os.path.join(root, name))
                except FileNotFoundError:
                    continue
                if (st.st_mode & 0o170000) == 0o100000:
                    n += 1
    return n


# ---- the sink ----

MESG_RE = re.compile(rb"mesg=(\d+)")


class Sink:
    """smtp-sink -c on 127.0.0.1:port, its counters going to a file."""

    def __init__(self, workdir):
        self.port = free_port()
        self.out = os.path.join(workdir, "sink.out")
        self.cmd = [SMTP_SINK, "-u", SINK_USER, "-c", "127.0.0.1:%d" % self.port, "1000"]
        self.proc = None
        self.fh = None

    def start(self):
        log("sink: " + show_cmd(self.cmd))
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.fh = open(self.out, "rb")

        def up():
            if self.proc.poll() is not None:
                raise BenchError("smtp-sink exited with %s: %s"
                                 % (self.proc.returncode, tail(read_text(self.out))))
            return smtp_ready(self.port)
        wait_until(up, 10, what="smtp-sink on 127.0.0.1:%d" % self.port)

    def count(self):
        """Messages received so far ("." seen): the last mesg= counter."""
        size = os.fstat(self.fh.fileno()).st_size
        if size == 0:
            return 0
        data = os.pread(self.fh.fileno(), 256, max(0, size - 256))
        found = MESG_RE.findall(data)
        return int(found[-1]) if found else 0

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                kill_quietly(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    kill_quietly(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(5)
            self.proc = None
        if self.fh is not None:
            self.fh.close()
            self.fh = None


# ---- zfarm ----

class Zfarm:
    name = "zfarm"

    log_level = "warn"

    def __init__(self, workdir, sink_port):
        self.dir = os.path.join(workdir, "zfarm")
        self.sink_port = sink_port
        self.port = free_port()
        self.port2 = free_port()
        self.proc = None
        self.logpath = os.path.join(workdir, "farmd.log")
        self.sampler = None
        self.cmd = [FARMD, "-f", "-c", ZFARM_CONF, "-o", "program_directory=" + LIBEXEC,
                    "-o", "run_directory=" + self.dir,
                    "-o", "smtp_listen=127.0.0.1:%d" % self.port,
                    "-o", "submission_listen=127.0.0.1:%d" % self.port2,
                    "-o", "relayhost=[127.0.0.1]:%d" % self.sink_port,
                    "-o", "log_level=" + self.log_level]
        self.stop_cmd = [ZFARMCTL, "-c", ZFARM_CONF, "-o", "run_directory=" + self.dir, "stop"]

    @staticmethod
    def missing():
        return [p for p in (FARMD, ZFARMCTL, os.path.join(LIBEXEC, "smtp"), ZFARM_CONF)
                if not os.access(p, os.R_OK)]

    def start(self):
        log("zfarm: " + show_cmd(self.cmd))
        with open(self.logpath, "ab") as lf:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=lf, stderr=lf,
                                         cwd=TOP_BUILDDIR, start_new_session=True)

        def up():
            if self.proc.poll() is not None:
                raise BenchError("farmd exited with %s at start" % self.proc.returncode)
            return smtp_ready(self.port)
        wait_until(up, 20, what="zfarm's 220 on 127.0.0.1:%d" % self.port)

    def root(self):
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def queue_count(self):
        return qspool.Queue(os.path.join(self.dir, "queue")).count()

    def describe_failure(self):
        return tail(read_text(self.logpath))

    def stop(self):
        if self.proc is None:
            return []
        left = []
        try:
            if self.proc.poll() is None:
                log("zfarm: " + show_cmd(self.stop_cmd))
                try:
                    r = subprocess.run(self.stop_cmd, stdin=subprocess.DEVNULL,
                                       capture_output=True, text=True, timeout=20)
                    if r.returncode != 0:
                        log("zfarmctl stop: exit %d %s" % (r.returncode, r.stderr.strip()))
                except subprocess.TimeoutExpired:
                    log("zfarmctl stop timed out")
                try:
                    self.proc.wait(20)  # stop_grace is 10 s
                except subprocess.TimeoutExpired:
                    print("# zfarm: farmd did not exit 20 s after stop: SIGKILL", file=sys.stderr)
                    kill_quietly(self.proc.pid)
                    self.proc.wait(5)
        finally:
            self.proc = None
            left = kill_leftovers("zfarm", self.sampler.seen if self.sampler else set(),
                                  self.dir)
        return left


# ---- Postfix ----

POSTFIX_QUEUES = ("incoming", "active", "deferred", "hold", "maildrop", "corrupt")
# master.cf services a relay instance needs (smtpd is added with its address)
POSTFIX_SERVICES = ("cleanup", "qmgr", "rewrite", "bounce", "defer", "trace", "flush",
                    "proxymap", "smtp", "relay", "error", "retry", "discard", "anvil",
                    "scache", "postlog")


def postconf_default(param):
    try:
        r = subprocess.run([POSTCONF, "-dh", param], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return r.stdout.strip() if r.returncode == 0 else ""


def postfix_master_template():
    for p in ("/etc/postfix/master.cf", "/usr/share/postfix/master.cf.dist"):
        if os.path.exists(p):
            return p, read_text(p)
    raise BenchError("no master.cf to start from (/etc/postfix/master.cf or "
                     "/usr/share/postfix/master.cf.dist)")


def postfix_master_cf(port):
    """The system's master.cf, only POSTFIX_SERVICES (unix/unix-dgram),
    chroot off, plus smtpd on 127.0.0.1:port."""
    src, text = postfix_master_template()
    entries, cur = [], None
    for line in text.split("\n"):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0] in " \t":
            if cur is not None:
                cur[1].append(line)
            continue
        cur = (line.split(), [])
        entries.append(cur)
    out = ["# written by bench/relay.py from %s: only what a relay needs, chroot off" % src,
           "# service type  private unpriv  chroot  wakeup  maxproc command + args",
           "127.0.0.1:%d inet n - n - - smtpd" % port]
    have = set()
    for fields, cont in entries:
        if len(fields) < 8 or fields[1] not in ("unix", "unix-dgram", "fifo", "pass"):
            continue
        if fields[0] not in POSTFIX_SERVICES or fields[0] in have:
            continue
        have.add(fields[0])
        fields = list(fields)
        fields[4] = "n"
        out.append(" ".join(fields))
        out.extend(cont)
    if "postlog" not in have:
        out.append("postlog unix-dgram n - n - 1 postlogd")
    missing = set(POSTFIX_SERVICES) - have - {"postlog"}
    if missing:
        raise BenchError("%s lacks services %s" % (src, ", ".join(sorted(missing))))
    return "\n".join(out) + "\n"


class Postfix:
    name = "postfix"

    def __init__(self, workdir, sink_port):
        self.tmp = os.path.join(workdir, "postfix")
        os.mkdir(self.tmp, 0o755)
        os.chmod(self.tmp, 0o755)  # the postfix user walks to queue/ and data/
        self.etc = os.path.join(self.tmp, "etc")
        self.queue = os.path.join(self.tmp, "queue")
        self.data = os.path.join(self.tmp, "data")
        self.sink_port = sink_port
        self.port = free_port()
        self.started = False
        self.sampler = None
        self.master = None
        self.start_cmd = [POSTFIX, "-c", self.etc, "start"]
        self.stop_cmd = [POSTFIX, "-c", self.etc, "stop"]

    @staticmethod
    def missing():
        return [p for p in (POSTFIX, POSTCONF) if not os.access(p, os.X_OK)]

    def main_cf(self):
        return """\
# written by bench/relay.py: a private relay instance; all else default
# (alias_maps: Debian's default has nis:mail.aliases, a warning per smtpd)
compatibility_level = 3.6
config_directory = {etc}
queue_directory = {queue}
data_directory = {data}
command_directory = {command_dir}
daemon_directory = {daemon_dir}
meta_directory = {meta_dir}
shlib_directory = {shlib_dir}
mail_owner = postfix
setgid_group = postdrop
maillog_file = {tmp}/maillog
maillog_file_prefixes = {tmp}
myhostname = bench.invalid
mydestination =
mynetworks = 127.0.0.0/8
inet_interfaces = loopback-only
inet_protocols = ipv4
relayhost = [127.0.0.1]:{sink}
smtp_dns_support_level = disabled
alias_maps =
""".format(etc=self.etc, queue=self.queue, data=self.data, tmp=self.tmp, sink=self.sink_port,
           command_dir=postconf_default("command_directory") or "/usr/sbin",
           daemon_dir=postconf_default("daemon_directory") or "/usr/lib/postfix/sbin",
           meta_dir=postconf_default("meta_directory") or "/etc/postfix",
           shlib_dir=postconf_default("shlib_directory") or "/usr/lib/postfix")

    def postfix(self, verb, timeout=60):
        cmd = [POSTFIX, "-c", self.etc, verb]
        log("postfix: " + show_cmd(cmd))
        env = dict(os.environ)
        env.pop("MAIL_CONFIG", None)
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, env=env, start_new_session=True)

    def start(self):
        for d in (self.etc, self.queue):
            os.mkdir(d, 0o755)
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(self.main_cf())
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(postfix_master_cf(self.port))
        r = self.postfix("check")  # creates the queue directories, owners, modes
        if r.returncode != 0:
            raise BenchError("postfix -c %s check: exit %d\n%s%s"
                             % (self.etc, r.returncode, r.stdout, r.stderr))
        self.started = True  # stop even on failure: a master may be half up
        r = self.postfix("start")
        if r.returncode != 0:
            raise BenchError("%s: exit %d\n%s%s" % (show_cmd(self.start_cmd), r.returncode,
                                                   r.stdout, r.stderr))

        def up():
            if self.master_pid() is None:
                return False
            return smtp_ready(self.port)
        wait_until(up, 20, what="Postfix's 220 on 127.0.0.1:%d" % self.port)
        self.master = self.master_pid()

    def master_pid(self):
        try:
            with open(os.path.join(self.queue, "pid", "master.pid")) as f:
                pid = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if alive(pid) else None

    def root(self):
        return self.master if self.master is not None and alive(self.master) else None

    def queue_count(self):
        return count_files([os.path.join(self.queue, q) for q in POSTFIX_QUEUES])

    def describe_failure(self):
        return tail(read_text(os.path.join(self.tmp, "maillog")))

    def stop(self):
        if not self.started:
            return []
        left = []
        try:
            master = self.master_pid()
            try:
                self.postfix("stop", timeout=30)
            except subprocess.TimeoutExpired:
                pass
            if master is not None:
                try:
                    wait_until(lambda: not alive(master), 20, what="postfix master to exit")
                except BenchError:
                    print("# postfix: master still running: postfix abort", file=sys.stderr)
                    try:
                        self.postfix("abort", timeout=30)
                    except subprocess.TimeoutExpired:
                        pass
                    try:
                        wait_until(lambda: not alive(master), 10, what="postfix master to exit")
                    except BenchError:
                        kill_quietly(master)
        finally:
            self.started = False
            # every process master starts has MAIL_CONFIG=<our etc> in its environment
            left = kill_leftovers("postfix", self.sampler.seen if self.sampler else set(),
                                  self.tmp)
        return left


# ---- one run ----

def source_cmd(port, sessions, messages):
    return [SMTP_SOURCE, "-s", str(sessions), "-m", str(messages), "-l", str(MSG_SIZE),
            "-M", HELO_NAME, "-f", SENDER, "-t", RECIPIENT, "127.0.0.1:%d" % port]


def send(mta, sink, sessions, messages, timeout, errpath, sampler=None):
    """smtp-source to the MTA; wait until the sink has messages more and the
    MTA's queue is empty.  Returns a dict of the timings."""
    base = sink.count()
    target = base + messages
    cmd = source_cmd(mta.port, sessions, messages)
    cpu0 = tree_cpu_seconds(mta.root())
    sink0 = tree_cpu_seconds(sink.proc.pid)
    busy0 = machine_busy_seconds()
    with open(errpath, "ab") as err:
        t0 = time.monotonic()
        src = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=err, start_new_session=True)
    source_cpu = [0.0]

    def reaped():
        # Popen.poll() without losing the child's rusage (its CPU seconds)
        if src.returncode is None:
            pid, status, ru = os.wait4(src.pid, os.WNOHANG)
            if pid == 0:
                return False
            src.returncode = os.waitstatus_to_exitcode(status)
            source_cpu[0] = ru.ru_utime + ru.ru_stime
        return True
    if sampler is not None:
        sampler.start()
    deadline = t0 + timeout
    t_sent = t_end = None
    try:
        while True:
            now = time.monotonic()
            if t_sent is None and reaped():
                t_sent = now
                if src.returncode != 0:
                    raise BenchError("%s: exit %d\n%s" % (show_cmd(cmd), src.returncode,
                                                         tail(read_text(errpath))))
            got = sink.count()
            if got >= target:
                t_end = now
                break
            if mta.root() is None:
                raise BenchError("the MTA died during the run (sink has %d of %d)"
                                 % (got - base, messages))
            if now >= deadline:
                raise BenchError("timed out after %d s: sink has %d of %d messages, "
                                 "smtp-source %s, %d file(s) in the MTA's queue"
                                 % (timeout, got - base, messages,
                                    "done" if reaped() else "running",
                                    mta.queue_count()))
            time.sleep(0.01)
        if not reaped():
            try:
                wait_until(reaped, max(1, deadline - time.monotonic()), interval=0.01,
                           what="smtp-source to exit")
            except BenchError:
                raise BenchError("the sink has all messages but smtp-source still runs")
            if src.returncode != 0:
                raise BenchError("%s: exit %d\n%s" % (show_cmd(cmd), src.returncode,
                                                     tail(read_text(errpath))))
            t_sent = t_sent or time.monotonic()
        # deleting queue files is part of the work: CPU "after" once empty
        try:
            wait_until(lambda: mta.queue_count() == 0, max(5, min(60, deadline - time.monotonic())),
                       interval=0.02, what="the MTA's queue to empty")
        except BenchError:
            pass
        cpu1 = tree_cpu_seconds(mta.root())
        sink1 = tree_cpu_seconds(sink.proc.pid)
        busy1 = machine_busy_seconds()
    finally:
        if not reaped():
            kill_quietly(src.pid)
            src.wait(5)
        if sampler is not None and sampler.is_alive():
            sampler.finish()
    time.sleep(0.3)  # a duplicate would show now
    received = sink.count() - base
    return {"seconds": t_end - t0, "source_seconds": (t_sent or t_end) - t0,
            "cpu_seconds": cpu1 - cpu0, "machine_busy_seconds": busy1 - busy0,
            "client_cpu_seconds": source_cpu[0] + sink1 - sink0, "received": received}


def run_one(kind, sessions, messages, warmup, timeout, top):
    workdir = tempfile.mkdtemp(prefix="%s-s%d-" % (kind, sessions), dir=top)
    os.chmod(workdir, 0o755)
    sink = Sink(workdir)
    mta = None
    result = {"mta": kind, "sessions": sessions, "messages": messages, "dir": workdir}
    try:
        sink.start()
        mta = (Zfarm if kind == "zfarm" else Postfix)(workdir, sink.port)
        mta.start()
        errpath = os.path.join(workdir, "smtp-source.err")
        if warmup:
            w = send(mta, sink, min(sessions, warmup), warmup, timeout, errpath)
            if w["received"] != warmup:
                raise BenchError("warm-up: the sink got %d of %d" % (w["received"], warmup))
        mta.sampler = Sampler(mta.root)
        r = send(mta, sink, sessions, messages, timeout, errpath, mta.sampler)
        result.update(r)
        result["msg_per_s"] = messages / r["seconds"]
        result["cpu_s_per_msg"] = r["cpu_seconds"] / messages
        result["peak_pss_kb"] = mta.sampler.peak_kb
        result["peak_processes"] = mta.sampler.peak_procs
        result["pss_samples"] = mta.sampler.samples
        result["sampler_cpu_seconds"] = mta.sampler.cpu_seconds
        result["lost"] = messages - r["received"]
    except BenchError as e:
        msg = str(e)
        if mta is not None:
            detail = mta.describe_failure()
            if detail:
                msg += "\n%s log tail:\n%s" % (kind, detail)
        result["error"] = msg
    finally:
        try:
            if mta is not None:
                if mta.root() is not None:
                    result["queue_left"] = mta.queue_count()
                result["leftover_processes"] = mta.stop()
                result["queue_left_after_stop"] = mta.queue_count()
        finally:
            sink.stop()
    return result


# ---- report ----

def median(xs):
    return statistics.median(xs) if xs else None


def summarize(results, sides, sessions_list):
    rows = []
    for s in sessions_list:
        for side in sides:
            rs = [r for r in results if r["mta"] == side and r["sessions"] == s]
            ok = [r for r in rs if "error" not in r]
            row = {"mta": side, "sessions": s, "runs": len(rs), "errors": len(rs) - len(ok),
                   "messages": rs[0]["messages"] if rs else 0}
            if ok:
                row["seconds"] = median([r["seconds"] for r in ok])
                row["msg_per_s"] = median([r["msg_per_s"] for r in ok])
                row["cpu_s_per_msg"] = median([r["cpu_s_per_msg"] for r in ok])
                row["peak_pss_kb"] = median([r["peak_pss_kb"] for r in ok])
                row["lost"] = sum(r["lost"] for r in ok)
                row["queue_left"] = sum(r.get("queue_left_after_stop", 0) for r in ok)
            rows.append(row)
    return rows


def print_report(rows, sides, sessions_list, repeat):
    def f(row, key, spec, scale=1.0):
        v = row.get(key)
        return "error" if v is None else spec % (v * scale)
    print()
    print("| MTA | sessions | msgs | seconds | msg/s | CPU ms/msg | peak PSS MB | lost | queue |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        lost = row.get("lost")
        print("| %s | %d | %d | %s | %s | %s | %s | %s | %s |"
              % (row["mta"], row["sessions"], row["messages"], f(row, "seconds", "%.2f"),
                 f(row, "msg_per_s", "%.0f"), f(row, "cpu_s_per_msg", "%.3f", 1000.0),
                 f(row, "peak_pss_kb", "%.1f", 1 / 1024.0),
                 "error" if lost is None else "%d" % lost,
                 f(row, "queue_left", "%d")) + (" (%d of %d runs failed)"
                                                % (row["errors"], row["runs"])
                                                if row["errors"] else ""))
    if len(sides) == 2:
        print()
        print("| sessions | zfarm/Postfix msg/s |")
        print("| ---: | ---: |")
        for s in sessions_list:
            z = [r for r in rows if r["mta"] == "zfarm" and r["sessions"] == s][0]
            p = [r for r in rows if r["mta"] == "postfix" and r["sessions"] == s][0]
            ratio = ("%.2f" % (z["msg_per_s"] / p["msg_per_s"])
                     if z.get("msg_per_s") and p.get("msg_per_s") else "-")
            print("| %d | %s |" % (s, ratio))
    print()
    print("Medians over %d run(s) per row; lost and queue are sums (both must be 0)." % repeat)


# ---- main ----

CLEANUP = []


def on_sigterm(_sig, _frame):
    raise KeyboardInterrupt


def main():
    global VERBOSE
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", default="1,10,50",
                    help="comma-separated parallel session counts (default 1,10,50)")
    ap.add_argument("-m", "--messages", type=int, default=None,
                    help="messages per timed run (default 5000)")
    ap.add_argument("--quick", action="store_true", help="1,000 messages per run")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs per (MTA, sessions), alternating; the table shows medians")
    ap.add_argument("--warmup", type=int, default=None,
                    help="messages relayed by each fresh instance before the timed run "
                         "(default 2 per session, at least 20; 0: none)")
    ap.add_argument("--zfarm-log-level", default="warn",
                    help="zfarm's log_level (default warn; info logs every delivery, "
                         "as Postfix does)")
    ap.add_argument("--only", choices=("zfarm", "postfix"), help="run one MTA only")
    ap.add_argument("--dir", default="/var/tmp",
                    help="base directory of the instances (default /var/tmp); its "
                         "filesystem decides what fsync costs")
    ap.add_argument("--timeout", type=int, default=600,
                    help="seconds one timed run may take (default 600)")
    ap.add_argument("--json", metavar="FILE", help="write every run and the summary as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the instances' directories")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="progress and command lines on stderr")
    args = ap.parse_args()
    VERBOSE = args.verbose
    try:
        sessions_list = [int(s) for s in args.sessions.split(",") if s.strip()]
    except ValueError:
        ap.error("--sessions: comma-separated integers")
    if not sessions_list or min(sessions_list) < 1:
        ap.error("--sessions: positive integers")
    messages = args.messages or (1000 if args.quick else 5000)
    if messages < 1 or args.repeat < 1:
        ap.error("--messages and --repeat: positive")
    if os.geteuid() != 0:
        sys.exit("run as root: Postfix's master and smtp-sink -u need it")
    sides = [args.only] if args.only else ["zfarm", "postfix"]
    for p in (SMTP_SOURCE, SMTP_SINK):
        if not os.access(p, os.X_OK):
            sys.exit("%s missing: apt-get install postfix" % p)
    if "zfarm" in sides and Zfarm.missing():
        sys.exit("zfarm not built (%s): make" % ", ".join(Zfarm.missing()))
    if "postfix" in sides and Postfix.missing():
        sys.exit("Postfix not installed (%s): apt-get install postfix"
                 % ", ".join(Postfix.missing()))
    Zfarm.log_level = args.zfarm_log_level
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignored

    base = os.path.abspath(args.dir)
    os.makedirs(base, exist_ok=True)
    top = tempfile.mkdtemp(prefix="zfarm-relay-", dir=base)
    os.chmod(top, 0o755)
    info = machine_info(top)
    example_sink = [SMTP_SINK, "-u", SINK_USER, "-c", "127.0.0.1:SINKPORT", "1000"]
    commands = {
        "smtp-sink": show_cmd(example_sink),
        "smtp-source": show_cmd(source_cmd(0, 0, 0)).replace("-s 0 -m 0", "-s SESSIONS -m MSGS")
                       .replace("127.0.0.1:0", "127.0.0.1:PORT"),
        "zfarm": "cd %s && %s -f -c %s -o program_directory=%s -o run_directory=DIR "
                 "-o smtp_listen=127.0.0.1:P1 -o submission_listen=127.0.0.1:P2 "
                 "-o relayhost=[127.0.0.1]:SINKPORT -o log_level=%s"
                 % (TOP_BUILDDIR, FARMD, ZFARM_CONF, LIBEXEC, Zfarm.log_level),
        "zfarm stop": "%s -c %s -o run_directory=DIR stop" % (ZFARMCTL, ZFARM_CONF),
        "postfix": "postfix -c DIR/etc check; postfix -c DIR/etc start; ... postfix -c DIR/etc stop",
    }
    warm_desc = ("%d" % args.warmup if args.warmup is not None
                 else "max(20, 2 x sessions)")
    print("# relay benchmark: smtp-source -> MTA -> smtp-sink on 127.0.0.1")
    print()
    print("- machine: %d CPUs (nproc %d), %s, kernel %s, %d MB RAM"
          % (info["cpus"], info["nproc"], info.get("cpu_model", "?"), info["kernel"],
             info.get("mem_total_mb", 0)))
    print("- instances under %s (%s)" % (top, info["fs_type"]))
    print("- zfarm %s (%s); Postfix %s" % (info["zfarm_commit"], TOP_BUILDDIR,
                                          info["postfix_version"]))
    print("- %d messages of %d bytes per run, one per connection; warm-up %s messages; "
          "%d run(s) per (MTA, sessions), alternating" % (messages, MSG_SIZE, warm_desc,
                                                         args.repeat))
    print("- commands:")
    for k, v in commands.items():
        print("  - %s: `%s`" % (k, v))
    if "postfix" in sides:
        try:
            pm = Postfix.__new__(Postfix)
            pm.etc, pm.queue, pm.data, pm.tmp, pm.sink_port = ("DIR/etc", "DIR/queue",
                                                               "DIR/data", "DIR", "SINKPORT")
            print("- Postfix main.cf:")
            print()
            print("\n".join("      " + l for l in pm.main_cf().strip("\n").split("\n")
                            if not l.startswith(("command_", "daemon_", "meta_", "shlib_"))))
            print()
            print("- Postfix master.cf:")
            print()
            print("\n".join("      " + l for l in postfix_master_cf(0).replace(
                "127.0.0.1:0 ", "127.0.0.1:P3 ").strip("\n").split("\n")))
        except BenchError as e:
            sys.exit(str(e))
    sys.stdout.flush()

    results = []
    interrupted = False
    try:
        for rep in range(args.repeat):
            for si, s in enumerate(sessions_list):
                order = list(sides)
                if (rep + si) % 2 == 1:
                    order.reverse()
                for side in order:
                    warmup = args.warmup if args.warmup is not None else max(20, 2 * s)
                    print("# %s, %d sessions, run %d/%d ..." % (side, s, rep + 1, args.repeat),
                          file=sys.stderr, flush=True)
                    r = run_one(side, s, messages, warmup, args.timeout, top)
                    r["repeat"] = rep
                    results.append(r)
                    if "error" in r:
                        print("# %s, %d sessions: ERROR %s" % (side, s, r["error"]),
                              file=sys.stderr, flush=True)
                    else:
                        print("#   %.2f s, %.0f msg/s, %.3f CPU ms/msg (machine %.3f, "
                              "client %.3f), peak PSS %.1f MB, lost %d, queue %d"
                              % (r["seconds"], r["msg_per_s"], r["cpu_s_per_msg"] * 1000,
                                 r["machine_busy_seconds"] * 1000 / r["messages"],
                                 r["client_cpu_seconds"] * 1000 / r["messages"],
                                 r["peak_pss_kb"] / 1024.0, r["lost"],
                                 r.get("queue_left_after_stop", -1)),
                              file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        interrupted = True
        print("# interrupted: instances stopped", file=sys.stderr)
    finally:
        rows = summarize(results, sides, sessions_list) if results else []
        if rows and not interrupted:
            print_report(rows, sides, sessions_list, args.repeat)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"machine": info, "commands": commands, "messages": messages,
                           "message_size": MSG_SIZE, "repeat": args.repeat,
                           "interrupted": interrupted, "runs": results, "summary": rows},
                          f, indent=2)
        if args.keep:
            print("# kept %s" % top, file=sys.stderr)
        else:
            shutil.rmtree(top, ignore_errors=True)
    failed = interrupted or any("error" in r or r.get("lost") or r.get("queue_left_after_stop")
                                for r in results)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
