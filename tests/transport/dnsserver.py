#!/usr/bin/env python3
"""dnsserver - a small authoritative DNS server for tests, on loopback only.

Python 3 standard library only.  It answers over UDP and TCP on the same
port of 127.0.0.1 (the OS picks the port when 0 is asked), from a zone held
in memory, and counts every query it receives.

Zone format: one record or behaviour per line (text file), or a dict
{name: [line-without-name, ...]} (as a module); '#' starts a comment:

    example.test      MX    10 mx1.example.test
    example.test      MX    20 mx2.example.test
    mx1.example.test  A     127.0.0.1
    mx1.example.test  AAAA  ::1
    www.example.test  CNAME mx1.example.test
    nullmx.test       MX    0 .
    empty.test        EMPTY              # the name exists, with no records
    broken.test       SERVFAIL           # every type
    half.test         SERVFAIL AAAA      # only AAAA (REFUSED, DROP, TRUNCATE alike)
    refusing.test     REFUSED
    slow.test         DROP               # never answered (the client times out)
    big.test          TRUNCATE           # TC over UDP, the full answer over TCP

Names are case-insensitive, the trailing dot optional.  A name with no line
at all is NXDOMAIN; a name with some records but none of the asked type is
NODATA (NOERROR, no answer).  CNAMEs are followed inside the zone (the
chain's records are all in the answer).  UDP answers longer than 512 bytes
(or the client's EDNS size) are truncated (TC, no records) so that the
client asks again over TCP, as a real server does.

Module use:

    srv = DNSServer(zone).start()      # zone: dict or text
    srv.port                           # 127.0.0.1:port, UDP and TCP
    srv.count(name=None, qtype=None, proto=None)   # queries received
    srv.queries                        # [(proto, name, type), ...]
    srv.reset()                        # forget the queries
    srv.stop()

Script use (the smtp transport tests):

    python3 dnsserver.py --zone FILE [--port 0] --port-file F [--query-log F]

writes the port to F (atomically, once both sockets listen), logs each
query as "udp|tcp NAME TYPE" to the query log, and runs until SIGTERM or
SIGINT.
"""

import argparse
import os
import signal
import socket
import struct
import sys
import threading

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16,
         "AAAA": 28, "SRV": 33, "OPT": 41, "ANY": 255}
TYPE_NAMES = {v: k for k, v in TYPES.items()}
BEHAVIOURS = ("SERVFAIL", "REFUSED", "DROP", "TRUNCATE")
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
TTL = 300


def norm(name):
    name = name.strip().lower()
    return name[:-1] if name.endswith(".") and name != "." else name


def type_name(qtype):
    return TYPE_NAMES.get(qtype, "TYPE%d" % qtype)


class Zone:
    """Records {name: [(type, rdata-as-text)]} and behaviours
    {name: {type-or-None: behaviour}}."""

    def __init__(self, source):
        self.records = {}
        self.behaviours = {}
        if isinstance(source, dict):
            for name, lines in source.items():
                if isinstance(lines, str):
                    lines = [lines]
                for line in lines:
                    self.add(name, line.split())
        else:
            for n, line in enumerate(source.splitlines(), 1):
                line = line.split("#", 1)[0].strip()
                if not line:
                    continue
                words = line.split()
                if len(words) < 2:
                    raise ValueError("zone line %d: %r: NAME TYPE DATA..." % (n, line))
                self.add(words[0], words[1:])

    def add(self, name, words):
        name = norm(name)
        what = words[0].upper()
        if what == "EMPTY":
            self.records.setdefault(name, [])
        elif what in BEHAVIOURS:
            qtype = None
            if len(words) > 1:
                qtype = TYPES[words[1].upper()]
            self.behaviours.setdefault(name, {})[qtype] = what
        elif what == "MX":
            pref, host = int(words[1]), words[2]
            self.records.setdefault(name, []).append((TYPES["MX"], (pref, host)))
        elif what == "A":
            socket.inet_pton(socket.AF_INET, words[1])
            self.records.setdefault(name, []).append((TYPES["A"], words[1]))
        elif what == "AAAA":
            socket.inet_pton(socket.AF_INET6, words[1])
            self.records.setdefault(name, []).append((TYPES["AAAA"], words[1]))
        elif what == "CNAME":
            self.records.setdefault(name, []).append((TYPES["CNAME"], words[1]))
        else:
            raise ValueError("zone: %s: unknown type or behaviour %r" % (name, words[0]))

    def behaviour(self, name, qtype):
        b = self.behaviours.get(name)
        if not b:
            return None
        return b.get(qtype) or b.get(None)

    def exists(self, name):
        return name in self.records or name in self.behaviours


