#!/usr/bin/env python3
"""zfpasswd(8): adding, changing and removing users of smtpserver's
password file.

Run by `make check` as `python3 tests/tools/test_zfpasswd.py` with
top_builddir and top_srcdir in the environment.  Passwords go in on
standard input and through a pseudo-terminal (asked twice, not echoed);
SHA-512 hashes are checked with `openssl passwd -6`, every kind by
smtpserver itself in tests/smtpserver/test_tls_auth.py.  Prints
"N passed, N failed" at the end.
"""

import os
import pty
import re
import select
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "farmd"))
import farmlib  # noqa: E402

ZFPASSWD = os.path.join(farmlib.TOP_BUILDDIR, "tools", "zfpasswd")


def run(*args, stdin="", config=None):
    return subprocess.run([ZFPASSWD] + list(args), input=stdin, capture_output=True, text=True,
                          timeout=30)


def sha512_ok(hashed, password):
    salt = hashed.split("$")[2]
    out = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"],
                         input=password + "\n", capture_output=True, text=True, timeout=30)
    return out.stdout.strip() == hashed


class ZfpasswdTest(unittest.TestCase):
    def setUp(self):
        if not os.access(ZFPASSWD, os.X_OK):
            self.skipTest("zfpasswd not built")
        self.tmp = tempfile.mkdtemp(prefix="zfarm-zfpasswd-")
        self.file = os.path.join(self.tmp, "passwd")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def lines(self):
        with open(self.file) as f:
            return f.read().splitlines()

    def entry(self, user):
        for ln in self.lines():
            if ln.startswith(user + ":"):
                return ln.split(":", 1)[1]
        return None

    def test_add_change_remove(self):
        r = run("-f", self.file, "-s", "sha512crypt", "alice", stdin="first pw\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "added user alice in %s\n" % self.file)
        self.assertEqual(stat.S_IMODE(os.stat(self.file).st_mode), 0o640)
        h = self.entry("alice")
        self.assertRegex(h, r"^\$6\$[./A-Za-z0-9]+\$[./A-Za-z0-9]{86}$")
        self.assertTrue(sha512_ok(h, "first pw"))
        self.assertFalse(sha512_ok(h, "first pW"))
        self.assertNotIn("first pw", open(self.file).read())
        # default scheme yescrypt; a second user; comments and order kept
        with open(self.file, "a") as f:
            f.write("# a comment\n")
        r = run("-f", self.file, "bob", stdin="bob pw\r\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(self.entry("bob"), r"^\$y\$")
        os.chmod(self.file, 0o600)
        ino = os.stat(self.file).st_ino
        r = run("-f", self.file, "-s", "sha512crypt", "alice", stdin="second pw\n")
        self.assertEqual(r.stdout, "changed user alice in %s\n" % self.file)
        self.assertTrue(sha512_ok(self.entry("alice"), "second pw"))
        lines = self.lines()
        self.assertEqual([ln.split(":")[0] for ln in lines], ["alice", "# a comment", "bob"])
        st = os.stat(self.file)
        self.assertNotEqual(st.st_ino, ino)  # replaced, not rewritten in place
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)  # mode kept
        # remove
        r = run("-f", self.file, "-D", "alice")
        self.assertEqual((r.returncode, r.stdout), (0, "removed user alice in %s\n" % self.file))
        self.assertEqual([ln.split(":")[0] for ln in self.lines()], ["# a comment", "bob"])
        r = run("-f", self.file, "-D", "alice")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no user alice", r.stderr)
        self.assertEqual(sorted(os.listdir(self.tmp)), ["passwd", "passwd.lock"])

    def test_other_fields_and_prefixes_kept(self):
        with open(self.file, "w") as f:
            f.write("carol:{SHA512-CRYPT}$6$ab$cd:1000:1000::/home/carol\n"
                    "  dave:$5$x$y\n")
        r = run("-f", self.file, "-s", "sha512crypt", "dave", stdin="d\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.lines()[0], "carol:{SHA512-CRYPT}$6$ab$cd:1000:1000::/home/carol")
        self.assertTrue(self.lines()[1].startswith("dave:$6$"))
        self.assertEqual(len(self.lines()), 2)

    def test_schemes(self):
        for scheme, prefix in (("yescrypt", "$y$"), ("sha512crypt", "$6$"),
                               ("sha256crypt", "$5$"), ("bcrypt", "$2b$")):
            with self.subTest(scheme=scheme):
                r = run("-f", self.file, "-s", scheme, "u", stdin="pw\n")
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertTrue(self.entry("u").startswith(prefix), self.entry("u"))
        self.assertEqual(run("-f", self.file, "-s", "md5crypt", "u", stdin="pw\n").returncode, 2)

    def test_refusals(self):
        for user in ("", "a b", "a:b", "#x", "a\tb", "x" * 256):
            with self.subTest(user=user):
                r = run("-f", self.file, user, stdin="pw\n")
                self.assertEqual(r.returncode, 2, (user, r.stderr))
        for pw, why in (("\n", "empty password"), ("", "no password"),
                        ("a\x01b\n", "control characters"), ("x" * 512 + "\n", "no password")):
            with self.subTest(pw=pw[:10]):
                r = run("-f", self.file, "u", stdin=pw)
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertIn(why, r.stderr)
        self.assertFalse(os.path.exists(self.file))
        r = subprocess.run([ZFPASSWD, "u"], input="pw\n", capture_output=True, text=True,
                           timeout=30, env=dict(os.environ, ZFARM_CONFIG=""))
        self.assertEqual(r.returncode, 2)  # neither -f nor a configuration
        self.assertEqual(run("-f", self.file).returncode, 2)
        # 511 octets are fine (libcrypt's limit)
        self.assertEqual(run("-f", self.file, "u", stdin="y" * 511 + "\n").returncode, 0)

    def test_from_config(self):
        conf = os.path.join(self.tmp, "zfarm.conf")
        with open(conf, "w") as f:
            f.write("run_directory = %s\nsmtpd_sasl_path = %s\n" % (self.tmp, self.file))
        r = run("-c", conf, "erin", stdin="pw\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIsNotNone(self.entry("erin"))
        r = run("-c", conf, "-o", "smtpd_sasl_type=dovecot", "erin", stdin="pw\n")
        self.assertEqual(r.returncode, 2)
        self.assertIn("use -f", r.stderr)

    def test_concurrent(self):
        # ten runs at once: every user ends up in the file (the lock)
        procs = [subprocess.Popen([ZFPASSWD, "-f", self.file, "-s", "sha256crypt", "u%d" % i],
                                  stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for i in range(10)]
        for p in procs:
            p.stdin.write("pw\n")
            p.stdin.close()
        for p in procs:
            self.assertEqual(p.wait(30), 0, p.stderr.read())
        self.assertEqual(sorted(ln.split(":")[0] for ln in self.lines()),
                         sorted("u%d" % i for i in range(10)))

    def test_terminal(self):
        """Asked twice on the terminal, nothing echoed; a mismatch changes nothing."""
        def converse(answers):
            pid, fd = pty.fork()
            if pid == 0:
                os.execv(ZFPASSWD, [ZFPASSWD, "-f", self.file, "-s", "sha512crypt", "tty"])
            out, deadline = b"", time.monotonic() + 20
            for a in answers:
                while b": " not in out.split(b"\n")[-1] and time.monotonic() < deadline:
                    if select.select([fd], [], [], 0.5)[0]:
                        out += os.read(fd, 1024)
                os.write(fd, a.encode() + b"\n")
                out += b"\n"
            while time.monotonic() < deadline:
                if select.select([fd], [], [], 0.5)[0]:
                    try:
                        d = os.read(fd, 1024)
                    except OSError:
                        break
                    if not d:
                        break
                    out += d
            _, status = os.waitpid(pid, 0)
            os.close(fd)
            return os.waitstatus_to_exitcode(status), out.decode(errors="replace")

        code, out = converse(["tty secret", "tty secret"])
        self.assertEqual(code, 0, out)
        self.assertIn("Password: ", out)
        self.assertIn("Again: ", out)
        self.assertNotIn("tty secret", out)
        self.assertTrue(sha512_ok(self.entry("tty"), "tty secret"))
        h = self.entry("tty")
        code, out = converse(["one", "two"])
        self.assertEqual(code, 1, out)
        self.assertIn("the passwords differ", out)
        self.assertEqual(self.entry("tty"), h)


def main():
    farmlib.run_tests("zfpasswd")


if __name__ == "__main__":
    main()
