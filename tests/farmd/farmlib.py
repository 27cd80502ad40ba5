"""farmlib - helpers for farmd's integration tests and benchmarks.

Python 3 standard library only.  A FarmdInstance is one farmd in a private
temporary directory: it writes the config, starts `farmd -f -c CONF` with
its stderr (and its children's) in a log file, asks `zfarmctl status --json`
for the farm table, and in cleanup() stops farmd (SIGTERM, then SIGKILL) and
kills whatever child is left.  Clients only ever use 127.0.0.1.

Binaries come from $top_builddir (default: two levels above this file):
$top_builddir/farmd/farmd, $top_builddir/tools/zfarmctl and
$top_builddir/tests/farm/echo_farm.
"""

import fcntl
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import unittest
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_SRCDIR = os.path.abspath(os.environ.get("top_srcdir") or os.path.join(HERE, "..", ".."))
TOP_BUILDDIR = os.path.abspath(os.environ.get("top_builddir") or TOP_SRCDIR)

FARMD = os.path.join(TOP_BUILDDIR, "farmd", "farmd")
ZFARMCTL = os.path.join(TOP_BUILDDIR, "tools", "zfarmctl")
ECHO_FARM = os.path.join(TOP_BUILDDIR, "tests", "farm", "echo_farm")
PROGRAM_DIRECTORY = os.path.join(TOP_BUILDDIR, "tests", "farm")
PYTHON = sys.executable or "/usr/bin/python3"

LOCALHOST = "127.0.0.1"

# No core files from the children the tests crash on purpose.
try:
    import resource
    resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
except (ImportError, ValueError, OSError):
    pass


def binaries_missing():
    """The list of needed binaries that are not built (yet)."""
    return [p for p in (FARMD, ZFARMCTL, ECHO_FARM) if not os.access(p, os.X_OK)]


# ---- waiting ----

class Timeout(AssertionError):
    pass


def wait_until(fn, timeout, interval=0.02, what=None):
    """Call fn every `interval` s until it returns a true value; return that
    value.  Raise Timeout (an AssertionError) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise Timeout("timed out after %.1f s waiting for %s"
                          % (timeout, what or getattr(fn, "__name__", "condition")))
        time.sleep(interval)


def observe(seconds, fn=None, interval=0.02):
    """Watch for `seconds` (not a synchronisation: a measuring window),
    calling fn (if given) every interval; return the list of its values."""
    values = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if fn is not None:
            values.append(fn())
        time.sleep(interval)
    return values


# ---- ports and processes ----

def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_PORTS_HELD = {}


def _port_reserve(port):
    """True if PORT was not handed out before, in this process or in another
    test process still running; it then stays ours until this process ends
    (an flock on a file named after it, released by the kernel at exit).
    Without this, two picks in one test (a dozen listeners) or two tests
    running at once could get the same port: the second bind then fails."""
    if port in _PORTS_HELD:
        return False
    d = os.path.join(tempfile.gettempdir(), "zfarm-test-ports")
    try:
        os.makedirs(d, mode=0o1777, exist_ok=True)
        fd = os.open(os.path.join(d, str(port)), os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        _PORTS_HELD[port] = None      # no shared directory: this process only
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _PORTS_HELD[port] = fd
    return True


def free_port():
    """A free TCP port on 127.0.0.1, chosen at random below the kernel's
    ephemeral range: a port picked now is often used only later (written
    into a config, a policy table), and one from the ephemeral range could
    meanwhile become the source port of some outgoing connection (seen:
    the smtp transport's), so the bind would fail with EADDRINUSE.
    A port is handed out once per process and never to two test processes
    running at once (_port_reserve)."""
    low = max(_ephemeral_low(), 2048)
    for _ in range(400):
        port = random.randrange(1024 + (low - 1024) // 3, low)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((LOCALHOST, port))
        except OSError:
            continue
        finally:
            s.close()
        if _port_reserve(port):
            return port
    while True:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((LOCALHOST, 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        if _port_reserve(port):
            return port


def proc_state(pid):
    """The state letter of /proc/PID/stat, or None if there is no such pid."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    rp = data.rfind(")")
    fields = data[rp + 2:].split()
    return fields[0] if fields else None