def encode_name(name):
    out = b""
    name = norm(name)
    if name in ("", "."):
        return b"\0"
    for label in name.split("."):
        raw = label.encode("ascii")
        if not 0 < len(raw) < 64:
            raise ValueError("bad label in %r" % name)
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def decode_name(msg, off):
    """The name at off (no compression: questions are never compressed)
    and the offset after it; ValueError if malformed."""
    labels = []
    while True:
        if off >= len(msg):
            raise ValueError("name runs past the end")
        n = msg[off]
        off += 1
        if n == 0:
            break
        if n & 0xC0:
            raise ValueError("compression in a question")
        labels.append(msg[off:off + n].decode("ascii", "replace"))
        off += n
    return ".".join(labels), off


def rr(name, rtype, rdata):
    return encode_name(name) + struct.pack("!HHIH", rtype, 1, TTL, len(rdata)) + rdata


def rdata(rtype, value):
    if rtype == TYPES["A"]:
        return socket.inet_pton(socket.AF_INET, value)
    if rtype == TYPES["AAAA"]:
        return socket.inet_pton(socket.AF_INET6, value)
    if rtype == TYPES["MX"]:
        return struct.pack("!H", value[0]) + encode_name(value[1])
    if rtype == TYPES["CNAME"]:
        return encode_name(value)
    raise ValueError(rtype)


