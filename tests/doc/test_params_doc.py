#!/usr/bin/env python3
"""zfarm.conf(5) documents every parameter that exists, and nothing else.

Run by `make check` as `python3 tests/doc/test_params_doc.py` with
top_srcdir in the environment (read only: the test writes nothing).

The parameters that exist are the code's tables:
  - common/params.c   params_names[]     the global parameters;
  - farmd/farm_def.c  farm_def_params[]  the keys of a [farm NAME] section;
  - common/channel.c  channel_params[]   the keys of a [channel NAME] section.
The reference is man/zfarm.conf.5: an entry is a .TP (or .TQ, for a second
name of the same entry) line followed by a ".B name" line, in the sections
.SH "GLOBAL PARAMETERS", "FARM PARAMETERS" and "CHANNEL PARAMETERS".  Each
entry must say "Default:" and "Read by:".

Besides, every global a program reads with a literal name
(config_get*(cfg, NULL, NULL, "name", ...)) must be in params_names[], so a
new parameter cannot skip the table (and with it this check); the table
must stay sorted for params_known()'s bsearch.
Prints "N passed, N failed" at the end.
"""

import os
import re
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_SRCDIR = os.path.abspath(os.environ.get("top_srcdir") or os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(TOP_SRCDIR, "tests", "farmd"))
import farmlib  # noqa: E402

MAN_PAGE = os.path.join(TOP_SRCDIR, "man", "zfarm.conf.5")
# (file, array) of each table, and the man page section that documents it.
TABLES = {
    "global": ("common/params.c", "params_names", "GLOBAL PARAMETERS"),
    "farm": ("farmd/farm_def.c", "farm_def_params", "FARM PARAMETERS"),
    "channel": ("common/channel.c", "channel_params", "CHANNEL PARAMETERS"),
}
# Folders whose C sources read the configuration (proto/ is generated).
SOURCE_DIRS = ("common", "farmd", "router", "scheduler", "smtpserver", "transport", "tools")


def read(rel):
    with open(os.path.join(TOP_SRCDIR, rel), encoding="utf-8") as f:
        return f.read()


def c_string_table(rel, array):
    """The string literals of `array[] = { ... };` in file rel, in order."""
    text = read(rel)
    m = re.search(r"\b%s\s*\[\s*\]\s*=\s*\{(.*?)\};" % re.escape(array), text, re.S)
    if m is None:
        raise AssertionError("%s: no table %s[] = {...}; (renamed? update %s)"
                             % (rel, array, os.path.relpath(__file__, TOP_SRCDIR)))
    body = re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)
    return re.findall(r'"([^"\\]*)"', body)


def man_entries(text):
    """{section title: [(name, entry text), ...]} of the .TP/.TQ + .B entries."""
    sections, current, entries = {}, None, None
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(".SH"):
            current = line[3:].strip().strip('"')
            entries = sections.setdefault(current, [])
        elif line.startswith(".SS"):
            pass
        elif line in (".TP", ".TQ") and entries is not None and i + 1 < len(lines):
            m = re.match(r"^\.B (\S+)$", lines[i + 1])
            if m:
                # The entry's text runs to the next .TP, .SS or .SH; a .TQ
                # name shares the text of the names after it.
                j = i + 2
                while j < len(lines) and not lines[j].startswith((".TP", ".SS", ".SH")):
                    j += 1
                entries.append((m.group(1), "\n".join(lines[i + 2:j])))
                i += 2
                continue
        i += 1
    return sections


class ParamsDocTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.code = {kind: c_string_table(f, a) for kind, (f, a, _) in TABLES.items()}
        with open(MAN_PAGE, encoding="utf-8") as f:
            cls.sections = man_entries(f.read())

    def documented(self, kind):
        title = TABLES[kind][2]
        self.assertIn(title, self.sections,
                      "man/zfarm.conf.5 has no section .SH %s" % title)
        return [name for name, _ in self.sections[title]]

    def check_same(self, kind):
        code, doc = set(self.code[kind]), set(self.documented(kind))
        file, array, title = TABLES[kind]
        missing = sorted(code - doc)
        stale = sorted(doc - code)
        problems = []
        if missing:
            problems.append("in %s %s[] but not documented under %s in man/zfarm.conf.5: %s"
                            % (file, array, title, ", ".join(missing)))
        if stale:
            problems.append("documented under %s in man/zfarm.conf.5 but not in %s %s[] "
                            "(renamed or removed?): %s" % (title, file, array, ", ".join(stale)))
        if problems:
            self.fail("%s parameters: %s" % (kind, "; ".join(problems)))

    def test_global_parameters(self):
        self.check_same("global")

    def test_farm_parameters(self):
        self.check_same("farm")

    def test_channel_parameters(self):
        self.check_same("channel")

    def test_entries_once_with_default_and_readers(self):
        for kind in TABLES:
            names = self.documented(kind)
            dups = sorted({n for n in names if names.count(n) > 1})
            if dups:
                self.fail("%s: documented more than once: %s" % (TABLES[kind][2], ", ".join(dups)))
            for name, text in self.sections[TABLES[kind][2]]:
                for field in ("Default:", "Read by:"):
                    self.assertIn(field, text, "entry %s: no \"%s\"" % (name, field))

    def test_params_table_sorted(self):
        names = self.code["global"]
        want = sorted(set(names))  # strcmp order: ASCII, as Python sorts str
        self.assertEqual(names, want, "common/params.c params_names[] must be sorted and "
                         "without duplicates (params_known() uses bsearch)")

    def test_literal_getters_are_in_tables(self):
        known = {"global": set(self.code["global"]),
                 "farm": set(self.code["farm"]) | set(self.code["global"]),
                 "channel": set(self.code["channel"])}
        getter = re.compile(r'\bconfig_get\w*\(\s*[^,()]+,\s*(NULL|"farm"|"channel")\s*,'
                            r'\s*[^,()]+,\s*"(\w+)"')
        unknown = []
        for d in SOURCE_DIRS:
            root = os.path.join(TOP_SRCDIR, d)
            for name in sorted(os.listdir(root)):
                if not name.endswith(".c"):
                    continue
                rel = os.path.join(d, name)
                for m in getter.finditer(read(rel)):
                    kind = "global" if m.group(1) == "NULL" else m.group(1).strip('"')
                    if m.group(2) not in known[kind]:
                        unknown.append("%s: %s %s" % (rel, kind, m.group(2)))
        if unknown:
            self.fail("parameters read in code but missing from their table (common/params.c, "
                      "farmd/farm_def.c, common/channel.c): " + "; ".join(unknown))


if __name__ == "__main__":
    farmlib.run_tests("params doc")
