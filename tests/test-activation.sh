#!/usr/bin/env bash
# D-Bus activation and the bus policy, on a private dbus-daemon (TAP output).
#
# The bus has the default policy of dbus's system.conf (nobody may own names
# or call methods unless a policy file allows it) plus our
# data/org.iv.Ota.conf, and a <servicedir> holding an org.iv.Ota.service
# generated here: Exec= the built iv-otad with a test config and --bus
# session. It checks that:
#  - nothing owns org.iv.Ota until the first call, which starts the agent from
#    that activation file;
#  - as docs/dbus.md says, a user outside group iv-ota may introspect, read
#    properties and receive signals, but may neither call methods nor own the
#    name; a member of the group may call methods.
# The policy checks run clients as user nobody (setpriv), so they need root.
#
# Env: IV_OTAD (built agent), OTA_POLICY (data/org.iv.Ota.conf).
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/tap.sh"

: "${IV_OTAD:?}" "${OTA_POLICY:?}"
tmp=$(mktemp -d /tmp/iv-ota-activation-XXXXXX)
chmod 755 "$tmp" # clients run as nobody reach the socket through it
bus_pid=""
agent_pid=""
monitor_pid=""

cleanup() {
  [ -n "$monitor_pid" ] && kill "$monitor_pid" 2>/dev/null
  if [ -n "$agent_pid" ] && kill -0 "$agent_pid" 2>/dev/null; then
    kill -TERM "$agent_pid"
    for _ in $(seq 100); do kill -0 "$agent_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$agent_pid" 2>/dev/null
  fi
  [ -n "$bus_pid" ] && kill "$bus_pid" 2>/dev/null && wait "$bus_pid" 2>/dev/null
  if [ "$failures" -eq 0 ] && [ -z "${OTA_TEST_KEEP:-}" ]; then rm -rf "$tmp"; else echo "# files kept in $tmp"; fi
}
trap cleanup EXIT

# ---- the bus ----
# Group iv-ota rarely exists on a build machine: the policy is then tested
# with its group renamed to one that exists here and that nobody is not in.
policy=$tmp/org.iv.Ota.conf
group=iv-ota
if ! getent group iv-ota >/dev/null; then
  group=users
  getent group users >/dev/null || group=""
fi
sed "s/group=\"iv-ota\"/group=\"${group:-iv-ota}\"/" "$OTA_POLICY" >"$policy"

mkdir -p "$tmp/services" "$tmp/state" "$tmp/fw"
cat >"$tmp/iv-otad.conf" <<EOF
[mqtt]
# Nothing listens there: the agent keeps retrying, which is all this test needs.
port=9
[device]
product_id=PROD1
device_name=dev1
[ota]
state_dir=$tmp/state
EOF
cat >"$tmp/services/org.iv.Ota.service" <<EOF
[D-BUS Service]
Name=org.iv.Ota
Exec=$IV_OTAD --config $tmp/iv-otad.conf --bus session
EOF
if ! start_private_bus "$tmp" "  <servicedir>$tmp/services</servicedir>
  <!-- The default context of dbus's system.conf. -->
  <policy context=\"default\">
    <allow user=\"*\"/>
    <deny own=\"*\"/>
    <deny send_type=\"method_call\"/>
    <allow send_type=\"signal\"/>
    <allow send_requested_reply=\"true\" send_type=\"method_return\"/>
    <allow send_requested_reply=\"true\" send_type=\"error\"/>
    <allow receive_type=\"method_call\"/>
    <allow receive_type=\"method_return\"/>
    <allow receive_type=\"error\"/>
    <allow receive_type=\"signal\"/>
    <allow send_destination=\"org.freedesktop.DBus\" send_interface=\"org.freedesktop.DBus\"/>
    <allow send_destination=\"org.freedesktop.DBus\" send_interface=\"org.freedesktop.DBus.Introspectable\"/>
  </policy>
  <include>$policy</include>"; then
  echo "Bail out! dbus-daemon did not start: $(cat "$tmp/bus.log")"
  exit 1
fi

