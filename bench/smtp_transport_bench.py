#!/usr/bin/env python3
"""smtp_transport_bench - what connection reuse is worth to the smtp transport.

farmd runs an smtpserver farm (to queue one 4 KB message) and two smtp
farms on one process each: "smtp" with connection reuse
(smtp_connection_cache_time_limit=10s) and "smtp0" without (the same
parameter 0, through the farm's args).  Postfix's smtp-sink is the mail
server on 127.0.0.1.  N threads play N scheduler connections: each sends
DeliveryRequests (one recipient each) one after the other for the given
time; the bench prints deliveries per second for both farms and the
ratio.  Python 3 standard library; not run by make check.

    bench/smtp_transport_bench.py [--seconds 5] [--conns 8] [--size 4096]
                                  [--rcpts 1] [--log-level info]
"""

import argparse
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_SRCDIR = os.path.abspath(os.environ.get("top_srcdir") or os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(TOP_SRCDIR, "tests", "smtpserver"))
sys.path.insert(0, os.path.join(TOP_SRCDIR, "tests", "transport"))
import smtplib_helpers as H  # noqa: E402
from smtplib_helpers import Raw, farmlib, qid_of, wait_until  # noqa: E402
import zfproto as P  # noqa: E402
import smtp_peers as SP  # noqa: E402

SMTP = os.path.join(H.TOP_BUILDDIR, "transport", "smtp")
SINK = "/usr/sbin/smtp-sink"


def queue_message(port, size):
    line = "The quick brown fox jumps over the lazy dog, again and again.\r\n"
    body = line * max(1, size // len(line))
    with Raw(port) as r:
        r.send("EHLO bench\r\n")
        r.reply()
        assert r.cmd("MAIL FROM:<bench@example.test>").startswith("250")
        assert r.cmd("RCPT TO:<u@remote.test>").startswith("250")
        assert r.cmd("DATA").startswith("354")
        r.send("Subject: bench\r\n\r\n" + body + ".\r\n")
        code, lines = r.reply()
        assert code == 250, lines
        return qid_of(lines[-1])


def run(fd, farm, qid, qsize, nexthop, seconds, conns, rcpts):
    """Deliveries per second through farm's socket: (rate, failures)."""
    path = os.path.join(fd.run, "private", farm)
    counts = [0] * conns
    failures = []
    start = threading.Barrier(conns + 1)
    stop_at = [0.0]

    def worker(n):
        with P.TransportClient(path, timeout=60) as s:
            start.wait()
            i = 0
            while time.monotonic() < stop_at[0]:
                rq = SP.request(P, qid, nexthop,
                                ["u%d-%d-%d@remote.test" % (n, i, k) for k in range(rcpts)],
                                size=qsize)
                rep = s.deliver(rq)
                bad = [r for r in rep["results"] if r["status"] != SP.OK]
                if bad:
                    failures.append(bad[0]["text"])
                    if len(failures) > 20:
                        return
                counts[n] += 1
                i += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(conns)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    stop_at[0] = t0 + seconds
    start.wait()
    for t in threads:
        t.join(seconds + 60)
    elapsed = time.monotonic() - t0
    return sum(counts) / elapsed, failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--rcpts", type=int, default=1)
    ap.add_argument("--log-level", default="info")
    a = ap.parse_args()
    for p in (SMTP, SINK):
        if not os.access(p, os.X_OK):
            sys.exit("missing %s" % p)

    sink_port = H.free_port()
    args = [SINK] + (["-u", "nobody"] if os.geteuid() == 0 else [])
    sink = subprocess.Popen(args + ["127.0.0.1:%d" % sink_port, "1024"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    fd = farmlib.FarmdInstance(tag="smtpbench", verbose=False)
    port = H.free_port()
    g = dict(H.BASE_GLOBALS)
    g.update({"smtpd_verify_recipients": "no", "log_level": a.log_level,
              "smtp_connection_cache_time_limit": "10s",
              "dns_servers": "127.0.0.1:%d" % H.free_port()})
    limit = max(64, a.conns * 2)
    fd.write_config([
        H.smtp_farm("smtpserver", port),
        farmlib.farm_section("smtp", listen="unix:private/smtp", program=SMTP,
                             process_limit=1, client_limit=limit),
        farmlib.farm_section("smtp0", listen="unix:private/smtp0", program=SMTP,
                             process_limit=1, client_limit=limit,
                             args="-o smtp_connection_cache_time_limit=0"),
    ], g)
    try:
        fd.start()
        wait_until(lambda: farmlib.can_connect(port), 10, what="smtpserver")
        wait_until(lambda: farmlib.can_connect(sink_port), 10, what="smtp-sink")
        for f in ("smtp", "smtp0"):
            wait_until(lambda: os.path.exists(os.path.join(fd.run, "private", f)), 10,
                       what="the %s socket" % f)
        qid = queue_message(port, a.size)
        qsize = len(H.Queue(os.path.join(fd.run, "queue")).read(qid)[1])
        nexthop = "[127.0.0.1]:%d" % sink_port
        print("smtp transport -> smtp-sink: %d-byte message, %d recipient(s) per delivery, "
              "%d scheduler connections, %.0f s each" % (qsize, a.rcpts, a.conns, a.seconds))
        rates = {}
        for farm, label in (("smtp", "with reuse"), ("smtp0", "without reuse")):
            rate, failures = run(fd, farm, qid, qsize, nexthop, a.seconds, a.conns, a.rcpts)
            rates[farm] = rate
            print("  %-14s %8.0f deliveries/s%s" % (label, rate,
                                                    "  (%d failed: %s)" % (len(failures),
                                                                           failures[0])
                                                    if failures else ""))
        print("  reuse/no-reuse ratio: %.2f" % (rates["smtp"] / max(rates["smtp0"], 1e-9)))
    except Exception:
        sys.stderr.write(fd.log()[-4000:])
        raise
    finally:
        fd.cleanup()
        sink.terminate()
        sink.wait()


if __name__ == "__main__":
    main()
