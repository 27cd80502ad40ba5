"""smtp_peers - scriptable SMTP and LMTP servers for the smtp/lmtp transport tests.

Python 3 standard library only (threads and blocking sockets).  One Peer
listens on 127.0.0.1 (a free port) or on a unix socket, serves each
connection in a thread and keeps what it saw:

  Peer(path=None, host="127.0.0.1", port=0, **opts)
                          start; .port / .path; .close()
  .connections            connections accepted
  .transactions           list of Txn (mail line, rcpt lines, accepted rcpts,
                          raw DATA bytes as received, unstuffed body)
  .quits                  QUIT commands received
  .commands               every command line, in order (all connections)
  .wait(pred, timeout)    poll with a deadline (no sleeps as synchronisation)
  .drop_idle()            close every open connection from the server's side

Options (keyword arguments):
  esmtp=True       False: EHLO is answered 502 (HELO only)
  ehlo_reply=None  a reply to send to EHLO instead of the capabilities (e.g. "421 ...")
  pipelining, eightbitmime, smtputf8, dsn: announce these (defaults True, True, True, False)
  size=None        announce SIZE n
  lmtp=False       LMTP: LHLO, one end-of-data reply per accepted recipient
  greeting         the greeting line(s) (default "220 peer.test ESMTP")
  data_reply       reply to the end of data (default "250 2.0.0 Ok: queued as Q<n>")
  hostile          None or one of:
      "endless"      an endless multi-line reply to EHLO (until the client goes)
      "longline"     a 64 KB greeting line
      "garbage"      a greeting that is not a reply
      "silent"       accept, never say anything
      "greet421"     "421 4.3.2 busy" greeting, then close
      "greet554"     "554 5.7.1 go away" greeting
      "mail_eof"     close instead of answering MAIL
      "mail_partial" answer MAIL with "250-partial" then close (EOF inside a reply)
      "rcpt_silent"  never answer RCPT
      "data_silent"  never answer the end of data
      "flood"        answer MAIL with an endless stream of bytes without line end
  mail_421_after=N answer the MAIL of a connection's (N+1)th transaction with
                   421 and close (a server that timed the idle connection out)
  tls=None         an ssl.SSLContext (server side): announce STARTTLS and do it
                   (RFC 3207: after the handshake the EHLO state is reset and
                   STARTTLS is no longer announced)
  starttls_reply=None  a reply to STARTTLS instead of "220 2.0.0 Ready to start TLS"
                   (e.g. "454 4.7.0 TLS not available"), the session going on in clear
  tls_hostile      None or one of:
      "inject"       bytes right behind the 220 to STARTTLS, in the same write
                     (TLS_INJECT: a fake EHLO reply announcing SIZE 10), then
                     the handshake; a client that parses them is vulnerable to
                     CVE-2011-0411-style plaintext injection
      "garbage"      220 to STARTTLS, then bytes that are not TLS, then close
                     (the client's handshake fails)
      "silent"       220 to STARTTLS, then nothing (the handshake times out)

TLS state: .tls_sessions lists (connection number, version, cipher, SNI name)
per completed handshake; .sni every SNI name a ClientHello carried (None:
none), handshake completed or not; Txn.tls is (version, cipher) or None.

Recipients are answered by their local part:
  temp*@  451 4.2.0 <addr>: mailbox busy (RCPT)
  perm*@  550 5.1.1 <addr>: user unknown (RCPT)
  late*@  LMTP only: 452 4.2.2 mailbox full after DATA (others 250)
  ml*@    a multi-line 550 5.7.1 reply to RCPT
anything else 250 2.1.5 Ok.
"""

import os
import socket
import threading
import time

# what tls_hostile="inject" puts behind the 220 (a fake EHLO reply)
TLS_INJECT = b"250-injected.test\r\n250 SIZE 10\r\n"


