# shellcheck shell=bash
# Sourced by the shell tests (test-*.sh): TAP output, polling, a private bus.
# The sourcing script prints "1..$n" at the end and exits non-zero when
# $failures is.

n=0
failures=0
# Programs of ours run as "${ours[@]}" PROGRAM...: through qemu user mode in a
# cross build (IV_OTA_TEST_WRAPPER, see tests/meson.build), directly otherwise.
# shellcheck disable=SC2034 # used by the sourcing tests
read -r -a ours <<<"${IV_OTA_TEST_WRAPPER:-}"

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failures=$((failures + 1)); echo "not ok $n - $1"; }
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
check() { # check DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@"; then ok "$what"; else not_ok "$what"; fi
}

# Polls COMMAND... every 0.1 s for up to $WAIT_SECONDS (default 20) s.
wait_for() {
  for _ in $(seq $((${WAIT_SECONDS:-20} * 10))); do "$@" && return 0; sleep 0.1; done
  return 1
}

# start_private_bus DIR BODY: a dbus-daemon (session type, EXTERNAL auth)
# listening on DIR/bus, with BODY (policies, <servicedir>, <include>...) in
# its DIR/bus.conf; log in DIR/bus.log. Sets bus_pid and points
# DBUS_SESSION_BUS_ADDRESS at it; fails when the socket does not appear.
start_private_bus() {
  local dir=$1 body=$2
  cat >"$dir/bus.conf" <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=$dir/bus</listen>
  <auth>EXTERNAL</auth>
$body
</busconfig>
CONF
  dbus-daemon --config-file="$dir/bus.conf" --nofork --nopidfile >"$dir/bus.log" 2>&1 &
  bus_pid=$!
  export DBUS_SESSION_BUS_ADDRESS=unix:path=$dir/bus
  unset DBUS_SYSTEM_BUS_ADDRESS DBUS_STARTER_ADDRESS DBUS_STARTER_BUS_TYPE
  wait_for test -S "$dir/bus"
}
