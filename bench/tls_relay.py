#!/usr/bin/env python3
"""tls_relay - zfarm relaying with TLS on both hops against the same without TLS.

Not a test.  A Python SMTP source sends 4 KB messages (one per connection)
over N parallel sessions to zfarm on 127.0.0.1, which relays every message
to a Python SMTP sink on 127.0.0.1 (relayhost [127.0.0.1]:SINKPORT).  Two
modes, alternately, in the same invocation (which one goes first alternates
too), each run on a fresh zfarm instance and a fresh sink:

  plain  the source speaks SMTP in clear; zfarm has no certificate and its
         smtp client does not use STARTTLS (smtp_tls_security_level=none);
  tls    the source does STARTTLS (then EHLO again) on every connection;
         zfarm's smtpserver has a certificate (smtpd_tls_security_level=may)
         and its smtp client requires TLS (smtp_tls_security_level=encrypt:
         a fall-back to clear would fail the run rather than look fast).

    python3 bench/tls_relay.py [--sessions 10] [-m 2000] [--repeat N]
        [--warmup N] [--source-procs 2] [--key ec|rsa] [--dir BASE]
        [--zfarm-log-level warn] [--json FILE] [--timeout S] [--keep] [-v]

It prints one markdown table (medians over --repeat runs; "lost" is the
sum): mode, sessions, messages, seconds (from releasing the source until the
sink has counted the last message), msg/s end to end, zfarm CPU ms/msg, peak
PSS, lost (messages zfarm accepted minus messages the sink counted: must be
0); then the ratios TLS/plain of msg/s and of CPU per message, a table of
what proved TLS was (or was not) used on each hop, and one of the rest: the
CPU the source, the sink and the whole machine spent per message, and how
long one connection of the source took (median), with the STARTTLS
handshake and the EHLO after it on their own.

  zfarm CPU ms/msg is measured as bench/relay.py measures it (its helpers
  are imported, not copied): utime+stime+cutime+cstime from /proc/PID/stat
  over farmd's live process tree, after minus before; "after" is taken when
  the queue is empty again.  The source and the sink are not in that tree.
  msg/s is bounded by the Python source and sink, which share the machine
  (2 CPUs on the development VM) with zfarm, and by the latency of each
  connection (the last table): zfarm's CPU per message is the figure that
  matters; msg/s and its ratio are context.

Certificates: a throwaway CA and a server certificate for localhost and
127.0.0.1 (EC P-256 by default, --key rsa: RSA 2048) are made with the
openssl command in the benchmark's directory at start and removed with it
(nothing is committed).  zfarm's smtpserver and the sink serve that
certificate; the source verifies it against the CA; zfarm's smtp client is
given the CA (smtp_tls_CAfile), although encrypt does not check it.

The source (Python, this file): --source-procs processes (default 2), each
running its share of the sessions as threads with blocking sockets.  Each
session sends one message per connection, as smtp-source does: greeting,
EHLO, [STARTTLS, handshake (no session resumption: a full handshake per
connection), EHLO], then MAIL, RCPT and DATA in one write (PIPELINING),
the 4,096-byte message with "." and QUIT in one write, 250 and 221.  The
same in both modes but for the STARTTLS part.  Timing starts when the
already started processes are released.

The sink (Python, this file): one asyncio process, the same program and
arguments in both modes.  It offers PIPELINING and STARTTLS (with the same
certificate), answers 250 to everything, discards plaintext pipelined
behind STARTTLS, and counts in shared memory: connections, TLS handshakes
(done, failed), messages, messages received on a TLS connection (the client
hop) and messages whose Received: field, written by zfarm's smtpserver,
says "(using TLS..." (the server hop).  A run in tls mode where one of
those is not all of them, or in plain mode where one is not zero, is an
error.  With --zfarm-log-level info the lines "TLS connection established"
in zfarm's log are counted too.

zfarm: from the build tree, with the example configuration, started as
bench/relay.py starts it (its Zfarm class, options appended):
    farmd/farmd -f -c etc/zfarm.conf -o program_directory=$PWD/libexec
        -o run_directory=DIR -o smtp_listen=127.0.0.1:P1
        -o submission_listen=127.0.0.1:P2 -o relayhost=[127.0.0.1]:SINKPORT
        -o log_level=warn
  plain: -o smtp_tls_security_level=none
  tls:   -o smtpd_tls_cert_file=CERT -o smtpd_tls_key_file=KEY
         -o smtpd_tls_security_level=may -o smtp_tls_security_level=encrypt
         -o smtp_tls_CAfile=CA

Python 3 standard library only; loopback only.  Run as root, as
bench/relay.py (that is how it was measured); zfarm must be built.
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import queue
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import relay  # noqa: E402  (bench/relay.py: process tree CPU, PSS sampler, Zfarm)

BenchError = relay.BenchError
log = relay.log

MSG_SIZE = relay.MSG_SIZE
SENDER = relay.SENDER
RECIPIENT = relay.RECIPIENT
HELO_NAME = relay.HELO_NAME
TLS_NAME = "localhost"
MODES = ("plain", "tls")
MODE_LABEL = {"plain": "plain", "tls": "TLS both hops"}
MP = multiprocessing.get_context("fork")


def build_message():
    """MSG_SIZE bytes of header and body, CR LF line ends, no line starts with "."."""
    msg = bytearray(("From: <%s>\r\nTo: <%s>\r\nSubject: tls_relay benchmark\r\n\r\n"
                     % (SENDER, RECIPIENT)).encode())
    line = b"La de da de da " + b"x" * 60 + b"\r\n"
    while MSG_SIZE - len(msg) > len(line) + 2:
        msg += line
    msg += b"z" * (MSG_SIZE - len(msg) - 2) + b"\r\n"
    return bytes(msg)


MESSAGE = build_message()


# ---- certificates ----

def openssl(args, cwd):
    cmd = ["openssl"] + args
    log("openssl: " + " ".join(cmd))
    r = subprocess.run(cmd, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=60)
    if r.returncode != 0:
        raise BenchError("%s: exit %d\n%s" % (" ".join(cmd), r.returncode, r.stderr))


def make_pki(d, key):
    """ca.crt, server.crt (CN and SAN localhost, IP 127.0.0.1), server.key in d."""
    newkey = (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"] if key == "ec"
              else ["-newkey", "rsa:2048"])
    openssl(["req", "-x509"] + newkey + [
        "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=zfarm tls_relay throwaway CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign"], d)
    openssl(["req", "-new"] + newkey + [
        "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=" + TLS_NAME], d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=DNS:%s,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature%s\nextendedKeyUsage=serverAuth\n"
                % (TLS_NAME, ",keyEncipherment" if key == "rsa" else ""))
    openssl(["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.crt", "-days", "2",
             "-extfile", "server.ext"], d)
    os.chmod(os.path.join(d, "server.key"), 0o600)
    os.chmod(os.path.join(d, "ca.key"), 0o600)
    return {"ca": os.path.join(d, "ca.crt"), "cert": os.path.join(d, "server.crt"),
            "key": os.path.join(d, "server.key")}


# ---- the sink: one asyncio process, counters in shared memory ----

# counter slots (RawArray 'q'): each message's own counters are bumped
# before C_MSGS, so a reader that sees C_MSGS sees them too
C_CONN, C_TLS, C_TLS_FAIL, C_MSGS, C_MSGS_TLS, C_RCVD_TLS, C_BAD = range(7)
N_COUNTERS = 7
SINK_NAME = b"sink.bench.invalid"


class SinkSession(asyncio.Protocol):
    def __init__(self, ctx, cnt, info):
        self.ctx = ctx
        self.cnt = cnt
        self.info = info
        self.tr = None
        self.buf = bytearray()
        self.in_data = False
        self.scan = 0
        self.tls = False
        self.handshake = False
        self.done = False

    def connection_made(self, transport):
        self.tr = transport
        self.cnt[C_CONN] += 1
        transport.write(b"220 " + SINK_NAME + b" ESMTP tls_relay sink\r\n")

    def connection_lost(self, exc):
        self.done = True

    def eof_received(self):
        return False

    def message(self, i):
        # self.buf is "\r\n" + the message; i: where "\r\n.\r\n" starts
        head = bytes(self.buf[2:min(i + 2, 8192)])
        end = head.find(b"\r\n\r\n")
        if end >= 0:
            head = head[:end]
        if b"(using TLS" in head:
            self.cnt[C_RCVD_TLS] += 1
        if self.tls:
            self.cnt[C_MSGS_TLS] += 1
        self.cnt[C_MSGS] += 1

    def data_received(self, data):
        if self.done:
            return
        self.buf += data
        if self.handshake:
            # the client's first bytes under TLS can come before start_tls()
            # has returned the new transport: kept until it has
            return
        out = []
        while True:
            if self.in_data:
                i = self.buf.find(b"\r\n.\r\n", self.scan)
                if i < 0:
                    self.scan = max(0, len(self.buf) - 4)
                    break
                self.message(i)
                del self.buf[:i + 5]
                self.in_data = False
                out.append(b"250 2.0.0 Ok: queued\r\n")
                continue
            i = self.buf.find(b"\n")
            if i < 0:
                if len(self.buf) > 4096:
                    self.cnt[C_BAD] += 1
                    self.tr.write(b"".join(out) + b"500 5.5.2 line too long\r\n")
                    self.tr.close()
                    self.done = True
                    return
                break
            line = bytes(self.buf[:i + 1])
            del self.buf[:i + 1]
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                if verb == b"HELO":
                    out.append(b"250 " + SINK_NAME + b"\r\n")
                else:
                    out.append(b"250-" + SINK_NAME + b"\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                               + (b"" if self.tls else b"250-STARTTLS\r\n")
                               + b"250 ENHANCEDSTATUSCODES\r\n")
            elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                out.append(b"250 2.0.0 Ok\r\n")
            elif verb == b"DATA":
                out.append(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                self.in_data = True
                self.buf[0:0] = b"\r\n"  # a message that is only "." still matches
                self.scan = 0
            elif verb == b"QUIT":
                self.tr.write(b"".join(out) + b"221 2.0.0 Bye\r\n")
                self.tr.close()
                self.done = True
                return
            elif line[:8].upper() == b"STARTTLS" and not self.tls:
                self.tr.write(b"".join(out) + b"220 2.0.0 Ready to start TLS\r\n")
                self.buf.clear()  # plaintext pipelined behind STARTTLS: discarded
                self.handshake = True
                self.tr.pause_reading()
                asyncio.ensure_future(self.starttls())
                return
            else:
                self.cnt[C_BAD] += 1
                out.append(b"502 5.5.2 Error: command not recognized\r\n")
        if out:
            self.tr.write(b"".join(out))

    async def starttls(self):
        loop = asyncio.get_running_loop()
        try:
            tr = await loop.start_tls(self.tr, self, self.ctx, server_side=True,
                                      ssl_handshake_timeout=60)
        except (OSError, ssl.SSLError, ConnectionError, asyncio.TimeoutError):
            self.cnt[C_TLS_FAIL] += 1
            self.tr.abort()
            self.done = True
            return
        if tr is None:  # connection lost during the handshake
            self.cnt[C_TLS_FAIL] += 1
            self.done = True
            return
        self.tr = tr
        self.tls = True
        self.handshake = False
        self.cnt[C_TLS] += 1
        if not self.info.value:
            obj = tr.get_extra_info("ssl_object")
            if obj is not None:
                self.info.value = ("%s %s" % (obj.version(), obj.cipher()[0])).encode()[:120]
        if self.buf:
            self.data_received(b"")


def sink_main(sock, cert, key, cnt, info, ready):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)

    async def serve():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SinkSession(ctx, cnt, info), sock=sock,
                                          backlog=1024)
        ready.set()
        async with server:
            await server.serve_forever()
    asyncio.run(serve())


class PySink:
    """The sink in its own process, listening on 127.0.0.1:port; counters
    readable here at any time."""

    def __init__(self, pki):
        self.pki = pki
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.port = self.sock.getsockname()[1]
        self.cnt = MP.RawArray("q", N_COUNTERS)
        self.info = MP.RawArray("c", 128)
        self.proc = None

    def start(self):
        ready = MP.Event()
        self.proc = MP.Process(target=sink_main, name="tls_relay-sink",
                               args=(self.sock, self.pki["cert"], self.pki["key"],
                                     self.cnt, self.info, ready), daemon=True)
        self.proc.start()
        self.sock.close()
        log("sink: pid %d on 127.0.0.1:%d" % (self.proc.pid, self.port))
        deadline = time.monotonic() + 20
        while not ready.wait(0.1):
            if not self.proc.is_alive():
                raise BenchError("the sink exited with %s at start" % self.proc.exitcode)
            if time.monotonic() > deadline:
                raise BenchError("the sink did not start in 20 s")

    def count(self):
        return self.cnt[C_MSGS]

    def counters(self):
        return list(self.cnt)

    def tls_info(self):
        return self.info.value.decode("ascii", "replace")

    def cpu_seconds(self):
        st = relay.proc_stat(self.proc.pid) if self.proc is not None else None
        return st[2] / relay.CLK_TCK if st else 0.0

    def alive(self):
        return self.proc is not None and self.proc.is_alive()

    def stop(self):
        if self.proc is not None:
            if self.proc.is_alive():
                self.proc.terminate()
                self.proc.join(5)
                if self.proc.is_alive():
                    self.proc.kill()
                    self.proc.join(5)
            self.proc = None


# ---- the source: processes x threads, one message per connection ----

class SmtpError(Exception):
    pass


def reply(rf, expect, what):
    lines = []
    while True:
        line = rf.readline(4096)
        if not line:
            raise SmtpError("connection closed waiting for the reply to %s" % what)
        lines.append(line)
        if len(line) < 4 or line[3:4] != b"-":
            break
    code = lines[-1][:3]
    if code != expect:
        raise SmtpError("%s: %s" % (what, b"".join(lines).decode("ascii", "replace").strip()))


def one_message(port, ctx):
    """One connection, one message.  Returns (TLS version and cipher or None,
    seconds from STARTTLS to the handshake's end, seconds of the EHLO after
    it, seconds from the connect to the reply to QUIT)."""
    t0 = time.monotonic()
    t_tls = t_ehlo = 0.0
    s = socket.create_connection(("127.0.0.1", port), timeout=120)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rf = s.makefile("rb")
        reply(rf, b"220", "the greeting")
        s.sendall(b"EHLO " + HELO_NAME.encode() + b"\r\n")
        reply(rf, b"250", "EHLO")
        tls = None
        if ctx is not None:
            t1 = time.monotonic()
            s.sendall(b"STARTTLS\r\n")
            reply(rf, b"220", "STARTTLS")
            rf.close()
            s = ctx.wrap_socket(s, server_hostname=TLS_NAME)
            tls = "%s %s" % (s.version(), s.cipher()[0])
            rf = s.makefile("rb")
            t2 = time.monotonic()
            s.sendall(b"EHLO " + HELO_NAME.encode() + b"\r\n")
            reply(rf, b"250", "EHLO after STARTTLS")
            t_tls, t_ehlo = t2 - t1, time.monotonic() - t2
        s.sendall(("MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (SENDER, RECIPIENT)).encode())
        reply(rf, b"250", "MAIL")
        reply(rf, b"250", "RCPT")
        reply(rf, b"354", "DATA")
        s.sendall(MESSAGE + b".\r\nQUIT\r\n")
        reply(rf, b"250", "end of data")
        try:
            reply(rf, b"221", "QUIT")
        except (SmtpError, OSError):
            pass  # the message is accepted: a bad QUIT does not lose it
        return tls, t_tls, t_ehlo, time.monotonic() - t0
    finally:
        s.close()


def source_worker(idx, port, sessions, messages, cafile, start_ev, resq):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    ctx = None
    if cafile:
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    lock = threading.Lock()
    st = {"left": messages, "accepted": 0, "failed": 0, "tls": 0, "plain": 0,
          "errors": [], "tls_info": None, "tls_ms": [], "ehlo_tls_ms": [], "conn_ms": []}

    def take():
        with lock:
            if st["left"] <= 0:
                return False
            st["left"] -= 1
            return True

    def session():
        while take():
            try:
                tls, t_tls, t_ehlo, t_conn = one_message(port, ctx)
            except (OSError, SmtpError, ssl.SSLError) as e:
                with lock:
                    st["failed"] += 1
                    if len(st["errors"]) < 5:
                        st["errors"].append("%s: %s" % (type(e).__name__, e))
                continue
            with lock:
                st["accepted"] += 1
                st["conn_ms"].append(t_conn * 1000)
                if tls:
                    st["tls_ms"].append(t_tls * 1000)
                    st["ehlo_tls_ms"].append(t_ehlo * 1000)
                    st["tls"] += 1
                    st["tls_info"] = st["tls_info"] or tls
                else:
                    st["plain"] += 1

    threads = [threading.Thread(target=session, daemon=True) for _ in range(sessions)]
    resq.put(("ready", idx))
    start_ev.wait()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    st["cpu_seconds"] = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    del st["left"]
    resq.put(("done", idx, st))


class PySource:
    """--source-procs processes, sessions spread over them, messages in
    proportion; start() forks them and waits until they are ready, go()
    releases them."""

    def __init__(self, port, sessions, messages, cafile, procs):
        procs = max(1, min(procs, sessions))
        self.resq = MP.Queue()
        self.start_ev = MP.Event()
        self.procs = []
        self.results = {}
        self.n = procs
        for i in range(procs):
            s = sessions // procs + (1 if i < sessions % procs else 0)
            m = messages * s // sessions
            self.procs.append((s, m))
        # messages left by the rounding go to the first processes
        short = messages - sum(m for _s, m in self.procs)
        for i in range(short):
            s, m = self.procs[i % procs]
            self.procs[i % procs] = (s, m + 1)
        self.workers = [MP.Process(target=source_worker, name="tls_relay-source-%d" % i,
                                   args=(i, port, s, m, cafile, self.start_ev, self.resq),
                                   daemon=True)
                        for i, (s, m) in enumerate(self.procs)]

    def start(self):
        for w in self.workers:
            w.start()
        ready = 0
        deadline = time.monotonic() + 30
        while ready < self.n:
            try:
                msg = self.resq.get(timeout=0.5)
            except queue.Empty:
                if time.monotonic() > deadline or not all(w.is_alive() for w in self.workers):
                    raise BenchError("the source processes did not start")
                continue
            if msg[0] == "ready":
                ready += 1

    def go(self):
        self.start_ev.set()

    def poll(self):
        """True once every worker has reported."""
        while True:
            try:
                msg = self.resq.get_nowait()
            except queue.Empty:
                break
            if msg[0] == "done":
                self.results[msg[1]] = msg[2]
        if len(self.results) < self.n:
            dead = [w for i, w in enumerate(self.workers)
                    if i not in self.results and not w.is_alive() and w.exitcode != 0]
            if dead:
                raise BenchError("a source process died (exit %s)" % dead[0].exitcode)
        return len(self.results) == self.n

    def total(self, key):
        return sum(r[key] for r in self.results.values())

    def times(self, key):
        return [x for r in self.results.values() for x in r[key]]

    def errors(self):
        return [e for r in self.results.values() for e in r["errors"]]

    def tls_info(self):
        return next((r["tls_info"] for r in self.results.values() if r["tls_info"]), None)

    def stop(self):
        for w in self.workers:
            if w.is_alive():
                w.terminate()
        for w in self.workers:
            w.join(5)
            if w.is_alive():
                w.kill()
                w.join(5)


# ---- zfarm ----

class TlsZfarm(relay.Zfarm):
    """relay.py's zfarm instance with the options of one mode appended."""

    def __init__(self, workdir, sink_port, mode, pki):
        super().__init__(workdir, sink_port)
        self.mode = mode
        for o in mode_options(mode, pki):
            self.cmd += ["-o", o]

    def tls_log_lines(self):
        """Lines "TLS connection established from" (smtpserver: the server
        hop) and "... to" (smtp: the client hop) in the log (info level)."""
        text = relay.read_text(self.logpath)
        return (text.count("TLS connection established from "),
                text.count("TLS connection established to "))


