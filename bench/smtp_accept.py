#!/usr/bin/env python3
"""smtp_accept - SMTP accept throughput: zfarm's smtpserver against Postfix's smtpd.

Not a test.  Measures messages/s that a server accepts and commits durably
to its queue (fsync before the 250 reply to DATA), for zfarm and for
Postfix on the same machine in the same run, with Postfix's smtp-source as
the client (4096-byte bodies, one message per connection unless
--reuse-connections), for 1, 10 and 50 parallel sessions.  The runs are
interleaved per session count (zfarm then Postfix for s=1, then s=10, ...)
so that machine noise hits both.  Every run gets a fresh server instance in
its own temporary directory (both under the same base directory, so on the
same filesystem), a short warm-up (--warmup) and then the timed smtp-source
run.  The directories are all removed at the end, not between runs: on ext4
without a journal, creating files next to many just-deleted inodes costs
about 1 ms of system CPU each, and no run should pay for the previous one.

    python3 bench/smtp_accept.py [--sessions 1,10,50] [-m MESSAGES]
        [--only zfarm|postfix] [--zfarm-processes P] [--zfarm-clients C]
        [--keep] [-v]

Printed per session count: messages/s (messages sent / wall-clock seconds
of the smtp-source run), the ratio zfarm/Postfix, machine CPU milliseconds
per message (busy time from /proc/stat over the run: every process on the
machine, smtp-source included, so the same yardstick for both), and "lost":
messages sent minus messages that landed in the server's queue during the
timed run (counted by walking the queue; must be 0).

zfarm: farmd -f -c CONF from $top_builddir (default: the source tree) with
one "smtpserver" farm listening on 127.0.0.1:PORT; landed messages are the
regular files under RUN/queue/msg/*/.

Postfix: a private instance (never the system one, never port 25) with its
own config_directory (main.cf and master.cf written here), queue_directory
and data_directory, started with `postfix -c DIR start` and stopped with
`postfix -c DIR stop` (leftover processes are killed).  smtpd listens only
on 127.0.0.1:PORT, mynetworks is 127.0.0.0/8, no DNS is used
(smtpd_peername_lookup = no, smtp_dns_support_level = disabled, explicit
myhostname; the recipient rcpt@localhost is in mydestination and
local_recipient_maps is empty, so no passwd/alias lookups).  Nothing is
delivered: master.cf has no qmgr (and no pickup, local or smtp), so every
accepted message stays in the instance's incoming/ queue, written and
fsynced by cleanup before smtpd answers 250 (Postfix's default).  Without
a qmgr, in_flow_delay must be 0 (cleanup would otherwise wait 1 s per
message for a flow-control token that only qmgr hands out), and cleanup
logs "unable to look up public/qmgr" once per message where it would
normally write a wake-up to qmgr's fifo.  Landed messages are the
regular files under incoming, active, deferred, hold and maildrop.
Postfix's log goes to maillog_file in the instance directory (allowed by
maillog_file_prefixes; kept with --keep): without syslog, a failing
`postfix start` says why only there or on a terminal.  Postfix (postfix,
smtp-source) must be installed: apt-get install postfix.

Python 3 standard library only; must run as root (Postfix's master).
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.environ.get("top_srcdir") or os.path.join(HERE, ".."),
                                "tests", "farmd"))
import farmlib  # noqa: E402
import qspool  # noqa: E402

SMTPSERVER_DIR = os.path.join(farmlib.TOP_BUILDDIR, "smtpserver")
SMTPSERVER = os.path.join(SMTPSERVER_DIR, "smtpserver")

POSTFIX = "/usr/sbin/postfix"
POSTCONF = "/usr/sbin/postconf"
SMTP_SOURCE = "/usr/sbin/smtp-source"

MSG_SIZE = 4096
SENDER = "sender@example.test"
RECIPIENT = "rcpt@localhost"
HELO_NAME = "client.zfarm.test"

VERBOSE = False


def log(msg):
    if VERBOSE:
        print("# " + msg, flush=True)


def show_cmd(cmd):
    return " ".join(cmd)


class BenchError(Exception):
    pass


# ---- machine ----

def cpu_busy_seconds():
    """Busy CPU seconds of the whole machine since boot (all CPUs):
    user + nice + system + irq + softirq + steal from /proc/stat (guest
    time is already in user; idle and iowait are not busy)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    assert fields[0] == "cpu"
    v = [int(x) for x in fields[1:]] + [0] * 10
    user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


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
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, kind = mnt, parts[2]
    except OSError:
        pass
    return kind


