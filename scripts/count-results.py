#!/usr/bin/env python3
"""Counts test cases in a meson testlog.json: each GTest case of a TAP test
program counts once; a program that crashed or timed out counts as one failure."""
import json
import re
import sys

path, want = sys.argv[1], sys.argv[2]
passed = failed = 0
try:
    lines = open(path).read().splitlines()
except OSError:
    print(1 if want == "failed" else 0)
    sys.exit(0)
for line in lines:
    t = json.loads(line)
    ok = len(re.findall(r"^ok ", t.get("stdout") or "", re.M))
    bad = len(re.findall(r"^not ok ", t.get("stdout") or "", re.M))
    skipped = len(re.findall(r"^ok .*# SKIP", t.get("stdout") or "", re.M))
    ok -= skipped
    if t["result"] in ("OK", "EXPECTEDFAIL"):
        passed += max(ok, 1) if bad == 0 else ok
        failed += bad
    elif t["result"] == "SKIP":
        pass
    else:
        passed += ok
        failed += max(bad, 1)
print(passed if want == "passed" else failed)