def mode_options(mode, pki):
    if mode == "plain":
        return ["smtp_tls_security_level=none"]
    return ["smtpd_tls_cert_file=" + pki["cert"], "smtpd_tls_key_file=" + pki["key"],
            "smtpd_tls_security_level=may", "smtp_tls_security_level=encrypt",
            "smtp_tls_CAfile=" + pki["ca"]]


# ---- one run ----

def send(mta, sink, mode, sessions, messages, timeout, procs, pki, sampler=None,
         stall=30.0):
    """The source to zfarm; wait until the sink has the messages the source
    got accepted and zfarm's queue is empty.  Returns a dict of the timings
    and counters."""
    c0 = sink.counters()
    base = c0[C_MSGS]
    src = PySource(mta.port, sessions, messages, pki["ca"] if mode == "tls" else None, procs)
    t_end = t_sent = None
    try:
        src.start()
        cpu0 = relay.tree_cpu_seconds(mta.root())
        busy0 = relay.machine_busy_seconds()
        sink0 = sink.cpu_seconds()
        t0 = time.monotonic()
        src.go()
        if sampler is not None:
            sampler.start()
        deadline = t0 + timeout
        last, last_t = base, t0
        while True:
            now = time.monotonic()
            done = src.poll()
            if done and t_sent is None:
                t_sent = now
            got = sink.count()
            if got != last:
                last, last_t = got, now
            target = base + (src.total("accepted") if done else messages)
            if got >= target and (done or target == base + messages):
                t_end = now
                break
            if mta.root() is None:
                raise BenchError("zfarm died during the run (sink has %d of %d)"
                                 % (got - base, messages))
            if not sink.alive():
                raise BenchError("the sink died during the run")
            if now >= deadline or (done and now - last_t > stall):
                raise BenchError("%s: the sink has %d of %d messages (%d accepted by zfarm, "
                                 "%d failed at the source: %s), %d file(s) in zfarm's queue"
                                 % ("timed out after %d s" % timeout if now >= deadline
                                    else "nothing arrived for %d s" % stall,
                                    got - base, messages, src.total("accepted") if done else -1,
                                    src.total("failed") if done else -1,
                                    "; ".join(src.errors()[:3]) if done else "-",
                                    mta.queue_count()))
            time.sleep(0.01)
        while not src.poll():
            if time.monotonic() >= deadline:
                raise BenchError("the sink has every message but the source still runs")
            time.sleep(0.01)
        t_sent = t_sent or time.monotonic()
        try:
            relay.wait_until(lambda: mta.queue_count() == 0,
                             max(5, min(60, deadline - time.monotonic())),
                             interval=0.02, what="zfarm's queue to empty")
        except BenchError:
            pass
        cpu1 = relay.tree_cpu_seconds(mta.root())
        busy1 = relay.machine_busy_seconds()
        sink1 = sink.cpu_seconds()
    finally:
        src.stop()
        if sampler is not None and sampler.is_alive():
            sampler.finish()
    time.sleep(0.3)  # a duplicate would show now
    c1 = sink.counters()
    return {"seconds": t_end - t0, "source_seconds": t_sent - t0,
            "cpu_seconds": cpu1 - cpu0, "machine_busy_seconds": busy1 - busy0,
            "sink_cpu_seconds": sink1 - sink0,
            "source_cpu_seconds": src.total("cpu_seconds"),
            "source_processes": src.n,
            "accepted": src.total("accepted"), "failed": src.total("failed"),
            "source_errors": src.errors(),
            "source_tls": src.total("tls"), "source_plain": src.total("plain"),
            "source_tls_info": src.tls_info(),
            "conn_ms": median(src.times("conn_ms")),
            "tls_ms": median(src.times("tls_ms")),
            "ehlo_tls_ms": median(src.times("ehlo_tls_ms")),
            "received": c1[C_MSGS] - base,
            "sink_messages_tls": c1[C_MSGS_TLS] - c0[C_MSGS_TLS],
            "sink_received_tls": c1[C_RCVD_TLS] - c0[C_RCVD_TLS]}