def count_files(dirs):
    """Regular files anywhere under the given directories."""
    n = 0
    for d in dirs:
        for _root, _dirs, files in os.walk(d):
            for name in files:
                try:
                    st = os.lstat(os.path.join(_root, name))
                except FileNotFoundError:
                    continue
                if (st.st_mode & 0o170000) == 0o100000:
                    n += 1
    return n


def smtp_banner(port, timeout=2.0):
    """The first line the server at 127.0.0.1:port sends, or None."""
    try:
        s = socket.create_connection((farmlib.LOCALHOST, port), timeout=timeout)
    except OSError:
        return None
    try:
        s.settimeout(timeout)
        buf = b""
        while b"\n" not in buf:
            data = s.recv(1024)
            if not data:
                break
            buf += data
        line = buf.split(b"\n", 1)[0].decode("latin-1").rstrip("\r")
        if line.startswith("220"):
            try:
                s.sendall(b"QUIT\r\n")
                s.recv(1024)
            except OSError:
                pass
        return line or None
    except OSError:
        return None
    finally:
        s.close()


def wait_for_220(port, timeout, check=None):
    """Poll until 127.0.0.1:port answers a 220 banner.  check() is called
    each round and may raise (the server died)."""
    def ready():
        if check:
            check()
        line = smtp_banner(port)
        return line if line and line.startswith("220") else None
    ready.__name__ = "a 220 banner on 127.0.0.1:%d" % port
    return farmlib.wait_until(ready, timeout, interval=0.05)


# ---- zfarm ----

class ZfarmServer:
    name = "zfarm"

    def __init__(self, processes, clients, keep):
        self.processes = processes
        self.clients = clients
        self.keep = keep
        self.fd = None
        self.port = None

    @staticmethod
    def missing():
        return [p for p in (farmlib.FARMD, SMTPSERVER) if not os.access(p, os.X_OK)]

    def start(self):
        missing = self.missing()
        if missing:
            raise BenchError("not built: %s" % ", ".join(missing))
        self.fd = fd = farmlib.FarmdInstance(tag="bench-smtp", verbose=False)
        fd.globals = {
            "run_directory": fd.run,
            "program_directory": SMTPSERVER_DIR,
            "log_level": "warn",
            "router_endpoint": "none",
            "mydestination": "localhost",
            "mynetworks": "127.0.0.0/8",
        }
        self.port = farmlib.free_port()
        fd.write_config([farmlib.farm_section(
            "smtpserver", listen="smtp=inet:127.0.0.1:%d" % self.port, program="smtpserver",
            process_limit=self.processes, client_limit=self.clients)])
        log("zfarm: %s -f -c %s  (dir %s)" % (farmlib.FARMD, fd.conf, fd.tmp))
        fd.start(wait=False)

        def check():
            if fd.proc.poll() is not None:
                raise BenchError("farmd exited with %s at start; log:\n%s"
                                 % (fd.proc.returncode, tail(fd.log())))
        try:
            wait_for_220(self.port, 15, check)
        except farmlib.Timeout as e:
            raise BenchError("zfarm: %s; log:\n%s" % (e, tail(fd.log())))

    def count(self):
        return qspool.Queue(os.path.join(self.fd.run, "queue")).count()

    def describe_failure(self):
        return tail(self.fd.log()) if self.fd else ""

    def stop(self):
        if self.fd is None:
            return
        try:
            self.fd.stop(signal.SIGTERM, timeout=10.0)  # SIGKILL after 10 s
        finally:
            left = self.fd.cleanup(keep=self.keep)
            if left:
                print("# zfarm: killed leftover processes %s" % left, file=sys.stderr)
            if self.keep:
                LEFT_DIRS.append(self.fd.tmp)
            self.fd = None


# Instance directories, removed at the very end (see main()).
LEFT_DIRS = []


# ---- Postfix ----

POSTFIX_QUEUES = ("incoming", "active", "deferred", "hold", "maildrop")


