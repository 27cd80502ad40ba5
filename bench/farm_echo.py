#!/usr/bin/env python3
"""farm_echo - connections per second through farmd and an echo farm.

Not a test: for each of client_limit 1 and 4 and max_requests 1 and 0
(unlimited), starts farmd with one echo farm (tests/farm/echo_farm,
process_limit 10, process_min_avail 2) on a 127.0.0.1 port, runs N
connections (one echo round trip each) over C parallel clients and prints
a table.  Uses the helpers of tests/farmd/farmlib.py.

    python3 bench/farm_echo.py [-n CONNECTIONS] [-c CLIENTS] [-p PROCESS_LIMIT]

Binaries from $top_builddir (default: the source tree).
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.environ.get("top_srcdir") or os.path.join(HERE, ".."),
                                "tests", "farmd"))
import farmlib  # noqa: E402


def run_one(connections, clients, process_limit, client_limit, max_requests):
    fd = farmlib.FarmdInstance(tag="bench", verbose=False)
    try:
        port = farmlib.free_port()
        fd.write_config([farmlib.farm_section(
            "echo", listen="inet:127.0.0.1:%d" % port, program="echo_farm",
            process_limit=process_limit, process_min_avail=2, client_limit=client_limit,
            max_requests=max_requests)])
        fd.start()
        farmlib.wait_until(fd.farm_is("echo", available=2), 10)
        elapsed, ok, refused, errors = farmlib.load(port, connections, clients)
        f = fd.farm("echo")
        return {"elapsed": elapsed, "ok": ok, "refused": refused, "errors": len(errors),
                "spawned": f["spawned"], "throttled": f["throttled_until"] != 0}
    finally:
        fd.cleanup()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=3000, help="connections per run")
    ap.add_argument("-c", type=int, default=20, help="parallel clients")
    ap.add_argument("-p", type=int, default=10, help="process_limit")
    args = ap.parse_args()
    missing = farmlib.binaries_missing()
    if missing:
        sys.exit("not built: %s" % ", ".join(missing))

    print("farmd echo farm: %d connections over %d clients, process_limit %d"
          % (args.n, args.c, args.p))
    print("%-12s %-12s %9s %9s %8s %8s %7s" % ("client_limit", "max_requests", "seconds",
                                             "conn/s", "spawned", "refused", "errors"))
    failed = False
    for client_limit in (1, 4):
        for max_requests in (1, 0):
            r = run_one(args.n, args.c, args.p, client_limit, max_requests)
            print("%-12d %-12s %9.2f %9.0f %8d %8d %7d%s"
                  % (client_limit, max_requests or "0 (none)", r["elapsed"],
                     args.n / r["elapsed"], r["spawned"], r["refused"], r["errors"],
                     "  (throttled!)" if r["throttled"] else ""))
            sys.stdout.flush()
            failed = failed or r["ok"] != args.n
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