def check_tls(mode, r, counters, log_from=None, log_to=None):
    """Errors: what shows that a hop did not use TLS in tls mode, or did in
    plain mode.  counters: the sink's since it started (warm-up included);
    log_from, log_to: zfarm's log lines (None: not at info level)."""
    errs = []
    if log_from is not None:
        if mode == "tls" and (log_from < r["accepted"] or log_to < 1):
            errs.append("zfarm's log has %d \"TLS connection established from\" lines "
                        "(%d messages) and %d \"... to\"" % (log_from, r["accepted"], log_to))
        if mode == "plain" and (log_from or log_to):
            errs.append("plain mode: zfarm's log has TLS connections (%d from, %d to)"
                        % (log_from, log_to))
    conn, tls, fail = counters[C_CONN], counters[C_TLS], counters[C_TLS_FAIL]
    if counters[C_BAD]:
        errs.append("the sink got %d commands it does not know" % counters[C_BAD])
    if mode == "tls":
        if r["source_plain"]:
            errs.append("server hop: %d source connections without TLS" % r["source_plain"])
        if r["sink_received_tls"] != r["received"]:
            errs.append("server hop: %d of %d messages have no \"using TLS\" in Received:"
                        % (r["received"] - r["sink_received_tls"], r["received"]))
        if r["sink_messages_tls"] != r["received"]:
            errs.append("client hop: %d of %d messages reached the sink in clear"
                        % (r["received"] - r["sink_messages_tls"], r["received"]))
        if tls != conn or fail:
            errs.append("client hop: %d of %d sink connections did TLS (%d handshakes failed)"
                        % (tls, conn, fail))
    else:
        if r["source_tls"] or r["sink_received_tls"] or r["sink_messages_tls"] or tls or fail:
            errs.append("plain mode used TLS: source %d, Received %d, sink messages %d, "
                        "sink handshakes %d (+%d failed)"
                        % (r["source_tls"], r["sink_received_tls"], r["sink_messages_tls"],
                           tls, fail))
    return errs