def postconf(param):
    r = subprocess.run([POSTCONF, "-dh", param], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else ""


class PostfixServer:
    name = "postfix"

    def __init__(self, keep, process_limit=100):
        self.keep = keep
        self.process_limit = process_limit
        self.tmp = None
        self.started = False

    @staticmethod
    def missing():
        return [p for p in (POSTFIX, POSTCONF, SMTP_SOURCE) if not os.access(p, os.X_OK)]

    def main_cf(self):
        return """\
# written by bench/smtp_accept.py: a private benchmark instance
compatibility_level = 3.6
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

myhostname = bench.zfarm.test
mydomain = zfarm.test
myorigin = $myhostname
mydestination = localhost
mynetworks = 127.0.0.0/8
inet_interfaces = loopback-only
inet_protocols = ipv4
relayhost =
append_dot_mydomain = no
biff = no

# no lookups: no DNS, no passwd/aliases, no reverse lookup of the client
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
lmtp_dns_support_level = disabled
smtp_host_lookup = native
local_recipient_maps =
alias_maps =
alias_database =
fast_flush_domains =
smtpd_client_restrictions =
smtpd_helo_restrictions =
smtpd_sender_restrictions =
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
smtpd_tls_security_level = none
smtp_tls_security_level = none

default_process_limit = {plimit}
# in_flow_delay: cleanup waits up to this long for a token that only qmgr
# hands out; there is no qmgr here, so without 0 every message waits 1 s.
in_flow_delay = 0
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_recipient_rate_limit = 0
""".format(queue=self.queue, data=self.data, tmp=self.tmp,
           command_dir=postconf("command_directory") or "/usr/sbin",
           daemon_dir=postconf("daemon_directory") or "/usr/lib/postfix/sbin",
           meta_dir=postconf("meta_directory") or "/etc/postfix",
           shlib_dir=postconf("shlib_directory") or "/usr/lib/postfix",
           plimit=self.process_limit)

    def master_cf(self):
        # No pickup, qmgr, local, smtp: nothing moves mail out of incoming/.
        return """\
# written by bench/smtp_accept.py: accept only, no queue manager, no delivery
# service type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:{port} inet n  -       n       -       -       smtpd
cleanup   unix  n       -       n       -       0       cleanup
rewrite   unix  -       -       n       -       -       trivial-rewrite
anvil     unix  -       -       n       -       1       anvil
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
postlog   unix-dgram n  -       n       -       1       postlogd
""".format(port=self.port)

    def start(self):
        missing = self.missing()
        if missing:
            raise BenchError("Postfix not installed: %s (apt-get install postfix)"
                             % ", ".join(missing))
        if os.geteuid() != 0:
            raise BenchError("the Postfix instance needs root")
        self.tmp = tempfile.mkdtemp(prefix="zfarm-bench-postfix-")
        os.chmod(self.tmp, 0o755)  # the postfix user walks to queue/ and data/
        self.etc = os.path.join(self.tmp, "etc")
        self.queue = os.path.join(self.tmp, "queue")
        self.data = os.path.join(self.tmp, "data")
        for d in (self.etc, self.queue):
            os.mkdir(d, 0o755)  # root-owned; data/ is created by postfix (mail_owner)
        self.port = farmlib.free_port()
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(self.main_cf())
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(self.master_cf())
        # postfix start runs post-install create-missing (queue and data
        # directories with their owners and modes) and checks; then master -w.
        cmd = [POSTFIX, "-c", self.etc, "start"]
        log("postfix: %s  (dir %s)" % (show_cmd(cmd), self.tmp))
        env = dict(os.environ)
        env.pop("MAIL_CONFIG", None)
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=60, env=env)
        self.started = True  # stop even on failure: a master may be half up
        if r.returncode != 0:
            raise BenchError("%s: exit %d\n%s%s\n%s" % (show_cmd(cmd), r.returncode, r.stdout,
                                                      r.stderr, tail(self.maillog())))
        if VERBOSE and (r.stdout.strip() or r.stderr.strip()):
            log("postfix start said: " + (r.stdout + r.stderr).strip().replace("\n", "\n# "))

        def check():
            if self.master_pid() is None:
                raise BenchError("postfix master is not running; maillog:\n%s"
                                 % tail(self.maillog()))
        try:
            wait_for_220(self.port, 15, check)
        except farmlib.Timeout as e:
            raise BenchError("postfix: %s; maillog:\n%s" % (e, tail(self.maillog())))

    def master_pid(self):
        try:
            with open(os.path.join(self.queue, "pid", "master.pid")) as f:
                pid = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if farmlib.alive(pid) else None

    def count(self):
        return count_files([os.path.join(self.queue, q) for q in POSTFIX_QUEUES])

    def maillog(self):
        try:
            with open(os.path.join(self.tmp, "maillog"), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""

    def describe_failure(self):
        return tail(self.maillog())

    def stop(self):
        if self.tmp is None:
            return
        try:
            if self.started:
                master = self.master_pid()
                cmd = [POSTFIX, "-c", self.etc, "stop"]
                log("postfix: " + show_cmd(cmd))
                try:
                    subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                                   timeout=30)
                except subprocess.TimeoutExpired:
                    pass
                if master is not None:
                    try:
                        farmlib.wait_until(lambda: not farmlib.alive(master), 10,
                                           what="postfix master to exit")
                    except farmlib.Timeout:
                        farmlib.kill_quietly(master, signal.SIGKILL)
                # Everything master started carries MAIL_CONFIG=<our etc/>.
                left = farmlib.pids_mentioning(self.tmp)
                for pid in left:
                    farmlib.kill_quietly(pid, signal.SIGKILL)
                if left:
                    print("# postfix: killed leftover processes %s" % left, file=sys.stderr)
                    try:
                        farmlib.wait_until(lambda: not any(farmlib.alive(p) for p in left), 5)
                    except farmlib.Timeout:
                        pass
        finally:
            if self.keep:
                LEFT_DIRS.append(self.tmp)
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
            self.started = False


