#!/usr/bin/env python3
"""Integration tests of transport/dns.c (the smtp transport's resolver).

dnsserver.py serves a test zone on 127.0.0.1 (UDP and TCP, a port the OS
picks) and counts the queries it gets; tests/transport/dns_probe runs a
real struct dns with that server as its only one (dns_servers), so no
query leaves the machine, and prints the answers as text.  Python 3
standard library only; prints "N passed, N failed".
"""

import os
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_SRCDIR = os.path.abspath(os.environ.get("top_srcdir") or os.path.join(HERE, "..", ".."))
TOP_BUILDDIR = os.path.abspath(os.environ.get("top_builddir") or TOP_SRCDIR)
sys.path.insert(0, os.path.join(TOP_SRCDIR, "tests", "farmd"))
sys.path.insert(0, HERE)
import farmlib  # noqa: E402
from dnsserver import DNSServer  # noqa: E402

PROBE = os.path.join(TOP_BUILDDIR, "tests", "transport", "dns_probe")
SLOW = os.environ.get("ZF_SANITIZERS") == "1"

ZONE = {
    # preference order, ties
    "order.test": ["MX 30 c.order.test", "MX 10 a.order.test", "MX 20 b.order.test"],
    "a.order.test": ["A 127.0.0.11"],
    "b.order.test": ["A 127.0.0.12"],
    "c.order.test": ["A 127.0.0.13"],
    "tie.test": ["MX 10 x.tie.test", "MX 10 y.tie.test", "MX 5 first.tie.test"],
    "x.tie.test": ["A 127.0.1.1"],
    "y.tie.test": ["A 127.0.1.2"],
    "first.tie.test": ["A 127.0.1.3"],
    # no MX, null MX, failures
    "implicit.test": ["A 127.0.2.1", "AAAA ::1"],
    "nullmx.test": ["MX 0 ."],
    "servfail.test": ["SERVFAIL"],
    "refused.test": ["REFUSED"],
    "slow.test": ["DROP"],
    "empty.test": ["EMPTY"],
    # TC over UDP, answer over TCP
    "big.test": ["TRUNCATE", "MX 10 a.order.test"],
    # families
    "dual.test": ["MX 10 dual.host.test"],
    "dual.host.test": ["A 127.0.3.1", "AAAA ::1", "AAAA 2001:db8::3"],
    "v6only.test": ["MX 10 v6.host.test"],
    "v6.host.test": ["AAAA 2001:db8::7"],
    "half.host.test": ["A 127.0.3.9", "SERVFAIL AAAA"],
    "alias.test": ["CNAME dual.host.test"],
    # hosts without addresses
    "skip.test": ["MX 10 gone.skip.test", "MX 15 broken.skip.test", "MX 20 ok.skip.test"],
    "broken.skip.test": ["SERVFAIL"],
    "ok.skip.test": ["A 127.0.4.1"],
    "nowhere.test": ["MX 10 gone1.nowhere.test", "MX 20 gone2.nowhere.test"],
    "stuck.test": ["MX 10 d1.stuck.test", "MX 20 d2.stuck.test", "MX 30 d3.stuck.test",
                   "MX 40 d4.stuck.test", "MX 50 d5.stuck.test"],
    "d1.stuck.test": ["DROP"], "d2.stuck.test": ["DROP"], "d3.stuck.test": ["DROP"],
    "d4.stuck.test": ["DROP"], "d5.stuck.test": ["DROP"],
    # hostile sizes
    "hostile.test": ["MX %d h%d.hostile.test" % (99 - i, 99 - i) for i in range(100)],
    "manyaddr.test": ["A 127.0.5.%d" % i for i in range(1, 21)],
    "dupes.test": ["MX 10 a.order.test", "MX 20 A.Order.Test.", "MX 30 b.order.test"],
}
for i in range(100):
    ZONE["h%d.hostile.test" % i] = ["A 127.0.6.%d" % (i + 1)]

SRV = None


def setUpModule():
    global SRV
    if not os.access(PROBE, os.X_OK):
        raise unittest.SkipTest("not built: " + PROBE)
    SRV = DNSServer(ZONE).start()


def tearDownModule():
    if SRV:
        SRV.stop()


def servers():
    return "127.0.0.1:%d" % SRV.port


