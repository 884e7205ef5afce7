#!/usr/bin/env bash
# The one command that runs every test: installs what is missing, builds with
# warnings as errors, runs the suite, then runs it again under ASan+UBSan.
# Integration tests each run under their own dbus-run-session (see tests/meson.build).
# Last line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh || { echo "0 passed, 1 failed"; exit 1; }

passed=0
failed=0

# run_suite NAME BUILDDIR MESON_ARGS...
run_suite() {
  local name=$1 dir=$2
  shift 2
  echo "== $name: configure and build ($dir)"
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" --werror "$@" >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log"; failed=$((failed + 1)); return; }
  fi
  if ! meson compile -C "$dir" >"$dir.compile.log" 2>&1; then
    cat "$dir.compile.log"
    failed=$((failed + 1))
    return
  fi
  echo "== $name: test"
  meson test -C "$dir" --print-errorlogs --num-processes 2 --timeout-multiplier "${TIMEOUT_MULTIPLIER:-1}" 2>&1 | tee "$dir.test.log"
  # Count GTest cases (TAP lines meson echoes) of every test program.
  local p f
  p=$(python3 scripts/count-results.py "$dir/meson-logs/testlog.json" passed)
  f=$(python3 scripts/count-results.py "$dir/meson-logs/testlog.json" failed)
  passed=$((passed + p))
  failed=$((failed + f))
}

run_suite "default build" build -Dbuildtype=debugoptimized
if [ "${IV_OTA_SKIP_ASAN:-0}" != 1 ]; then
  ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0 \
    run_suite "ASan+UBSan build" build-asan -Dbuildtype=debug -Db_sanitize=address,undefined -Db_lundef=false
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