# ---- client ----

def tail(text, lines=15):
    return "\n".join(text.rstrip("\n").split("\n")[-lines:])


def smtp_source(port, sessions, messages, reuse, timeout):
    """Run smtp-source; (wall-clock seconds, CPU busy seconds).  Raises
    BenchError on a non-zero exit or a timeout."""
    cmd = [SMTP_SOURCE, "-c", "-s", str(sessions), "-m", str(messages), "-l", str(MSG_SIZE),
           "-M", HELO_NAME, "-f", SENDER, "-t", RECIPIENT]
    if reuse:
        cmd.append("-d")
    cmd.append("127.0.0.1:%d" % port)
    log("run: " + show_cmd(cmd))
    with tempfile.TemporaryFile() as out:
        busy0 = cpu_busy_seconds()
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        try:
            rc = p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            rc = None
        elapsed = time.monotonic() - t0
        busy = cpu_busy_seconds() - busy0
        if rc != 0:
            out.seek(0)
            text = out.read().decode("utf-8", "replace").replace("\r", "\n")
            text = "\n".join(l for l in text.split("\n") if l.strip() and not l.strip().isdigit())
            raise BenchError("%s: %s\n%s" % (show_cmd(cmd),
                                             "timed out after %d s" % timeout if rc is None
                                             else "exit %d" % rc, tail(text)))
    return elapsed, busy


def run_one(server, sessions, messages, warmup, reuse, timeout):
    """One fresh server, warm-up, timed run; a result dict."""
    try:
        server.start()
        if warmup:
            smtp_source(server.port, sessions, warmup, reuse, timeout)
        before = server.count()
        elapsed, busy = smtp_source(server.port, sessions, messages, reuse, timeout)
        landed = server.count() - before
        return {"rate": messages / elapsed, "elapsed": elapsed,
                "cpu_ms": busy * 1000.0 / messages, "lost": messages - landed}
    except BenchError as e:
        detail = server.describe_failure()
        msg = str(e)
        if detail and detail not in msg:
            msg += "\nserver log tail:\n" + detail
        return {"error": msg}
    finally:
        server.stop()


def fmt(r, key, spec):
    if r is None:
        return "-"
    if "error" in r:
        return "error"
    return spec % r[key]