def run_probe(kind, *names, opts=(), srv=None):
    """Run dns_probe; (returncode, stdout, elapsed seconds).  Anything on
    stderr (a sanitizer report) fails the test."""
    args = [PROBE] + list(opts) + [srv if srv is not None else servers(), kind] + list(names)
    t0 = time.monotonic()
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120,
                       universal_newlines=True)
    elapsed = time.monotonic() - t0
    if p.stderr:
        raise AssertionError("dns_probe %s wrote to stderr:\n%s" % (" ".join(args), p.stderr))
    return p.returncode, p.stdout, elapsed


def answers(out):
    """{name: (status-line, [(host, pref, [addr...])])} from dns_probe's output."""
    res, cur = {}, None
    for line in out.splitlines():
        if line.startswith("== "):
            cur = line[3:]
            res[cur] = [None, []]
        elif line.startswith("status "):
            res[cur][0] = line[len("status "):]
        elif line.startswith("host "):
            w = line.split()
            res[cur][1].append((w[1], int(w[2]), w[3:]))
        else:
            raise AssertionError("unexpected line %r in:\n%s" % (line, out))
    return {k: tuple(v) for k, v in res.items()}


class DNSTest(unittest.TestCase):
    def setUp(self):
        SRV.reset()

    def lookup(self, kind, name, opts=()):
        rc, out, _ = run_probe(kind, name, opts=opts)
        self.assertEqual(rc, 0, out)
        got = answers(out)
        self.assertEqual(list(got), [name], out)
        return got[name]

    def assert_ok(self, kind, name, want_hosts, opts=()):
        status, hosts = self.lookup(kind, name, opts)
        self.assertEqual(status, "ok")
        self.assertEqual(hosts, want_hosts)

    # ---- MX ----

    def test_mx_sorted_by_preference(self):
        self.assert_ok("mx", "order.test", [("a.order.test", 10, ["127.0.0.11"]),
                                            ("b.order.test", 20, ["127.0.0.12"]),
                                            ("c.order.test", 30, ["127.0.0.13"])])

    def test_equal_preferences_in_random_order(self):
        seen = set()
        for _ in range(40):
            _, hosts = self.lookup("mx", "tie.test")
            self.assertEqual(hosts[0][0], "first.tie.test")
            self.assertEqual(sorted(h[0] for h in hosts[1:]), ["x.tie.test", "y.tie.test"])
            seen.add(tuple(h[0] for h in hosts))
            if len(seen) == 2:
                break
        # both orders in 40 runs, or the shuffle is broken (p = 2^-39)
        self.assertEqual(len(seen), 2, seen)

    def test_implicit_mx(self):
        self.assert_ok("mx", "implicit.test", [("implicit.test", 0, ["127.0.2.1", "::1"])])
        self.assertEqual(SRV.count("implicit.test", "MX"), 1)

    def test_null_mx(self):
        status, _ = self.lookup("mx", "nullmx.test")
        self.assertEqual(status, "permfail 5.1.10 Domain nullmx.test does not accept mail (null MX)")
        self.assertEqual(SRV.count(qtype="A") + SRV.count(qtype="AAAA"), 0)

    def test_nxdomain(self):
        status, _ = self.lookup("mx", "nosuch.test")
        self.assertEqual(status, "permfail 5.1.2 Host or domain name not found. Name service "
                         "error for name=nosuch.test type=MX: Host not found")

    def test_servfail_and_refused_are_temporary(self):
        for name in ("servfail.test", "refused.test"):
            status, _ = self.lookup("mx", name, opts=["-r", "1"])
            self.assertEqual(status, "tempfail 4.4.3 Host or domain name not found. Name service "
                             "error for name=%s type=MX: Host not found, try again" % name)

    def test_timeout_with_tries(self):
        rc, out, elapsed = run_probe("mx", "slow.test", opts=["-t", "150", "-r", "2"])
        self.assertEqual(rc, 0, out)
        status, hosts = answers(out)["slow.test"]
        self.assertTrue(status.startswith("tempfail 4.4.3 "), status)
        self.assertIn("type=MX: Host not found, try again", status)
        self.assertEqual(SRV.count("slow.test", "MX"), 2)  # -r 2: asked twice
        self.assertGreaterEqual(elapsed, 0.3)  # 150 ms, then 300 ms (c-ares doubles)

    def test_truncated_answer_retried_over_tcp(self):
        self.assert_ok("mx", "big.test", [("a.order.test", 10, ["127.0.0.11"])])
        self.assertEqual(SRV.count("big.test", "MX", "udp"), 1)
        self.assertEqual(SRV.count("big.test", "MX", "tcp"), 1)

    def test_mx_host_without_address_skipped(self):
        self.assert_ok("mx", "skip.test", [("ok.skip.test", 20, ["127.0.4.1"])],
                       opts=["-r", "1"])
        self.assertEqual(SRV.count("gone.skip.test", "A"), 1)

    def test_no_mx_host_with_an_address_is_temporary(self):
        status, _ = self.lookup("mx", "nowhere.test")
        self.assertEqual(status, "tempfail 4.4.3 Host or domain name not found. Name service "
                         "error for name=gone1.nowhere.test type=A: Host not found")

    def test_empty_domain_no_address(self):
        # NODATA for MX (implicit MX), then NODATA for A and AAAA
        status, _ = self.lookup("mx", "empty.test")
        self.assertEqual(status, "tempfail 4.4.3 Host or domain name not found. Name service "
                         "error for name=empty.test type=A: Host found but no data record "
                         "of requested type")

    def test_address_lookups_run_in_parallel(self):
        # five MX hosts whose A and AAAA are never answered: one timeout
        # (350 ms), not ten in a row (3.5 s)
        rc, out, elapsed = run_probe("mx", "stuck.test", opts=["-t", "350", "-r", "1"])
        self.assertEqual(rc, 0, out)
        self.assertTrue(answers(out)["stuck.test"][0].startswith("tempfail 4.4.3"), out)
        self.assertEqual(SRV.count(qtype="A") + SRV.count(qtype="AAAA"), 10)
        self.assertLess(elapsed, 2.0)

    def test_hostile_100_mx_capped(self):
        status, hosts = self.lookup("mx", "hostile.test")
        self.assertEqual(status, "ok")
        self.assertEqual([(h[0], h[1]) for h in hosts],
                         [("h%d.hostile.test" % i, i) for i in range(10)])
        self.assertEqual(SRV.count("hostile.test", "MX", "tcp"), 1)
        # bounded: two lookups per kept host, none for the other 90
        self.assertEqual(SRV.count(qtype="A") + SRV.count(qtype="AAAA"), 20)

    def test_addresses_capped(self):
        _, hosts = self.lookup("mx", "manyaddr.test")
        self.assertEqual(len(hosts), 1)
        self.assertEqual(len(hosts[0][2]), 8)

    def test_duplicate_mx_names_once(self):
        _, hosts = self.lookup("mx", "dupes.test")
        self.assertEqual([(h[0], h[1]) for h in hosts], [("a.order.test", 10), ("b.order.test", 30)])

    def test_several_queries_at_once(self):
        names = ["order.test", "nosuch.test", "implicit.test", "nullmx.test", "big.test"]
        rc, out, _ = run_probe("mx", *names)
        self.assertEqual(rc, 0, out)
        got = answers(out)
        self.assertEqual(list(got), names)
        self.assertEqual([got[n][0].split()[0] for n in names],
                         ["ok", "permfail", "ok", "permfail", "ok"])

    # ---- families ----

    def test_family_all_ipv4_first(self):
        self.assert_ok("mx", "dual.test", [("dual.host.test", 10,
                                            ["127.0.3.1", "::1", "2001:db8::3"])])

    def test_family_all_prefer_ipv6(self):
        self.assert_ok("mx", "dual.test", [("dual.host.test", 10,
                                            ["::1", "2001:db8::3", "127.0.3.1"])], opts=["-6"])

    def test_family_ipv4_only(self):
        self.assert_ok("mx", "dual.test", [("dual.host.test", 10, ["127.0.3.1"])],
                       opts=["-f", "ipv4"])
        self.assertEqual(SRV.count(qtype="AAAA"), 0)

    def test_family_ipv6_only(self):
        self.assert_ok("mx", "dual.test", [("dual.host.test", 10, ["::1", "2001:db8::3"])],
                       opts=["-f", "ipv6"])
        self.assertEqual(SRV.count(qtype="A"), 0)

    def test_ipv6_only_host(self):
        self.assert_ok("mx", "v6only.test", [("v6.host.test", 10, ["2001:db8::7"])])
        status, _ = self.lookup("mx", "v6only.test", opts=["-f", "ipv4"])
        self.assertTrue(status.startswith("tempfail 4.4.3 "), status)

    # ---- hosts and literals ----

    def test_host_lookup_no_mx(self):
        self.assert_ok("host", "dual.host.test", [("dual.host.test", 0,
                                                   ["127.0.3.1", "::1", "2001:db8::3"])])
        self.assertEqual(SRV.count(qtype="MX"), 0)

    def test_host_lookup_follows_cname(self):
        self.assert_ok("host", "alias.test", [("alias.test", 0,
                                               ["127.0.3.1", "::1", "2001:db8::3"])])

    def test_host_one_family_failing(self):
        self.assert_ok("host", "half.host.test", [("half.host.test", 0, ["127.0.3.9"])],
                       opts=["-r", "1"])

    def test_host_not_found_is_permanent(self):
        status, _ = self.lookup("host", "nosuch.test")
        self.assertEqual(status, "permfail 5.4.4 Host or domain name not found. Name service "
                         "error for name=nosuch.test type=A: Host not found")
        status, _ = self.lookup("host", "v6.host.test", opts=["-f", "ipv4"])
        self.assertEqual(status, "permfail 5.4.4 Host or domain name not found. Name service "
                         "error for name=v6.host.test type=A: Host found but no data record "
                         "of requested type")

    def test_host_temporary(self):
        status, _ = self.lookup("host", "servfail.test", opts=["-r", "1"])
        self.assertEqual(status, "tempfail 4.4.3 Host or domain name not found. Name service "
                         "error for name=servfail.test type=A: Host not found, try again")

    def test_bracketed_name_skips_mx(self):
        self.assert_ok("mx", "[a.order.test]", [("a.order.test", 0, ["127.0.0.11"])])
        self.assertEqual(SRV.count(qtype="MX"), 0)

    def test_literals_without_any_query(self):
        rc, out, _ = run_probe("host", "[127.0.0.1]", "[::1]", "[IPv6:2001:db8::1]", "192.0.2.4")
        self.assertEqual(rc, 0, out)
        got = answers(out)
        self.assertEqual(got["[127.0.0.1]"], ("ok", [("127.0.0.1", 0, ["127.0.0.1"])]))
        self.assertEqual(got["[::1]"], ("ok", [("::1", 0, ["::1"])]))
        self.assertEqual(got["[IPv6:2001:db8::1]"], ("ok", [("2001:db8::1", 0, ["2001:db8::1"])]))
        self.assertEqual(got["192.0.2.4"], ("ok", [("192.0.2.4", 0, ["192.0.2.4"])]))
        rc, out, _ = run_probe("mx", "[127.0.0.1]")
        self.assertEqual(answers(out)["[127.0.0.1]"], ("ok", [("127.0.0.1", 0, ["127.0.0.1"])]))
        self.assertEqual(SRV.count(), 0)

    def test_literal_of_a_disabled_family(self):
        status, _ = self.lookup("host", "[::1]", opts=["-f", "ipv4"])
        self.assertTrue(status.startswith("tempfail 4.4.4 "), status)
        self.assertEqual(SRV.count(), 0)

    def test_malformed_names(self):
        long_label = "x" * 64 + ".test"
        status, _ = self.lookup("mx", long_label)
        self.assertTrue(status.startswith("permfail 5.1.2 "), status)
        status, _ = self.lookup("host", "a" * 300)
        self.assertTrue(status.startswith("permfail 5.4.4 "), status)
        self.assertEqual(SRV.count(), 0)

    # ---- cancel and free ----

    def test_cancel_answered_queries(self):
        rc, out, _ = run_probe("mx", "order.test", "hostile.test", "nosuch.test",
                               opts=["-c"])
        self.assertEqual((rc, out), (0, "cancelled pending=0\n"))
        self.assertGreaterEqual(SRV.count(qtype="MX"), 3)

    def test_cancel_while_timing_out(self):
        rc, out, _ = run_probe("mx", "slow.test", "stuck.test",
                               opts=["-c", "-t", "100", "-r", "1"])
        self.assertEqual((rc, out), (0, "cancelled pending=0\n"))

    def test_free_with_queries_outstanding(self):
        rc, out, _ = run_probe("mx", "slow.test", "order.test", "[::1]", opts=["-F"])
        self.assertEqual((rc, out), (0, "freed\n"))

    def test_free_from_a_callback(self):
        rc, out, _ = run_probe("mx", "[127.0.0.1]", "slow.test", "stuck.test", "order.test",
                               opts=["-X"])
        self.assertEqual(rc, 0, out)
        self.assertEqual(out, "== [127.0.0.1]\nstatus ok\nhost 127.0.0.1 0 127.0.0.1\n"
                         "freed in callback\n")

    def test_bad_servers(self):
        for bad in ("localhost:53", "127.0.0.1:0", "[::1", "127.0.0.1:99999", ","):
            rc, out, _ = run_probe("mx", "order.test", srv=bad)
            self.assertEqual(rc, 1, bad)
            self.assertTrue(out.startswith("dns_new: dns_servers: "), out)


if __name__ == "__main__":
    farmlib.run_tests("dns")
