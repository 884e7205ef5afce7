#!/usr/bin/env bash
# The README's first command, scripts/demo.sh, in its non-interactive mode on
# an already built tree: it must exit 0 and its last line must say "done".
# Usage: test-demo.sh BUILDDIR DEMO_SCRIPT
set -uo pipefail
out=$(mktemp "${TMPDIR:-/tmp}/iv-ota-demo-test.XXXXXX") || exit 1
trap 'rm -f "$out"' EXIT

DEMO_NONINTERACTIVE=1 IV_OTA_DEMO_BUILDDIR="$1" "$2" >"$out"
rc=$?
cat "$out"
if [ "$rc" -ne 0 ]; then
  echo "test-demo: the demo exited with status $rc"
  exit 1
fi
last=$(tail -n 1 "$out")
case "$last" in
  *done*) exit 0 ;;
  *) echo "test-demo: the last line does not say done: $last"; exit 1 ;;
esac