def main():
    global VERBOSE
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", default="1,10,50",
                    help="comma-separated parallel session counts (default 1,10,50)")
    ap.add_argument("-m", "--messages", type=int, default=None,
                    help="messages per timed run (default 500 for 1 session, else 2000)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="untimed messages sent first to each fresh server "
                         "(default 2 per session, at least 10; 0: none)")
    ap.add_argument("--only", choices=("zfarm", "postfix"), help="run one side only")
    ap.add_argument("--zfarm-processes", type=int, default=8,
                    help="process_limit of the smtpserver farm (default 8)")
    ap.add_argument("--zfarm-clients", type=int, default=16,
                    help="client_limit of the smtpserver farm (default 16)")
    ap.add_argument("--postfix-processes", type=int, default=100,
                    help="Postfix default_process_limit (default 100)")
    ap.add_argument("--reuse-connections", action="store_true",
                    help="smtp-source -d: several messages per connection")
    ap.add_argument("--tmpdir", help="base directory of the instances (default $TMPDIR or /tmp); "
                                     "its filesystem decides what fsync costs")
    ap.add_argument("--timeout", type=int, default=600,
                    help="seconds one smtp-source run may take (default 600)")
    ap.add_argument("--keep", action="store_true", help="keep the instances' directories")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="print the command lines and progress")
    args = ap.parse_args()
    VERBOSE = args.verbose
    try:
        sessions_list = [int(s) for s in args.sessions.split(",") if s.strip()]
    except ValueError:
        ap.error("--sessions: comma-separated integers")
    if not sessions_list or min(sessions_list) < 1:
        ap.error("--sessions: positive integers")
    if args.tmpdir:
        tempfile.tempdir = os.path.abspath(args.tmpdir)
    base = tempfile.gettempdir()

    sides = [args.only] if args.only else ["zfarm", "postfix"]
    if "postfix" in sides and PostfixServer.missing():
        sys.exit("Postfix not installed (%s): apt-get install postfix"
                 % ", ".join(PostfixServer.missing()))
    if not os.access(SMTP_SOURCE, os.X_OK):
        sys.exit("%s missing: apt-get install postfix" % SMTP_SOURCE)

    print("smtp accept: %d-byte bodies, %s, base %s (%s), %d CPUs"
          % (MSG_SIZE, "connections reused (-d)" if args.reuse_connections
             else "one message per connection", base, fs_type(base), os.cpu_count() or 0))
    if "zfarm" in sides:
        print("zfarm: %s, smtpserver process_limit %d client_limit %d"
              % (farmlib.TOP_BUILDDIR, args.zfarm_processes, args.zfarm_clients))
    if "postfix" in sides:
        print("postfix %s: private instance, no qmgr (mail stays in incoming/), "
              "default_process_limit %d" % (postconf("mail_version") or "?",
                                            args.postfix_processes))
    sys.stdout.flush()

    results = []
    failed = False
    for s in sessions_list:
        messages = args.messages or (500 if s == 1 else 2000)
        warmup = args.warmup if args.warmup is not None else max(10, 2 * s)
        row = {"sessions": s, "messages": messages}
        for side in sides:
            if side == "zfarm":
                server = ZfarmServer(args.zfarm_processes, args.zfarm_clients, True)
            else:
                server = PostfixServer(True, args.postfix_processes)
            r = run_one(server, s, messages, warmup, args.reuse_connections, args.timeout)
            row[side] = r
            if "error" in r:
                failed = True
                print("%s, %d sessions: %s" % (side, s, r["error"]), file=sys.stderr)
            else:
                failed = failed or r["lost"] != 0
                log("%s, %d sessions: %d messages in %.2f s" % (side, s, messages, r["elapsed"]))
            sys.stderr.flush()
        results.append(row)

    print()
    print("%-9s %-9s %12s %14s %7s %17s %19s %10s"
          % ("sessions", "messages", "zfarm msg/s", "postfix msg/s", "ratio",
             "zfarm cpu ms/msg", "postfix cpu ms/msg", "lost(z/p)"))
    for row in results:
        z, p = row.get("zfarm"), row.get("postfix")
        if z and p and "error" not in z and "error" not in p:
            ratio = "%.2f" % (z["rate"] / p["rate"])
        else:
            ratio = "-"
        print("%-9d %-9d %12s %14s %7s %17s %19s %10s"
              % (row["sessions"], row["messages"], fmt(z, "rate", "%.0f"), fmt(p, "rate", "%.0f"),
                 ratio, fmt(z, "cpu_ms", "%.3f"), fmt(p, "cpu_ms", "%.3f"),
                 "%s/%s" % (fmt(z, "lost", "%d"), fmt(p, "lost", "%d"))))
    sys.stdout.flush()
    # Deleted only now: on ext4 without a journal, creating files near many
    # freshly deleted inodes is slow, and a run must not pay for the last.
    for d in LEFT_DIRS:
        if args.keep:
            print("# kept %s" % d, file=sys.stderr)
        else:
            shutil.rmtree(d, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
