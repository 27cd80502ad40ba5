"""zfproto - zfarm's IPC frames for the Python integration tests.

Python 3 standard library only.  Enough protobuf to build and read the
frames of proto/*.proto by field number (varints and length-delimited
fields), the 4-byte big-endian length framing of common/frame.c, and
FrameServer: a unix socket that stands in for a farm (router, scheduler,
transport), reads frames on every connection and answers them through a
handler.
"""

import socket
import threading

# Frame body field numbers (proto/frame.proto).
ROUTE, ROUTE_REPLY = 20, 21
SCHED_SUBMIT, SCHED_ACK = 24, 25
DELIVERY, DELIVERY_REPLY = 26, 27
QUEUE_CONTROL, QUEUE_CONTROL_REPLY = 28, 29
PING = 10


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def read_varint(buf, i):
    n = shift = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def fields(buf):
    """{field number: [values]} of one protobuf message (ints and bytes)."""
    out, i = {}, 0
    while i < len(buf):
        key, i = read_varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = read_varint(buf, i)
        elif wt == 2:
            n, i = read_varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError("wire type %d" % wt)
        out.setdefault(num, []).append(v)
    return out


def pb_varint(field, v):
    return varint(field << 3) + varint(v)


def pb_bytes(field, b):
    if isinstance(b, str):
        b = b.encode()
    return varint(field << 3 | 2) + varint(len(b)) + b


def frame(request_id, field, payload):
    """A framed Frame{version 1, request_id, body field = payload}."""
    body = pb_varint(1, 1) + pb_varint(2, request_id) + pb_bytes(field, payload)
    return len(body).to_bytes(4, "big") + body


def queue_ref(qid):
    """A QueueRef message holding only the queue ID."""
    return pb_bytes(1, qid)


def read_frames(buf):
    """Split complete frames off buf: (list of Frame field dicts, rest)."""
    out = []
    while len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[:4], "big"):
        n = int.from_bytes(buf[:4], "big")
        out.append(fields(buf[4:4 + n]))
        buf = buf[4 + n:]
    return out, buf


class FrameServer:
    """Listens on a unix socket; for every frame received calls
    handle(frame_fields) in the connection's thread and sends what it
    returns (framed bytes, or None for no answer).  Keeps every frame in
    self.frames.  close_after: drop a connection after that many frames."""

    def __init__(self, path, handle=None, close_after=None):
        self.path = path
        self.handle = handle
        self.close_after = close_after
        self.frames = []
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(16)
        self.acceptor = threading.Thread(target=self._serve, daemon=True)
        self.acceptor.start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _conn(self, c):
        buf, seen = b"", 0
        with c:
            while True:
                try:
                    d = c.recv(65536)
                except OSError:
                    return
                if not d:
                    return
                frames, buf = read_frames(buf + d)
                for f in frames:
                    with self.lock:
                        self.frames.append(f)
                    seen += 1
                    reply = self.handle(f) if self.handle else None
                    if reply:
                        c.sendall(reply)
                if self.close_after and seen >= self.close_after:
                    return

    def close(self):
        # Wake the accepting thread and wait for it before the descriptor
        # is closed: a thread still in its accept loop would otherwise
        # accept on whatever socket next gets the same descriptor number.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if self.acceptor is not threading.current_thread():
            self.acceptor.join(5)
        self.sock.close()


def delivery_reply(f):
    """A DeliveryReply frame (field dict) as {"rid", "results": [{"index",
    "status", "code", "enhanced", "text", "dsn_passed"}, ...] in index
    order, "relay", "conn_failed"}."""
    rep = fields(f[DELIVERY_REPLY][0])
    results = []
    for r in rep.get(1, []):
        r = fields(r)
        results.append({"index": r.get(1, [0])[0], "status": r.get(2, [0])[0],
                        "code": r.get(3, [0])[0],
                        "enhanced": r.get(4, [b""])[0].decode(),
                        "text": r.get(5, [b""])[0].decode("utf-8", "replace"),
                        "dsn_passed": bool(r.get(6, [0])[0])})
    results.sort(key=lambda x: x["index"])
    return {"rid": f.get(2, [0])[0], "results": results,
            "relay": rep.get(2, [b""])[0].decode(),
            "conn_failed": bool(rep.get(3, [0])[0])}


class TransportClient:
    """One connection to a transport farm's socket, as the scheduler keeps
    it: DeliveryRequests out, frames back.  The tests' stand-in scheduler."""

    def __init__(self, path, timeout=30.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.next_id = 1

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, rq):
        """Send a DeliveryRequest (bytes); its request id."""
        rid = self.next_id
        self.next_id += 1
        self.sock.sendall(frame(rid, DELIVERY, rq))
        return rid

    def read(self):
        """The next frame as a field dict, or None at EOF."""
        while True:
            frames, _ = read_frames(self.buf)
            if frames:
                n = int.from_bytes(self.buf[:4], "big")
                self.buf = self.buf[4 + n:]
                return frames[0]
            try:
                d = self.sock.recv(65536)
            except ConnectionResetError:
                d = b""
            if not d:
                return None
            self.buf += d

    def deliver(self, rq):
        """Send rq and read its reply (delivery_reply()); AssertionError if
        the farm closes without one, answers another request or something else."""
        rid = self.send(rq)
        f = self.read()
        if f is None:
            raise AssertionError("the transport closed the connection without a reply")
        if DELIVERY_REPLY not in f:
            raise AssertionError("got frame fields %r" % sorted(f))
        rep = delivery_reply(f)
        if rep["rid"] != rid:
            raise AssertionError("reply for request %r, want %d" % (rep["rid"], rid))
        return rep

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