def run_one(mode, sessions, messages, warmup, timeout, top, pki, procs):
    workdir = tempfile.mkdtemp(prefix="%s-s%d-" % (mode, sessions), dir=top)
    os.chmod(workdir, 0o755)
    sink = PySink(pki)
    mta = None
    result = {"mode": mode, "sessions": sessions, "messages": messages, "dir": workdir}
    try:
        sink.start()
        mta = TlsZfarm(workdir, sink.port, mode, pki)
        result["command"] = relay.show_cmd(mta.cmd)
        mta.start()
        if warmup:
            w = send(mta, sink, mode, min(sessions, warmup), warmup, timeout, procs, pki)
            if w["received"] != warmup or w["failed"]:
                raise BenchError("warm-up: the sink got %d of %d (%d failed at the source: %s)"
                                 % (w["received"], warmup, w["failed"],
                                    "; ".join(w["source_errors"][:3])))
        mta.sampler = relay.Sampler(mta.root)
        r = send(mta, sink, mode, sessions, messages, timeout, procs, pki, mta.sampler)
        result.update(r)
        counters = sink.counters()
        result["sink_connections"] = counters[C_CONN]
        result["sink_tls_handshakes"] = counters[C_TLS]
        result["sink_tls_failed"] = counters[C_TLS_FAIL]
        result["sink_tls_info"] = sink.tls_info()
        result["zfarm_log_tls_from"], result["zfarm_log_tls_to"] = mta.tls_log_lines()
        result["msg_per_s"] = messages / r["seconds"]
        result["cpu_s_per_msg"] = r["cpu_seconds"] / messages
        result["peak_pss_kb"] = mta.sampler.peak_kb
        result["peak_processes"] = mta.sampler.peak_procs
        result["pss_samples"] = mta.sampler.samples
        result["sampler_cpu_seconds"] = mta.sampler.cpu_seconds
        result["lost"] = r["accepted"] - r["received"]
        errs = []
        if r["failed"]:
            errs.append("%d messages failed at the source: %s"
                        % (r["failed"], "; ".join(r["source_errors"][:3])))
        at_info = relay.Zfarm.log_level in ("info", "debug")
        errs += check_tls(mode, r, counters,
                          result["zfarm_log_tls_from"] if at_info else None,
                          result["zfarm_log_tls_to"] if at_info else None)
        if errs:
            raise BenchError("\n".join(errs))
    except BenchError as e:
        msg = str(e)
        if mta is not None:
            detail = mta.describe_failure()
            if detail:
                msg += "\nzfarm log tail:\n%s" % detail
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