bus_call() { # bus_call METHOD ARGS...: a call to the bus itself
  local method=$1
  shift
  gdbus call --session --dest org.freedesktop.DBus --object-path /org/freedesktop/DBus \
    --method "org.freedesktop.DBus.$method" "$@"
}
name_has_owner() { bus_call NameHasOwner org.iv.Ota | grep -q true; }

# ---- activation ----
if name_has_owner; then not_ok "nothing owns org.iv.Ota before the first call"; else
  ok "nothing owns org.iv.Ota before the first call"; fi

# The first call, a property read that allows auto-start, starts the agent.
version=$(gdbus call --session --dest org.iv.Ota --object-path /org/iv/Ota \
  --method org.freedesktop.DBus.Properties.Get org.iv.Ota DaemonVersion 2>&1)
case $version in
"(<'"*"'>,)") ok "the first call starts the agent and is answered ($version)" ;;
*) not_ok "the first call starts the agent and is answered: $version" ;;
esac
agent_pid=$(bus_call GetConnectionUnixProcessID org.iv.Ota 2>/dev/null | sed -n 's/^(uint32 \([0-9]*\),)$/\1/p')
cmdline=$(tr '\0' ' ' <"/proc/${agent_pid:-0}/cmdline" 2>/dev/null)
case $cmdline in
"$IV_OTAD --config $tmp/iv-otad.conf --bus session ") ok "the bus ran the Exec= line of our activation file" ;;
*) not_ok "the bus ran the Exec= line of our activation file (pid ${agent_pid:-none}: $cmdline)" ;;
esac
if grep -q "serving org.iv.Ota on the bus" "$tmp/bus.log"; then ok "the activated agent logs that it serves the name"
else not_ok "the activated agent logs that it serves the name"; fi

# SIGTERM: the activated agent stops by itself, cleanly (under ASan: no report).
stop_agent() {
  if [ -z "$agent_pid" ]; then not_ok "the activated agent stops on SIGTERM (no pid)"; return; fi
  kill -TERM "$agent_pid"
  if wait_for sh -c "! kill -0 $agent_pid 2>/dev/null"; then
    agent_pid=""
    if grep -q "Sanitizer" "$tmp/bus.log"; then not_ok "the activated agent stops cleanly: $(cat "$tmp/bus.log")"
    else check "the activated agent stops cleanly on SIGTERM" grep -q "iv-otad.*: stopped" "$tmp/bus.log"; fi
  else
    not_ok "the activated agent stops on SIGTERM"
  fi
}

# ---- the bus policy ----
if [ "$(id -u)" -ne 0 ] || ! command -v setpriv >/dev/null; then
  for what in "outsider reads properties" "outsider introspects" "outsider receives signals" \
    "outsider cannot call methods" "outsider cannot own the name" "group member calls methods" \
    "group member calls org.iv.Ota.Cloud"; do
    skip "$what" "needs root and setpriv to run clients as another user"
  done
  stop_agent
  echo "1..$n"
  exit $((failures > 0))
fi

nobody_uid=$(id -u nobody)
nobody_gid=$(getent group nogroup | cut -d: -f3)
nobody_gid=${nobody_gid:-$nobody_uid}
as_outsider() { setpriv --reuid="$nobody_uid" --regid="$nobody_gid" --clear-groups -- "$@"; }

out=$(as_outsider gdbus call --session --dest org.iv.Ota --object-path /org/iv/Ota \
  --method org.freedesktop.DBus.Properties.Get org.iv.Ota Connected 2>&1)
check "outsider reads properties: Get ($out)" test "$out" = "(<false>,)"
out=$(as_outsider gdbus call --session --dest org.iv.Ota --object-path /org/iv/Ota \
  --method org.freedesktop.DBus.Properties.GetAll org.iv.Ota 2>&1)
check "outsider reads properties: GetAll" grep -q "DaemonVersion" <<<"$out"
out=$(as_outsider gdbus introspect --session --dest org.iv.Ota --object-path /org/iv/Ota 2>&1)
check "outsider introspects" grep -q "interface org.iv.Ota" <<<"$out"
check "outsider introspects org.iv.Ota.Cloud" grep -q "interface org.iv.Ota.Cloud" <<<"$out"

