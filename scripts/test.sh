#!/usr/bin/env bash
# The one command that runs every test: installs what is missing, builds with
# warnings as errors, runs the suite, then runs it again under ASan+UBSan, then
# runs each libFuzzer target for a bounded time (IV_OTA_SKIP_FUZZ=1 skips that),
# then cross-builds for 32-bit ARM and runs the unit and integration tests
# under qemu (scripts/cross.sh armhf --test; IV_OTA_SKIP_CROSS=1 skips that).
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
  # Leaks fail a test; no suppressions (a leak anywhere in our code is a bug).
  # Stacks are unwound the fast way: the slow one (fast_unwind_on_malloc=0)
  # made every allocation 20-50x dearer and the agent fell behind floods.
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_suite "ASan+UBSan build" build-asan -Dbuildtype=debug -Db_sanitize=address,undefined -Db_lundef=false
fi

# run_fuzz: builds the libFuzzer targets (fuzz/) with clang and runs each for
# IV_OTA_FUZZ_SECONDS on a copy of its seed corpus, nproc at a time. One test
# per target: a crash, leak, UB, hang or broken invariant fails it.
fuzz_targets=(cloud-message:16384:json record:4200:json outbox:16384:json reboot-marker:4200:json cycle-record:4200:json config:8192:config signature:4200:signature topic-rules:2200:topic)

run_fuzz() {
  local dir=build-fuzz seconds=${IV_OTA_FUZZ_SECONDS:-20} work spec t max_len dict names=()
  echo "== fuzz: configure and build ($dir, clang)"
  for spec in "${fuzz_targets[@]}"; do names+=("fuzz/fuzz-${spec%%:*}"); done
  if [ ! -f "$dir/build.ninja" ]; then
    CC=clang meson setup "$dir" --werror -Dbuildtype=debug -Db_sanitize=address,undefined \
      -Db_lundef=false -Dc_args=-fsanitize=fuzzer-no-link -Dfuzzing=true >"$dir.setup.log" 2>&1 ||
      { cat "$dir.setup.log"; failed=$((failed + ${#fuzz_targets[@]})); return; }
  fi
  if ! meson compile -C "$dir" "${names[@]}" >"$dir.compile.log" 2>&1; then
    cat "$dir.compile.log"
    failed=$((failed + ${#fuzz_targets[@]}))
    return
  fi
  echo "== fuzz: ${seconds} s per target"
  work=$(mktemp -d)
  mkdir -p "$dir/artifacts"
  local running=0 jobs
  jobs=$(nproc 2>/dev/null || echo 1)
  for spec in "${fuzz_targets[@]}"; do
    IFS=: read -r t max_len dict <<<"$spec"
    cp -r "fuzz/corpus/fuzz-$t" "$work/$t"
    # A hang counts too (-timeout); the outer timeout only guards the guard.
    (
      ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        timeout $((seconds * 3 + 60)) "$dir/fuzz/fuzz-$t" "$work/$t" -max_total_time="$seconds" \
        -max_len="$max_len" -dict="fuzz/$dict.dict" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$PWD/$dir/artifacts/fuzz-$t-" >"$work/$t.log" 2>&1
      echo $? >"$work/$t.rc"
    ) &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
  done
  wait
  for spec in "${fuzz_targets[@]}"; do
    t=${spec%%:*}
    local log=$work/$t.log runs artifact
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    artifact=$(sed -n 's/.*Test unit written to //p' "$log" | tail -n 1)
    if [ "$(cat "$work/$t.rc")" = 0 ] && [ -n "$runs" ] && [ -z "$artifact" ]; then
      echo "fuzz-$t: ok, $runs executions"
      passed=$((passed + 1))
    else
      grep -v '^#[0-9]' "$log" | tail -n 60
      echo "fuzz-$t: FAILED after ${runs:-?} executions; input: ${artifact:-none saved}" \
        "(replay: $dir/fuzz/fuzz-$t ${artifact:-INPUT})"
      failed=$((failed + 1))
    fi
  done
  rm -rf "$work"
}

if [ "${IV_OTA_SKIP_FUZZ:-0}" != 1 ]; then
  run_fuzz
fi

# run_cross ARCH: the suite's unit and integration tests on 32-bit ARM, every
# program of ours under qemu user mode (scripts/cross.sh; docs/targets.md).
run_cross() {
  local arch=$1 log=build-$1.cross.log p f last
  echo "== cross build and test: $arch under qemu"
  scripts/cross.sh "$arch" --test >"$log" 2>&1
  grep -E '^ *[0-9]+/[0-9]+ |^cross:' "$log"
  last=$(tail -n 1 "$log")
  if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    p=${BASH_REMATCH[1]} f=${BASH_REMATCH[2]}
  else
    tail -n 40 "$log"
    p=0 f=1
  fi
  [ "$f" -eq 0 ] || tail -n 200 "$log"
  echo "$arch: $p passed, $f failed"
  passed=$((passed + p))
  failed=$((failed + f))
}

if [ "${IV_OTA_SKIP_CROSS:-0}" != 1 ]; then
  run_cross armhf
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