median = relay.median


def summarize(results, sessions_list):
    rows = []
    for s in sessions_list:
        for mode in MODES:
            rs = [r for r in results if r["mode"] == mode and r["sessions"] == s]
            ok = [r for r in rs if "error" not in r]
            row = {"mode": mode, "sessions": s, "runs": len(rs), "errors": len(rs) - len(ok),
                   "messages": rs[0]["messages"] if rs else 0}
            if ok:
                for key in ("seconds", "msg_per_s", "cpu_s_per_msg", "peak_pss_kb"):
                    row[key] = median([r[key] for r in ok])
                for key in ("source_cpu_seconds", "sink_cpu_seconds", "machine_busy_seconds"):
                    row[key + "_per_msg"] = median([r[key] / r["messages"] for r in ok])
                for key in ("conn_ms", "tls_ms", "ehlo_tls_ms"):
                    v = [r[key] for r in ok if r[key] is not None]
                    row[key] = median(v) if v else None
                row["lost"] = sum(r["lost"] for r in ok)
                row["queue_left"] = sum(r.get("queue_left_after_stop", 0) for r in ok)
                for key in ("accepted", "source_tls", "received", "sink_messages_tls",
                            "sink_received_tls", "sink_connections", "sink_tls_handshakes",
                            "zfarm_log_tls_from", "zfarm_log_tls_to"):
                    row[key] = sum(r[key] for r in ok)
                row["source_tls_info"] = next((r["source_tls_info"] for r in ok
                                               if r["source_tls_info"]), None)
                row["sink_tls_info"] = next((r["sink_tls_info"] for r in ok
                                             if r["sink_tls_info"]), None)
            rows.append(row)
    return rows