def proc_ppid(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    rp = data.rfind(")")
    fields = data[rp + 2:].split()
    return int(fields[1]) if len(fields) > 1 else None


def proc_start_time(pid):
    """Wall-clock start time of pid (to a clock tick or two), or None."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("ascii", "replace")
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        now = time.time()
    except (OSError, ValueError):
        return None
    rp = data.rfind(")")
    fields = data[rp + 2:].split()
    started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # since boot
    return now - (uptime - started)


def alive(pid):
    """True if pid runs (a zombie counts as gone)."""
    st = proc_state(pid)
    return st is not None and st not in ("Z", "X", "x")


def all_pids():
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            pids.append(int(name))
    return pids


def children_of(ppid):
    """Live processes whose parent is ppid."""
    return [p for p in all_pids() if proc_ppid(p) == ppid and alive(p)]


def pids_mentioning(marker):
    """Live processes of ours whose command line or environment contains
    marker (our temp dir: children get ZFARM_CONFIG=<tmp>/zfarm.conf)."""
    found = []
    m = marker.encode()
    for p in all_pids():
        if p == os.getpid():
            continue
        for what in ("cmdline", "environ"):
            try:
                with open("/proc/%d/%s" % (p, what), "rb") as f:
                    if m in f.read():
                        if alive(p):
                            found.append(p)
                        break
            except OSError:
                pass
    return found


def kill_quietly(pid, sig):
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# ---- clients ----

class Client:
    """One line-oriented connection to an echo farm."""

    def __init__(self, port=None, path=None, timeout=10.0):
        if path is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(path)
        else:
            self.sock = socket.create_connection((LOCALHOST, port), timeout=timeout)
        self.buf = b""

    def send(self, line):
        self.sock.sendall(line.encode() + b"\n")

    def readline(self):
        """One answer line without its LF; None at EOF (or reset)."""
        while b"\n" not in self.buf:
            try:
                data = self.sock.recv(4096)
            except ConnectionResetError:
                return None
            if not data:
                return None
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def ask(self, line):
        self.send(line)
        return self.readline()

    def settimeout(self, t):
        self.sock.settimeout(t)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def ask_once(port, line, timeout=10.0):
    """Connect, send one line, return the answer (None at EOF), close."""
    with Client(port, timeout=timeout) as c:
        return c.ask(line)


def can_connect(port):
    try:
        s = socket.create_connection((LOCALHOST, port), timeout=1.0)
    except OSError:
        return False
    s.close()
    return True


def load(port, connections, threads, timeout=20.0, prefix="hello"):
    """`connections` echo round trips over `threads` parallel clients.
    Returns (elapsed s, answered correctly, refused, other errors list)."""
    per = [connections // threads + (1 if i < connections % threads else 0)
           for i in range(threads)]
    lock = threading.Lock()
    counts = {"ok": 0, "refused": 0, "errors": []}

    def worker(t, n):
        ok = refused = 0
        errors = []
        for i in range(n):
            text = "%s-%d-%d" % (prefix, t, i)
            try:
                with Client(port, timeout=timeout) as c:
                    got = c.ask(text)
                if got == text:
                    ok += 1
                else:
                    errors.append("%s: got %r" % (text, got))
            except ConnectionRefusedError:
                refused += 1
            except OSError as e:
                errors.append("%s: %s" % (text, e))
        with lock:
            counts["ok"] += ok
            counts["refused"] += refused
            counts["errors"].extend(errors)

    ts = [threading.Thread(target=worker, args=(t, n)) for t, n in enumerate(per)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.monotonic() - t0
    return elapsed, counts["ok"], counts["refused"], counts["errors"]


# ---- farmd ----

def farm_section(name, **params):
    lines = ["[farm %s]" % name]
    for k, v in params.items():
        if v is True:
            v = "yes"
        elif v is False:
            v = "no"
        lines.append("%s = %s" % (k, v))
    return "\n".join(lines) + "\n"


class FarmdInstance:
    """One farmd in a temp dir.  Use start(), then cleanup() (always)."""

    def __init__(self, tag="farmd", verbose=True):
        self.tmp = tempfile.mkdtemp(prefix="zfarm-%s-" % tag)
        self.run = os.path.join(self.tmp, "run")
        self.conf = os.path.join(self.tmp, "zfarm.conf")
        self.logpath = os.path.join(self.tmp, "farmd.log")
        self.verbose = verbose
        self.proc = None
        self.procs = []       # every farmd started here
        self.rlimit_nofile = None  # farmd's RLIMIT_NOFILE (soft = hard), if set
        self.extra_env = {}  # added to farmd's (and so its children's) environment
        self.seen_children = set()
        self.globals = {
            "run_directory": self.run,
            "program_directory": PROGRAM_DIRECTORY,
            "stop_grace": "2s",
            "log_level": "info",
        }

    # -- config --

    def config_text(self, farms, extra_globals=None):
        g = dict(self.globals)
        if extra_globals:
            g.update(extra_globals)
        text = "# written by tests/farmd/farmlib.py\n"
        text += "".join("%s = %s\n" % (k, v) for k, v in g.items())
        text += "\n" + "\n".join(farms)
        return text

    def write_config(self, farms, extra_globals=None, raw=None):
        """farms: list of farm_section() texts.  raw: the whole file."""
        text = raw if raw is not None else self.config_text(farms, extra_globals)
        tmp = self.conf + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, self.conf)  # atomic: a reload never reads half a file
        return text

    def write_script(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    # -- process --

    def start(self, *args, wait=True, timeout=10.0):
        """Start farmd -f -c CONF; with wait, until status answers."""
        cmd = [FARMD, "-f", "-c", self.conf]
        if self.verbose:
            cmd.append("-v")
        cmd.extend(args)
        preexec = None
        if self.rlimit_nofile:
            n = self.rlimit_nofile

            def preexec():
                import resource
                resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
        log = open(self.logpath, "ab")
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, cwd=self.tmp,
                                         preexec_fn=preexec,
                                         env=dict(os.environ, **self.extra_env))
        finally:
            log.close()
        self.procs.append(self.proc)
        if wait:
            def up():
                if self.proc.poll() is not None:
                    raise AssertionError("farmd exited with %s at start; log:\n%s"
                                         % (self.proc.returncode, self.log()))
                return self.try_status()
            wait_until(up, timeout, what="farmd to answer status")
        return self.proc

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def ctl(self, *args, timeout=30.0, by_dir=False):
        """Run zfarmctl -c CONF ARGS (by_dir: -o run_directory=RUN ARGS,
        without reading the config file); a CompletedProcess (text)."""
        where = ["-o", "run_directory=%s" % self.run] if by_dir else ["-c", self.conf]
        return subprocess.run([ZFARMCTL] + where + list(args),
                              stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout)

    def try_status(self):
        r = self.ctl("status", "--json")
        if r.returncode != 0:
            return None
        return json.loads(r.stdout)

    def status(self):
        r = self.ctl("status", "--json")
        if r.returncode != 0:
            raise AssertionError("zfarmctl status exit %d: %s" % (r.returncode, r.stderr))
        return json.loads(r.stdout)

    def farm(self, name):
        for f in self.status()["farms"]:
            if f["name"] == name:
                return f
        return None

    def farm_is(self, name, **want):
        """A wait_until predicate: the farm's fields have these values."""
        def pred():
            f = self.farm(name)
            if f is None:
                return None
            for k, v in want.items():
                if f.get(k) != v:
                    return None
            return f
        pred.__name__ = "farm %s %s" % (name, want)
        return pred

    def children(self):
        """Live children of the running farmd (also remembered for cleanup)."""
        if not self.running():
            return []
        kids = children_of(self.proc.pid)
        self.seen_children.update(kids)
        return kids

    # -- log --

    def log(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_count(self, pattern):
        return len(re.findall(pattern, self.log()))

    def wait_log(self, pattern, timeout=5.0, count=1):
        """Wait until the log matches the regex pattern (count times);
        return the last match."""
        def pred():
            ms = list(re.finditer(pattern, self.log()))
            return ms[count - 1] if len(ms) >= count else None
        pred.__name__ = "log line /%s/" % pattern
        return wait_until(pred, timeout)

    # -- stop --

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Signal farmd and wait for it; its exit status."""
        if not self.running():
            return self.proc.returncode if self.proc else None
        self.children()
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def leftovers(self):
        pids = set(pids_mentioning(self.tmp))
        pids.update(p for p in self.seen_children if alive(p))
        for p in self.procs:
            pids.discard(p.pid)
        return sorted(pids)

    def cleanup(self, keep=False):
        """Stop every farmd started here and kill any child left."""
        for p in self.procs:
            if p.poll() is None:
                try:
                    self.seen_children.update(children_of(p.pid))
                except OSError:
                    pass
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        left = self.leftovers()
        for pid in left:
            kill_quietly(pid, signal.SIGKILL)
        if left:
            try:
                wait_until(lambda: not any(alive(p) for p in left), 5)
            except Timeout:
                pass
        if not keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return left


# ---- running a test module ----

class CountingResult(unittest.TextTestResult):
    """Counts passes and remembers failing tests (subtests included)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.passed = 0
        self.failed_tests = []

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed += 1

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.failed_tests.append(test)

    def addError(self, test, err):
        super().addError(test, err)
        self.failed_tests.append(test)

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None and test not in self.failed_tests:
            self.failed_tests.append(test)

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self.failed_tests.append(test)


def run_tests(title, failure_log=None):
    """Run the calling module's tests (unittest.main, so -k and names work),
    print the daemons' log for failures (failure_log(test) gives it; the same
    text is printed once), "<title> tests: N s" and the "N passed, N failed"
    line that .ci/run adds up; exit 1 if anything failed."""
    t0 = time.monotonic()
    runner = unittest.TextTestRunner(verbosity=2, resultclass=CountingResult)
    result = unittest.main(testRunner=runner, exit=False).result
    failed_ids, shown = [], set()
    for test in result.failed_tests:
        if test.id() in failed_ids:
            continue
        failed_ids.append(test.id())
        log = failure_log(test) if failure_log else None
        if log and log not in shown:
            shown.add(log)
            lines = log.splitlines()
            sys.stderr.write("---- log for %s (last %d of %d lines) ----\n"
                             % (test.id(), min(80, len(lines)), len(lines)))
            sys.stderr.write("\n".join(lines[-80:]) + "\n")
    sys.stderr.write("%s tests: %.1f s\n" % (title, time.monotonic() - t0))
    for tid in failed_ids:
        # last, so that a CI log tail names what failed
        sys.stderr.write("FAILED %s\n" % tid)
    print("%d passed, %d failed" % (result.passed, len(failed_ids)))
    sys.exit(1 if failed_ids or not result.wasSuccessful() else 0)
