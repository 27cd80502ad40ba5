"""smtplib_helpers - helpers for the smtpserver farm's integration tests.

Python 3 standard library only; builds on tests/farmd/farmlib.py.

  smtp_farm(name, port, **params)   a [farm NAME] section running smtpserver
  Queue(dir)                        look at a spool queue directory
  Raw(port=..|path=..)              a raw SMTP connection that reads replies
                                    (starttls() / tls= for TLS)
  Standalone(...)                   smtpserver run alone (-s), optionally
                                    under a wrapper (strace), with named
                                    listeners
  TestCA(dir)                       a CA and server certificates made with
                                    the openssl command at test time
  zfpasswd(file, user, password)    tools/zfpasswd, the password on stdin
"""

import os
import re
import signal
import socket
import ssl
import subprocess
import tempfile
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_SRCDIR = os.path.abspath(os.environ.get("top_srcdir") or os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(TOP_SRCDIR, "tests", "farmd"))
import farmlib  # noqa: E402
import zfproto as P  # noqa: E402
from farmlib import wait_until, free_port, alive  # noqa: E402,F401

TOP_BUILDDIR = farmlib.TOP_BUILDDIR
SMTPSERVER = os.path.join(TOP_BUILDDIR, "smtpserver", "smtpserver")
ROUTER = os.path.join(TOP_BUILDDIR, "router", "router")
SCHEDULER = os.path.join(TOP_BUILDDIR, "scheduler", "scheduler")
REINJECT = os.path.join(TOP_BUILDDIR, "scheduler", "reinject")
ZFPASSWD = os.path.join(TOP_BUILDDIR, "tools", "zfpasswd")
LOCALHOST = farmlib.LOCALHOST

BASE_GLOBALS = {
    "router_endpoint": "none",
    "mydestination": "localhost, example.test",
    "mynetworks": "127.0.0.0/8",
}


def binaries_missing():
    return [p for p in (farmlib.FARMD, farmlib.ZFARMCTL, SMTPSERVER) if not os.access(p, os.X_OK)]


def smtp_farm(name, port, extra_listen=None, **params):
    listen = "smtp=inet:127.0.0.1:%d" % port
    if extra_listen:
        listen += ", " + extra_listen
    p = {"listen": listen, "program": SMTPSERVER, "process_limit": 4, "client_limit": 16}
    p.update(params)
    return farmlib.farm_section(name, **p)


def start_instance(fd, ports, sockets=()):
    """Start the farmd instance fd (its config written) and wait, 10 s
    each, until every TCP port in ports accepts and every socket name in
    sockets exists under private/; on failure print farmd's log, clean up
    and re-raise.  Returns the instance's Queue."""
    try:
        fd.start()
        wait_until(lambda: all(farmlib.can_connect(p) for p in ports), 10,
                   what="smtpserver")
        for name in sockets:
            path = os.path.join(fd.run, "private", name)
            wait_until(lambda: os.path.exists(path), 10, what="the %s socket" % name)
    except Exception:
        sys.stderr.write(fd.log())
        fd.cleanup()
        raise
    return Queue(os.path.join(fd.run, "queue"))


# ---- the queue ----

from qspool import Queue, qid_is_slot, spool_message_len  # noqa: E402,F401


# ---- a raw client ----

class Raw:
    """One SMTP connection on a raw socket; replies parsed (multi-line).
    tls: an ssl.SSLContext for implicit TLS (the handshake comes first)."""

    def __init__(self, port=None, path=None, timeout=10.0, greet=True, tls=None):
        if path is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(path)
        else:
            self.sock = socket.create_connection((LOCALHOST, port), timeout=timeout)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname="localhost")
        self.buf = b""
        self.greeting = self.reply() if greet else None

    def starttls(self, ctx):
        """The TLS handshake on this connection (after the 220 to STARTTLS).
        Octets already read past the 220 would be a server bug: refused."""
        if self.buf:
            raise AssertionError("plaintext after the 220 to STARTTLS: %r" % self.buf)
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")

    def tls_version(self):
        return self.sock.version() if isinstance(self.sock, ssl.SSLSocket) else None

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _line(self):
        while b"\r\n" not in self.buf:
            try:
                d = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
                d = b""
            if not d:
                return None
            self.buf += d
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def reply(self):
        """(code, [text lines]) of the next reply, or (None, []) at EOF."""
        lines = []
        while True:
            line = self._line()
            if line is None:
                if lines:
                    raise AssertionError("EOF inside a multi-line reply: %r" % lines)
                return None, []
            if len(line) < 3 or not line[:3].isdigit():
                raise AssertionError("not a reply line: %r" % line)
            lines.append(line[4:])
            if len(line) == 3 or line[3] == " ":
                return int(line[:3]), lines
            if line[3] != "-":
                raise AssertionError("bad reply line: %r" % line)

    def reply_line(self):
        """The next reply as one string "CODE text" (last line), None at EOF."""
        code, lines = self.reply()
        if code is None:
            return None
        return "%d %s" % (code, lines[-1])

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply_line()

    def replies(self, n):
        return [self.reply_line() for _ in range(n)]

    def at_eof(self):
        """True once the server closed (reads until EOF, no more replies)."""
        extra = self._line()
        if extra is not None:
            raise AssertionError("expected EOF, got %r" % extra)
        return True

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