def print_report(rows, sessions_list, repeat, log_level):
    def f(row, key, spec, scale=1.0):
        v = row.get(key)
        return "error" if v is None else spec % (v * scale)

    def errs(row):
        return " (%d of %d runs failed)" % (row["errors"], row["runs"]) if row["errors"] else ""
    print()
    print("| mode | sessions | messages | seconds | msg/s | zfarm CPU ms/msg | peak PSS MB "
          "| lost |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        lost = row.get("lost")
        print("| %s | %d | %d | %s | %s | %s | %s | %s |%s"
              % (MODE_LABEL[row["mode"]], row["sessions"], row["messages"],
                 f(row, "seconds", "%.2f"), f(row, "msg_per_s", "%.0f"),
                 f(row, "cpu_s_per_msg", "%.3f", 1000.0),
                 f(row, "peak_pss_kb", "%.1f", 1 / 1024.0),
                 "error" if lost is None else "%d" % lost, errs(row)))
    print()
    print("| sessions | TLS/plain msg/s | TLS/plain zfarm CPU per msg |")
    print("| ---: | ---: | ---: |")
    for s in sessions_list:
        p = [r for r in rows if r["mode"] == "plain" and r["sessions"] == s][0]
        t = [r for r in rows if r["mode"] == "tls" and r["sessions"] == s][0]

        def ratio(key):
            return "%.2f" % (t[key] / p[key]) if t.get(key) and p.get(key) else "-"
        print("| %d | %s | %s |" % (s, ratio("msg_per_s"), ratio("cpu_s_per_msg")))
    print()
    print("TLS, summed over the runs (timed runs; sink connections and handshakes "
          "include the warm-up):")
    print()
    print("| mode | sessions | source connections with STARTTLS | Received: \"using TLS\" "
          "| messages over TLS at the sink | sink connections (TLS) | zfarm log "
          "\"TLS connection established\" from / to |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        if "received" not in row:
            print("| %s | %d | error | error | error | error | error |"
                  % (MODE_LABEL[row["mode"]], row["sessions"]))
            continue
        print("| %s | %d | %d of %d | %d of %d | %d of %d | %d (%d) | %s |"
              % (MODE_LABEL[row["mode"]], row["sessions"], row["source_tls"], row["accepted"],
                 row["sink_received_tls"], row["received"], row["sink_messages_tls"],
                 row["received"], row["sink_connections"], row["sink_tls_handshakes"],
                 "%d / %d" % (row["zfarm_log_tls_from"], row["zfarm_log_tls_to"])
                 if log_level in ("info", "debug")
                 else "- (log_level %s)" % log_level))
    for row in rows:
        if row["mode"] == "tls" and (row.get("source_tls_info") or row.get("sink_tls_info")):
            print()
            print("Negotiated: server hop %s; client hop %s."
                  % (row.get("source_tls_info") or "?", row.get("sink_tls_info") or "?"))
            break
    print()
    print("The rest, medians: CPU per message of the Python source and sink (they share the "
          "machine with zfarm and bound msg/s) and of the whole machine; what one connection "
          "of the source took, STARTTLS to the end of the handshake and the EHLO after it "
          "included:")
    print()
    print("| mode | sessions | source CPU ms/msg | sink CPU ms/msg | machine busy ms/msg "
          "| connection ms | STARTTLS + handshake ms | EHLO after TLS ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        tls = row["mode"] == "tls"
        print("| %s | %d | %s | %s | %s | %s | %s | %s |"
              % (MODE_LABEL[row["mode"]], row["sessions"],
                 f(row, "source_cpu_seconds_per_msg", "%.3f", 1000.0),
                 f(row, "sink_cpu_seconds_per_msg", "%.3f", 1000.0),
                 f(row, "machine_busy_seconds_per_msg", "%.3f", 1000.0),
                 f(row, "conn_ms", "%.1f"),
                 f(row, "tls_ms", "%.1f") if tls else "-",
                 f(row, "ehlo_tls_ms", "%.1f") if tls else "-"))
    print()
    print("Medians over %d run(s) per row; lost is a sum (must be 0).  msg/s depends on the "
          "Python source and sink, which share the machine with zfarm, and on the latency of "
          "each connection (last table): zfarm CPU ms/msg is the figure that matters." % repeat)


# ---- main ----

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", default="10",
                    help="comma-separated parallel session counts (default 10)")
    ap.add_argument("-m", "--messages", type=int, default=2000,
                    help="messages per timed run (default 2000)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs per (mode, sessions), alternating; the table shows medians")
    ap.add_argument("--warmup", type=int, default=None,
                    help="messages relayed by each fresh instance before the timed run "
                         "(default 2 per session, at least 20; 0: none)")
    ap.add_argument("--source-procs", type=int, default=2,
                    help="processes of the source (default 2), sessions spread over them")
    ap.add_argument("--key", choices=("ec", "rsa"), default="ec",
                    help="key of the CA and the server certificate: ec (P-256, default) or "
                         "rsa (2048 bits)")
    ap.add_argument("--zfarm-log-level", default="warn",
                    help="zfarm's log_level (default warn; info also counts zfarm's "
                         "\"TLS connection established\" lines)")
    ap.add_argument("--dir", default="/var/tmp",
                    help="base directory of the instances (default /var/tmp); its "
                         "filesystem decides what fsync costs")
    ap.add_argument("--timeout", type=int, default=600,
                    help="seconds one timed run may take (default 600)")
    ap.add_argument("--json", metavar="FILE", help="write every run and the summary as JSON")
    ap.add_argument("--keep", action="store_true",
                    help="keep the directories (instances, certificates, logs)")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="progress and command lines on stderr")
    args = ap.parse_args()
    relay.VERBOSE = args.verbose
    try:
        sessions_list = [int(s) for s in args.sessions.split(",") if s.strip()]
    except ValueError:
        ap.error("--sessions: comma-separated integers")
    if not sessions_list or min(sessions_list) < 1:
        ap.error("--sessions: positive integers")
    if args.messages < 1 or args.repeat < 1 or args.source_procs < 1:
        ap.error("--messages, --repeat and --source-procs: positive")
    if relay.Zfarm.missing():
        sys.exit("zfarm not built (%s): make" % ", ".join(relay.Zfarm.missing()))
    if shutil.which("openssl") is None:
        sys.exit("openssl missing: apt-get install openssl")
    relay.Zfarm.log_level = args.zfarm_log_level
    signal.signal(signal.SIGTERM, relay.on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    base = os.path.abspath(args.dir)
    os.makedirs(base, exist_ok=True)
    top = tempfile.mkdtemp(prefix="zfarm-tls-relay-", dir=base)
    os.chmod(top, 0o755)
    results = []
    interrupted = False
    info = {}
    try:
        pkidir = os.path.join(top, "pki")
        os.mkdir(pkidir, 0o755)
        try:
            pki = make_pki(pkidir, args.key)
        except BenchError as e:
            sys.exit(str(e))
        info = relay.machine_info(top)
        info.pop("postfix_version", None)
        info["openssl"] = ssl.OPENSSL_VERSION
        cmd_plain = ("cd %s && %s -f -c %s -o program_directory=%s -o run_directory=DIR "
                     "-o smtp_listen=127.0.0.1:P1 -o submission_listen=127.0.0.1:P2 "
                     "-o relayhost=[127.0.0.1]:SINKPORT -o log_level=%s"
                     % (relay.TOP_BUILDDIR, relay.FARMD, relay.ZFARM_CONF, relay.LIBEXEC,
                        args.zfarm_log_level))
        pki_names = {"cert": "PKI/server.crt", "key": "PKI/server.key", "ca": "PKI/ca.crt"}
        commands = {"zfarm": cmd_plain,
                    "plain": " ".join("-o " + o for o in mode_options("plain", pki_names)),
                    "tls": " ".join("-o " + o for o in mode_options("tls", pki_names)),
                    "zfarm stop": "%s -c %s -o run_directory=DIR stop"
                                  % (relay.ZFARMCTL, relay.ZFARM_CONF)}
        warm_desc = ("%d" % args.warmup if args.warmup is not None
                     else "max(20, 2 x sessions)")
        print("# TLS relay benchmark: Python source -> zfarm -> Python sink on 127.0.0.1, "
              "TLS on both hops against plain")
        print()
        print("- machine: %d CPUs (nproc %d), %s, kernel %s, %d MB RAM"
              % (info["cpus"], info["nproc"], info.get("cpu_model", "?"), info["kernel"],
                 info.get("mem_total_mb", 0)))
        print("- instances under %s (%s), PKI = %s" % (top, info["fs_type"], pkidir))
        print("- zfarm %s (%s); %s; Python %s"
              % (info["zfarm_commit"], relay.TOP_BUILDDIR, info["openssl"], info["python"]))
        print("- certificate: %s, for %s and 127.0.0.1, from a throwaway CA made now"
              % ("EC P-256" if args.key == "ec" else "RSA 2048", TLS_NAME))
        print("- %d messages of %d bytes per run, one per connection (full TLS handshake per "
              "connection in TLS mode); warm-up %s messages; %d run(s) per (mode, sessions), "
              "alternating" % (args.messages, MSG_SIZE, warm_desc, args.repeat))
        print("- source: %d process(es), the sessions as threads; sink: one asyncio process, "
              "STARTTLS offered in both modes" % args.source_procs)
        print("- commands:")
        print("  - zfarm: `%s`" % commands["zfarm"])
        print("  - plain adds: `%s`" % commands["plain"])
        print("  - TLS adds: `%s`" % commands["tls"])
        print("  - stop: `%s`" % commands["zfarm stop"])
        print("- msg/s is bounded by the Python source and sink sharing the machine with "
              "zfarm, and by each connection's latency; zfarm CPU ms/msg is the figure "
              "that matters")
        sys.stdout.flush()

        for rep in range(args.repeat):
            for si, s in enumerate(sessions_list):
                order = list(MODES)
                if (rep + si) % 2 == 1:
                    order.reverse()
                for mode in order:
                    warmup = args.warmup if args.warmup is not None else max(20, 2 * s)
                    print("# %s, %d sessions, run %d/%d ..." % (mode, s, rep + 1, args.repeat),
                          file=sys.stderr, flush=True)
                    r = run_one(mode, s, args.messages, warmup, args.timeout, top, pki,
                                args.source_procs)
                    r["repeat"] = rep
                    results.append(r)
                    if "error" in r:
                        print("# %s, %d sessions: ERROR %s" % (mode, s, r["error"]),
                              file=sys.stderr, flush=True)
                    else:
                        print("#   %.2f s, %.0f msg/s, zfarm %.3f CPU ms/msg (source %.3f, "
                              "sink %.3f, machine %.3f), peak PSS %.1f MB, lost %d, queue %d, "
                              "sink connections %d (TLS %d)"
                              % (r["seconds"], r["msg_per_s"], r["cpu_s_per_msg"] * 1000,
                                 r["source_cpu_seconds"] * 1000 / r["messages"],
                                 r["sink_cpu_seconds"] * 1000 / r["messages"],
                                 r["machine_busy_seconds"] * 1000 / r["messages"],
                                 r["peak_pss_kb"] / 1024.0, r["lost"],
                                 r.get("queue_left_after_stop", -1), r["sink_connections"],
                                 r["sink_tls_handshakes"]),
                              file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        interrupted = True
        print("# interrupted: instances stopped", file=sys.stderr)
    finally:
        rows = summarize(results, sessions_list) if results else []
        if rows and not interrupted:
            print_report(rows, sessions_list, args.repeat, args.zfarm_log_level)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"machine": info, "messages": args.messages,
                           "message_size": MSG_SIZE, "repeat": args.repeat, "key": args.key,
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