class Txn:
    def __init__(self, mail):
        self.mail = mail
        self.rcpts = []      # RCPT command lines
        self.accepted = []   # addresses accepted
        self.data = b""      # raw DATA bytes as received, up to the "." line
        self.body = b""      # dot-unstuffed
        self.conn = 0        # connection number (1-based)
        self.tls = None      # (version, cipher) when the transaction ran over TLS

    def __repr__(self):
        return "Txn(%r, %r, %d bytes)" % (self.mail, self.rcpts, len(self.body))


def _addr(line):
    s = line.find("<")
    e = line.find(">", s + 1)
    return line[s + 1:e] if s >= 0 and e > s else ""


class Peer:
    def __init__(self, path=None, host="127.0.0.1", port=0, **opts):
        self.opts = dict(esmtp=True, ehlo_reply=None, pipelining=True, eightbitmime=True,
                         smtputf8=True, dsn=False, size=None, lmtp=False,
                         greeting="220 peer.test ESMTP", data_reply=None, hostile=None,
                         mail_421_after=None, tls=None, starttls_reply=None,
                         tls_hostile=None)
        unknown = set(opts) - set(self.opts)
        if unknown:
            raise TypeError("unknown options %s" % sorted(unknown))
        self.opts.update(opts)
        self.lock = threading.Lock()
        self.connections = 0
        self.quits = 0
        self.transactions = []
        self.commands = []
        self.tls_sessions = []   # (connection, version, cipher, sni)
        self.sni = []            # SNI of every ClientHello
        self.open = []
        self.closed = False
        self.path = path
        if path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            if os.path.exists(path):
                os.unlink(path)
            self.sock.bind(path)
            self.port = None
        else:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self.sock = socket.socket(family, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((host, port))
            self.port = self.sock.getsockname()[1]
        self.sock.listen(64)
        self.acceptor = threading.Thread(target=self._serve, daemon=True)
        self.acceptor.start()

    # -- control --

    def close(self):
        # Wake the accepting thread (shutdown makes a pending accept fail)
        # and wait for it BEFORE the descriptor is closed: with the thread
        # still in its accept loop, a later socket given the same descriptor
        # number (the next test's peer) would have its connections accepted
        # and answered by this closed peer.
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if self.acceptor is not threading.current_thread():
            self.acceptor.join(5)
        try:
            self.sock.close()
        except OSError:
            pass
        self.drop_idle()

    def drop_idle(self):
        with self.lock:
            conns, self.open = self.open, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                c.close()
            except OSError:
                pass

    def wait(self, pred, timeout=10.0, what="condition"):
        deadline = time.monotonic() + timeout
        while True:
            v = pred()
            if v:
                return v
            if time.monotonic() > deadline:
                raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))
            time.sleep(0.01)

    def delivered(self):
        with self.lock:
            return [t for t in self.transactions if t.body or t.data]

    # -- serving --

    def _serve(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self.closed:
                c.close()
                return
            with self.lock:
                self.connections += 1
                n = self.connections
                self.open.append(c)
            threading.Thread(target=self._conn, args=(c, n), daemon=True).start()

    def _conn(self, c, n):
        io = {"c": c}
        try:
            self._session(io, n)
        except (OSError, ValueError):
            pass
        finally:
            c = io["c"]
            with self.lock:
                if c in self.open:
                    self.open.remove(c)
            try:
                c.close()
            except OSError:
                pass

    def _starttls(self, io, n):
        """The server side of STARTTLS after its 220 went out: io's socket
        becomes the TLS socket (the open list follows), SNI recorded."""
        o = self.opts
        sni = []
        ctx = o["tls"]

        def on_sni(sslobj, name, context):
            sni.append(name)
            with self.lock:
                self.sni.append(name)
        ctx.sni_callback = on_sni
        raw = io["c"]
        t = ctx.wrap_socket(raw, server_side=True)
        with self.lock:
            if raw in self.open:
                self.open.remove(raw)
            self.open.append(t)
            self.tls_sessions.append((n, t.version(), t.cipher()[0], sni[0] if sni else None))
        io["c"] = t
        io["f"] = t.makefile("rb")
        return (t.version(), t.cipher()[0])

    def _session(self, io, n):
        o = self.opts
        h = o["hostile"]
        io["c"].settimeout(120)
        io["f"] = io["c"].makefile("rb")
        tls = None

        def send(text):
            io["c"].sendall(text.encode("utf-8") if isinstance(text, str) else text)

        def line():
            data = io["f"].readline(1 << 20)
            if not data:
                return None
            return data.rstrip(b"\r\n").decode("utf-8", "replace")

        if h == "silent":
            while io["f"].read(1):
                pass
            return
        if h == "longline":
            send("220 " + "x" * 65536 + "\r\n")
        elif h == "garbage":
            send("hello there, I am not SMTP\r\n")
        elif h == "greet421":
            send("421 4.3.2 busy, try later\r\n")
            return
        elif h == "greet554":
            send("554 5.7.1 go away\r\n")
        else:
            send(o["greeting"] + "\r\n")
        txn = None
        ntxn = 0
        while True:
            cmd = line()
            if cmd is None:
                return
            with self.lock:
                self.commands.append(cmd)
            verb = cmd.split(" ", 1)[0].upper()
            if verb in ("EHLO", "LHLO"):
                if h == "endless":
                    while True:
                        send("250-endless\r\n" * 64)
                if o["ehlo_reply"]:
                    send(o["ehlo_reply"] + "\r\n")
                    continue
                if not o["esmtp"] or (verb == "LHLO") != bool(o["lmtp"]):
                    send("502 5.5.2 Error: command not recognized\r\n")
                    continue
                caps = ["peer.test"]
                if o["pipelining"]:
                    caps.append("PIPELINING")
                if o["size"] is not None:
                    caps.append("SIZE %d" % o["size"])
                if o["eightbitmime"]:
                    caps.append("8BITMIME")
                if o["smtputf8"]:
                    caps.append("SMTPUTF8")
                if o["dsn"]:
                    caps.append("DSN")
                if o["tls"] is not None and tls is None:
                    caps.append("STARTTLS")
                caps.append("ENHANCEDSTATUSCODES")
                send("".join("250-%s\r\n" % x for x in caps[:-1]) + "250 %s\r\n" % caps[-1])
            elif verb == "HELO":
                send("250 peer.test\r\n")
            elif verb == "STARTTLS" and o["tls"] is not None and tls is None:
                if o["starttls_reply"]:
                    send(o["starttls_reply"] + "\r\n")
                    continue
                ready = b"220 2.0.0 Ready to start TLS\r\n"
                if o["tls_hostile"] == "inject":
                    send(ready + TLS_INJECT)      # one write: one segment
                elif o["tls_hostile"] == "garbage":
                    send(ready)
                    send(b"this is not a TLS record\r\n" * 4)
                    return
                elif o["tls_hostile"] == "silent":
                    send(ready)
                    while io["c"].recv(4096):
                        pass
                    return
                else:
                    send(ready)
                tls = self._starttls(io, n)
                txn = None                       # RFC 3207: state reset
            elif verb == "MAIL":
                if h == "mail_eof":
                    return
                if h == "mail_partial":
                    send("250-partial\r\n")
                    return
                if h == "flood":
                    while True:
                        send(b"x" * 65536)
                if txn is not None:
                    send("503 5.5.1 Error: nested MAIL command\r\n")
                    continue
                if o["mail_421_after"] is not None and ntxn >= o["mail_421_after"]:
                    send("421 4.4.2 peer.test Error: timeout exceeded\r\n")
                    return
                ntxn += 1
                txn = Txn(cmd)
                txn.conn = n
                txn.tls = tls
                with self.lock:
                    self.transactions.append(txn)
                send("250 2.1.0 Ok\r\n")
            elif verb == "RCPT":
                if txn is None:
                    send("503 5.5.1 Error: need MAIL command\r\n")
                    continue
                if h == "rcpt_silent":
                    while io["f"].read(1):
                        pass
                    return
                txn.rcpts.append(cmd)
                a = _addr(cmd)
                local = a.split("@")[0].lower()
                if local.startswith("temp"):
                    send("451 4.2.0 <%s>: mailbox busy\r\n" % a)
                elif local.startswith("perm"):
                    send("550 5.1.1 <%s>: user unknown\r\n" % a)
                elif local.startswith("ml"):
                    send("550-5.7.1 <%s>: first line\r\n550-5.7.1 second line\r\n"
                         "550 5.7.1 third line\r\n" % a)
                else:
                    txn.accepted.append(a)
                    send("250 2.1.5 Ok\r\n")
            elif verb == "DATA":
                if txn is None or not txn.accepted:
                    send("554 5.5.1 Error: no valid recipients\r\n")
                    continue
                send("354 End data with <CR><LF>.<CR><LF>\r\n")
                raw = []
                while True:
                    d = io["f"].readline(1 << 20)
                    if not d:
                        return
                    if d == b".\r\n":
                        break
                    raw.append(d)
                txn.data = b"".join(raw)
                txn.body = b"".join(x[1:] if x.startswith(b".") else x for x in raw)
                if h == "data_silent":
                    while io["f"].read(1):
                        pass
                    return
                with self.lock:
                    qn = len(self.transactions)
                if o["lmtp"]:
                    out = ""
                    for a in txn.accepted:
                        if a.split("@")[0].lower().startswith("late"):
                            out += "452 4.2.2 <%s>: mailbox full\r\n" % a
                        else:
                            out += "250 2.0.0 <%s> Ok: delivered as L%d\r\n" % (a, qn)
                    send(out)
                else:
                    send((o["data_reply"] or "250 2.0.0 Ok: queued as Q%d" % qn) + "\r\n")
                txn = None
            elif verb == "RSET":
                txn = None
                send("250 2.0.0 Ok\r\n")
            elif verb == "NOOP":
                send("250 2.0.0 Ok\r\n")
            elif verb == "QUIT":
                with self.lock:
                    self.quits += 1
                send("221 2.0.0 Bye\r\n")
                return
            else:
                send("502 5.5.2 Error: command not recognized\r\n")


# ---- the scheduler's side (shared by test_smtp.py, test_lmtp.py and the bench) ----

OK, TEMPFAIL, PERMFAIL = 1, 2, 3
NOTIFY_NEVER, NOTIFY_SUCCESS, NOTIFY_FAILURE, NOTIFY_DELAY = 1, 2, 4, 8


def recipient(P, index, address, orcpt="", notify=0, orig=""):
    m = P.pb_varint(1, index) + P.pb_bytes(2, address)
    if orcpt:
        m += P.pb_bytes(3, orcpt)
    if notify:
        m += P.pb_varint(4, notify)
    if orig:
        m += P.pb_bytes(6, orig)
    return m


def request(P, qid, nexthop, rcpts, sender="s@example.test", channel="smtp", size=0,
            envid="", ret=""):
    """A DeliveryRequest; rcpts: addresses or recipient() messages."""
    ref = P.queue_ref(qid)
    if size:
        ref += P.pb_varint(3, size)
    m = P.pb_bytes(1, ref) + P.pb_bytes(2, channel) + P.pb_bytes(3, nexthop) + P.pb_bytes(4, sender)
    for i, r in enumerate(rcpts):
        m += P.pb_bytes(5, recipient(P, i, r) if isinstance(r, str) else r)
    if envid:
        m += P.pb_bytes(6, envid)
    if ret:
        m += P.pb_bytes(7, ret)
    return m


def rss_kb(pid):
    """VmRSS of pid in KB (0 if gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pids_of(program, pids):
    """Those of pids running program (argv[0])."""
    out = []
    for pid in pids:
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                if f.read().split(b"\0")[0] == program.encode():
                    out.append(pid)
        except OSError:
            pass
    return out