# Signals: an outsider's monitor sees the Progress that root's Init causes.
# "is owned by" is printed after its match rule is in place (same connection, in order).
as_outsider gdbus monitor --session --dest org.iv.Ota >"$tmp/monitor.log" 2>&1 &
monitor_pid=$!
wait_for grep -q "is owned by" "$tmp/monitor.log"
out=$(gdbus call --session --dest org.iv.Ota --object-path /org/iv/Ota --method org.iv.Ota.Init \
  "" "1.0" "$tmp/fw" "@a{sv} {}" 2>&1)
check "root calls methods: Init ($out)" test "$out" = "()"
if wait_for grep -q "org.iv.Ota.Progress" "$tmp/monitor.log"; then ok "outsider receives signals"
else not_ok "outsider receives signals: $(cat "$tmp/monitor.log")"; fi

for method in GetStatus CheckNow Exit; do
  out=$(as_outsider gdbus call --session --dest org.iv.Ota --object-path /org/iv/Ota \
    --method "org.iv.Ota.$method" "" 2>&1)
  check "outsider cannot call methods: $method is refused by the bus" \
    grep -q "org.freedesktop.DBus.Error.AccessDenied" <<<"$out"
done
out=$(as_outsider gdbus call --session --dest org.iv.Ota --object-path /org/iv/Ota \
  --method org.iv.Ota.Cloud.Subscribe 'PROD1/dev1/#' 2>&1)
check "outsider cannot call methods: Cloud.Subscribe is refused by the bus" \
  grep -q "org.freedesktop.DBus.Error.AccessDenied" <<<"$out"
out=$(as_outsider gdbus call --session --dest org.iv.Ota --object-path /org/iv/Ota \
  --method org.iv.Ota.Cloud.Publish 'PROD1/dev1/x' "@ay [120]" 0 "@a{sv} {}" 2>&1)
check "outsider cannot call methods: Cloud.Publish is refused by the bus" \
  grep -q "org.freedesktop.DBus.Error.AccessDenied" <<<"$out"
out=$(as_outsider gdbus call --session --dest org.freedesktop.DBus --object-path /org/freedesktop/DBus \
  --method org.freedesktop.DBus.RequestName org.iv.Ota 0 2>&1)
check "outsider cannot own the name" grep -q "AccessDenied" <<<"$out"

if [ -z "$group" ]; then
  skip "group member calls methods" "no group iv-ota nor users on this machine"
else
  gid=$(getent group "$group" | cut -d: -f3)
  out=$(setpriv --reuid="$nobody_uid" --regid="$nobody_gid" --groups="$gid" -- \
    gdbus call --session --dest org.iv.Ota --object-path /org/iv/Ota --method org.iv.Ota.GetStatus "" 2>&1)
  check "group member (group $group) calls methods: GetStatus" grep -q "'state'" <<<"$out"
  # The agent has no broker here: the subscription is taken, made at the connect.
  out=$(setpriv --reuid="$nobody_uid" --regid="$nobody_gid" --groups="$gid" -- \
    gdbus call --session --dest org.iv.Ota --object-path /org/iv/Ota --method org.iv.Ota.Cloud.Subscribe \
    'PROD1/dev1/#' 2>&1)
  check "group member (group $group) calls org.iv.Ota.Cloud: Subscribe ($out)" test "$out" = "()"
  out=$(setpriv --reuid="$nobody_uid" --regid="$nobody_gid" --groups="$gid" -- \
    gdbus call --session --dest org.iv.Ota --object-path /org/iv/Ota --method org.iv.Ota.Cloud.Publish \
    'PROD1/dev1/x' "@ay [120]" 1 "@a{sv} {}" 2>&1)
  check "group member (group $group) calls org.iv.Ota.Cloud: Publish offline is Offline" \
    grep -q "org.iv.Ota.Error.Offline" <<<"$out"
fi

stop_agent

echo "1..$n"
exit $((failures > 0))