class DNSServer:
    def __init__(self, zone, port=0, query_log=None):
        self.zone = zone if isinstance(zone, Zone) else Zone(zone)
        self.want_port = port
        self.port = None
        self.queries = []
        self.lock = threading.Lock()
        self.query_log = query_log
        self.udp = self.tcp = None
        self.threads = []
        self.conns = set()
        self.stopping = False

    # ---- life ----

    def start(self):
        for _ in range(50):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", self.want_port))
            port = udp.getsockname()[1]
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                udp.close()
                tcp.close()
                if self.want_port:
                    raise
                continue  # the TCP side of that port is taken: another
            tcp.listen(16)
            self.udp, self.tcp, self.port = udp, tcp, port
            break
        else:
            raise OSError("no port free for both UDP and TCP")
        for fn in (self._udp_loop, self._tcp_loop):
            t = threading.Thread(target=fn, daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def stop(self):
        self.stopping = True
        # wake the loops: shutdown() makes accept()/recvfrom() return
        for s in (self.udp, self.tcp):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self.threads:
            t.join(5)
        for s in (self.udp, self.tcp):
            s.close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- what was asked ----

    def count(self, name=None, qtype=None, proto=None):
        with self.lock:
            return sum(1 for p, n, t in self.queries
                       if (name is None or n == norm(name))
                       and (qtype is None or t == qtype)
                       and (proto is None or p == proto))

    def reset(self):
        with self.lock:
            self.queries.clear()

    def _record(self, proto, name, qtype):
        with self.lock:
            self.queries.append((proto, norm(name), type_name(qtype)))
            if self.query_log:
                with open(self.query_log, "a") as f:
                    f.write("%s %s %s\n" % (proto, norm(name), type_name(qtype)))

    # ---- answering ----

    def answer(self, msg, proto):
        """The reply to msg (bytes), or None to say nothing."""
        if len(msg) < 12:
            return None
        qid, flags, qd, _an, _ns, ar = struct.unpack("!HHHHHH", msg[:12])
        if flags & 0x8000:
            return None  # a response: ignore
        opcode = (flags >> 11) & 0xF
        rd = flags & 0x0100
        try:
            if qd != 1:
                raise ValueError("one question")
            qname, off = decode_name(msg, 12)
            qtype, qclass = struct.unpack("!HH", msg[off:off + 4])
            question = msg[12:off + 4]
            off += 4
        except (ValueError, struct.error):
            return struct.pack("!HHHHHH", qid, 0x8000 | rd | FORMERR, 0, 0, 0, 0)
        udp_max = 512
        if ar and proto == "udp":
            try:  # an OPT record (EDNS): its class is the client's UDP size
                _, o2 = decode_name(msg, off)
                rtype, rclass = struct.unpack("!HH", msg[o2:o2 + 4])
                if rtype == TYPES["OPT"]:
                    udp_max = max(512, rclass)
            except (ValueError, struct.error):
                pass
        self._record(proto, qname, qtype)

        def reply(rcode, answers=(), tc=False):
            f = 0x8000 | (opcode << 11) | 0x0400 | rd | 0x0080 | rcode
            if tc:
                f |= 0x0200
            return (struct.pack("!HHHHHH", qid, f, 1, len(answers), 0, 0) + question
                    + b"".join(answers))

        if opcode != 0 or qclass != 1:
            return reply(NOTIMP)
        name = norm(qname)
        b = self.zone.behaviour(name, qtype)
        if b == "DROP":
            return None
        if b == "SERVFAIL":
            return reply(SERVFAIL)
        if b == "REFUSED":
            return reply(REFUSED)
        if not self.zone.exists(name):
            return reply(NXDOMAIN)
        answers, seen = [], set()
        cur = name
        while True:
            recs = self.zone.records.get(cur, [])
            cnames = [v for t, v in recs if t == TYPES["CNAME"]]
            if cnames and qtype != TYPES["CNAME"]:
                answers.append(rr(cur, TYPES["CNAME"], rdata(TYPES["CNAME"], cnames[0])))
                seen.add(cur)
                cur = norm(cnames[0])
                if cur in seen or len(seen) > 8:
                    return reply(SERVFAIL)
                if not self.zone.exists(cur):
                    return reply(NXDOMAIN, answers)
                continue
            answers += [rr(cur, t, rdata(t, v)) for t, v in recs
                        if t == qtype or qtype == TYPES["ANY"]]
            break
        full = reply(NOERROR, answers)
        if proto == "udp" and (b == "TRUNCATE" or len(full) > udp_max):
            return reply(NOERROR, (), tc=True)
        return full

    def _udp_loop(self):
        while not self.stopping:
            try:
                msg, peer = self.udp.recvfrom(65535)
            except OSError:
                return
            if self.stopping:
                return
            if not msg:
                continue
            out = self.answer(msg, "udp")
            if out is not None:
                try:
                    self.udp.sendto(out, peer)
                except OSError:
                    pass

    def _tcp_loop(self):
        while not self.stopping:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            if self.stopping:
                conn.close()
                return
            with self.lock:
                self.conns.add(conn)
            threading.Thread(target=self._tcp_conn, args=(conn,), daemon=True).start()

    def _tcp_conn(self, conn):
        def read(n):
            buf = b""
            while len(buf) < n:
                chunk = conn.recv(n - len(buf))
                if not chunk:
                    raise EOFError
                buf += chunk
            return buf

        try:
            while True:
                (n,) = struct.unpack("!H", read(2))
                out = self.answer(read(n), "tcp")
                if out is not None:
                    conn.sendall(struct.pack("!H", len(out)) + out)
        except (EOFError, OSError, struct.error):
            pass
        finally:
            with self.lock:
                self.conns.discard(conn)
            conn.close()


def main():
    ap = argparse.ArgumentParser(description="a test DNS server on 127.0.0.1 (UDP and TCP)")
    ap.add_argument("--zone", required=True, help="zone file (format: see the docstring)")
    ap.add_argument("--port", type=int, default=0, help="port (0: any free one)")
    ap.add_argument("--port-file", help="write the port here once listening")
    ap.add_argument("--query-log", help="append 'proto name type' per query here")
    args = ap.parse_args()
    with open(args.zone) as f:
        zone = Zone(f.read())
    srv = DNSServer(zone, args.port, args.query_log).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    signal.signal(signal.SIGINT, lambda *a: done.set())
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % srv.port)
        os.rename(tmp, args.port_file)
    else:
        print(srv.port, flush=True)
    while not done.wait(3600):
        pass
    srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