def qid_of(reply):
    m = re.search(r"queued as (\S+)", reply or "")
    if not m:
        raise AssertionError("no queue id in %r" % reply)
    return m.group(1)


# ---- processes ----

def vmrss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class Standalone:
    """smtpserver -c CONF -s smtp=inet:127.0.0.1:PORT -n 16 -L stderr, in a
    temp dir with its own run and queue directory.  wrapper: argv prefix
    (strace ...).  Always call stop()."""

    def __init__(self, params=None, stress=False, wrapper=None, tag="alone", queue_dir=None,
                 listeners=("smtp",)):
        """listeners: names of the inet listen sockets, each on a free port
        (self.ports[name]; self.port is the first's)."""
        self.tmp = tempfile.mkdtemp(prefix="zfarm-smtpd-%s-" % tag)
        self.run = os.path.join(self.tmp, "run")
        os.mkdir(self.run)
        self.queue_dir = queue_dir or os.path.join(self.run, "queue")
        self.queue = Queue(self.queue_dir)
        self.ports = {name: free_port() for name in listeners}
        self.port = self.ports[listeners[0]]
        self.conf = os.path.join(self.tmp, "zfarm.conf")
        g = {"run_directory": self.run, "queue_directory": self.queue_dir,
             "log_level": "info"}
        g.update(BASE_GLOBALS)
        g.update(params or {})
        with open(self.conf, "w") as f:
            f.write("".join("%s = %s\n" % (k, v) for k, v in g.items()))
        self.logpath = os.path.join(self.tmp, "smtpserver.log")
        cmd = list(wrapper or []) + [SMTPSERVER, "-c", self.conf]
        for name, port in self.ports.items():
            cmd += ["-s", "%s=inet:127.0.0.1:%d" % (name, port)]
        cmd += ["-n", "16", "-L", "stderr"]
        if stress:
            cmd.append("-S")
        log = open(self.logpath, "ab")
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, cwd=self.tmp, start_new_session=True)
        finally:
            log.close()

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("smtpserver exited %s at start:\n%s"
                                     % (self.proc.returncode, self.log()))
            return all(farmlib.can_connect(p) for p in self.ports.values())
        wait_until(up, 15, what="standalone smtpserver to listen")

    def log(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_log(self, pattern, timeout=5.0):
        def pred():
            return re.search(pattern, self.log())
        pred.__name__ = "log line /%s/" % pattern
        return wait_until(pred, timeout)

    def stop(self):
        """SIGTERM the process group (wrapper and server), then SIGKILL."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


# ---- stand-ins for farms ----

def submitted_qid(f):
    """The queue ID of a SchedSubmit or RouteRequest frame (field dict)."""
    for field in (P.SCHED_SUBMIT, P.ROUTE):
        if field in f:
            return P.fields(P.fields(f[field][0])[1][0])[1][0].decode()
    return None


class FakeScheduler(P.FrameServer):
    """Counts the SchedSubmits per queue ID; answers SchedAck OK unless
    hold is set."""

    def __init__(self, path):
        self.hold = False
        super().__init__(path, self.answer)

    def answer(self, f):
        if P.SCHED_SUBMIT not in f or self.hold:
            return None
        return P.frame(f[2][0], P.SCHED_ACK, P.pb_varint(1, 1))

    def count(self, qid):
        with self.lock:
            return sum(1 for f in self.frames if P.SCHED_SUBMIT in f and submitted_qid(f) == qid)


# ---- TLS and AUTH ----

def openssl(*args, cwd=None):
    r = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=60)
    if r.returncode != 0:
        raise AssertionError("openssl %s: %s" % (" ".join(args), r.stderr))
    return r.stdout


class TestCA:
    """A throw-away CA made with the openssl command (P-256 keys: fast),
    in dir: ca.pem, ca.key; issue() makes server certificates signed by it
    for localhost and 127.0.0.1.  Nothing of it is committed."""

    def __init__(self, directory):
        self.dir = directory
        self.ca = os.path.join(directory, "ca.pem")
        self.ca_key = os.path.join(directory, "ca.key")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", self.ca_key, "-out", self.ca, "-days", "2",
                "-subj", "/CN=zfarm test CA")

    def issue(self, name, cn="localhost"):
        """(cert, key) paths of a new server certificate NAME.pem/NAME.key."""
        key = os.path.join(self.dir, name + ".key")
        csr = os.path.join(self.dir, name + ".csr")
        crt = os.path.join(self.dir, name + ".pem")
        ext = os.path.join(self.dir, name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName = DNS:localhost, IP:127.0.0.1\n"
                    "extendedKeyUsage = serverAuth\n")
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=%s" % cn)
        openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext)
        return crt, key

    def client_context(self):
        """An ssl context that trusts this CA only and checks the name."""
        ctx = ssl.create_default_context(cafile=self.ca)
        ctx.check_hostname = True
        return ctx


def peer_cn(sock):
    """The CN of the certificate an ssl socket got."""
    for rdn in sock.getpeercert()["subject"]:
        for k, v in rdn:
            if k == "commonName":
                return v
    return None


def zfpasswd(path, user, password, scheme=None):
    cmd = [ZFPASSWD, "-f", path]
    if scheme:
        cmd += ["-s", scheme]
    r = subprocess.run(cmd + [user], input=password + "\n", capture_output=True, text=True,
                       timeout=30)
    if r.returncode != 0:
        raise AssertionError("zfpasswd %s: %s" % (user, r.stderr))
    return r.stdout


class FakeDovecot:
    """A stand-in for Dovecot's auth server on a unix socket: the server
    side of the auth protocol 1.2 (handshake, AUTH ... PLAIN resp=...;
    answers OK user=NAME or FAIL).  users: name -> password; a user in
    tempfail gets "FAIL id temp".  Every AUTH line it got is kept."""

    def __init__(self, path, users, canonical=None, tempfail=(), mechs=("PLAIN", "LOGIN")):
        import threading
        self.path = path
        self.users = dict(users)
        self.canonical = dict(canonical or {})
        self.tempfail = set(tempfail)
        self.mechs = mechs
        self.requests = []
        self.connections = 0
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.closing = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        import threading
        while not self.closing:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        import base64
        f = c.makefile("rb")
        try:
            hello = b"VERSION\t1\t2\n" + b"".join(
                b"MECH\t%s\tplaintext\n" % m.encode() for m in self.mechs)
            c.sendall(hello + b"SPID\t4242\nCUID\t1\nCOOKIE\t" + b"ab" * 16 + b"\nDONE\n")
            for line in f:
                fields = line.rstrip(b"\n").split(b"\t")
                if fields[0] != b"AUTH":
                    continue
                rid = fields[1].decode()
                params = dict(p.split(b"=", 1) if b"=" in p else (p, b"") for p in fields[3:])
                with self.lock:
                    self.requests.append({"id": rid, "mech": fields[2].decode(),
                                          "params": {k.decode(): v.decode()
                                                     for k, v in params.items()}})
                parts = base64.b64decode(params.get(b"resp", b"")).split(b"\0")
                user, pw = parts[1].decode(), parts[2].decode()
                if user in self.tempfail:
                    c.sendall(b"FAIL\t%s\tuser=%s\ttemp\treason=db down\n"
                              % (rid.encode(), user.encode()))
                elif self.users.get(user) == pw:
                    c.sendall(b"OK\t%s\tuser=%s\n"
                              % (rid.encode(), self.canonical.get(user, user).encode()))
                else:
                    c.sendall(b"FAIL\t%s\tuser=%s\n" % (rid.encode(), user.encode()))
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.closing = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)
