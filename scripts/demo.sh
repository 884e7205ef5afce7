#!/usr/bin/env bash
# The iv-ota demo: the whole update story on this machine, in under a minute.
#
#   scripts/demo.sh
#   scripts/demo.sh --rauc   the root file system updated by RAUC, no app (root)
#
# Installs what is missing (scripts/deps.sh), builds into build-demo/ (release),
# then plays, on a private D-Bus session bus: a mosquitto broker on a free
# loopback port, iv-ota-cloud offering a generated 64 MiB firmware (and cutting
# the first download at 40 %), iv-otad, the example device app, and
# `iv-ota watch` drawing the progress. Everything runs from a temporary
# directory and is stopped at the end, whatever happens.
#
# Environment:
#   IV_OTA_DEMO_BUILDDIR=DIR  use this build tree as it is: no deps, no build
#   DEMO_NONINTERACTIVE=1     plain lines even on a terminal (also when stdout is
#                             not a terminal, or CI=true); the last line says done
#   IV_OTA_DEMO_TIMEOUT=S     give up after S seconds (default 120): exit 1
#   IV_OTA_DEMO_KEEP=1        keep the temporary directory (logs) at the end
#
# Exit status: 0 when the story completed, non-zero otherwise.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/demo-common.sh
source "$root/scripts/demo-common.sh"

# scripts/demo.sh --rauc: the RAUC story instead (scripts/demo-rauc.sh, as root).
if [ "${1:-}" = --rauc ]; then
  shift
  exec "$root/scripts/demo-rauc.sh" "$@"
fi

# ---- stage 1: dependencies, build, then the same script on a private bus ----
if [ -z "${IV_OTA_DEMO_IN_SESSION:-}" ]; then
  demo_build
  for exe in service/iv-otad tools/iv-ota-cloud tools/iv-ota examples/device-app; do
    [ -x "$builddir/$exe" ] || { echo "demo: $builddir/$exe is missing" >&2; exit 1; }
  done
  demo_in_session "$@"
fi

# ---- stage 2: the story, inside the private session bus ----
demo_session_programs
DEVICE_APP=$builddir/examples/device-app

FW_SIZE=$((64 * 1024 * 1024))
CUT_AT=$((FW_SIZE * 40 / 100))
RATE=$((4 * 1024 * 1024)) # bytes per second: the bar moves for about 16 s
OLD_VERSION=1.0.0
NEW_VERSION=2.0.0
PRODUCT=DEMO
DEVICE=dev1

interactive=1
if [ ! -t 1 ] || [ "${DEMO_NONINTERACTIVE:-0}" = 1 ] || [ "${CI:-}" = true ]; then
  interactive=0
fi
started=$SECONDS
deadline=$((SECONDS + ${IV_OTA_DEMO_TIMEOUT:-120}))

tmp=$(mktemp -d "${TMPDIR:-/tmp}/iv-ota-demo.XXXXXX") || exit 1
pids=()
watch_pid=
completed=0 # 1 once the story is over, "interrupted" after Ctrl-C

cleanup() {
  local pid
  trap '' INT TERM HUP PIPE # once stopping, stop everything
  for pid in ${watch_pid:+"$watch_pid"} "${pids[@]}"; do
    kill "$pid" 2>/dev/null
  done
  for pid in ${watch_pid:+"$watch_pid"} "${pids[@]}"; do
    wait "$pid" 2>/dev/null
  done
  [ "$interactive" = 1 ] && printf '\033[?25h' # the cursor, if watch was stopped mid-line
  # The logs of a failed run are kept, to be read; anything else goes.
  if [ "$completed" = 0 ] || [ "${IV_OTA_DEMO_KEEP:-0}" = 1 ]; then
    echo "demo: logs kept in $tmp" >&2
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT
trap 'completed=interrupted; exit 130' INT TERM HUP

# ---- narration ----
if [ "$interactive" = 1 ]; then
  B=$'\033[1m' D=$'\033[2m' C=$'\033[36m' G=$'\033[32m' R=$'\033[31m' N=$'\033[0m'
else
  B= D= C= G= R= N=
fi

say() { # a step of the story
  if [ "$interactive" = 1 ]; then
    printf '\n%s▶ %s%s\n' "$B$C" "$*" "$N"
  else
    printf 'demo: %s\n' "$*"
  fi
}

show() { # evidence: a line from a log, indented, after its source
  local source=$1
  shift
  printf '    %s%-14s│ %s%s\n' "$D" "$source" "$*" "$N"
}

fail() {
  printf '%sdemo: FAILED: %s%s\n' "$R" "$*" "$N" >&2
  for log in "$tmp"/*.log; do
    [ -f "$log" ] || continue
    printf -- '--- last lines of %s\n' "$log" >&2
    tail -n 8 "$log" >&2
  done
  exit 1
}

check_deadline() {
  [ "$SECONDS" -lt "$deadline" ] || fail "timed out after $((SECONDS - started)) s $*"
}

# wait_line FILE REGEX WHAT: waits for a line of FILE matching REGEX; sets $line.
wait_line() {
  local file=$1 regex=$2 what=$3
  line=
  while :; do
    if [ -f "$file" ] && line=$(grep -E -m1 -- "$regex" "$file"); then
      return 0
    fi
    check_deadline "waiting for $what"
    sleep 0.1
  done
}

# last_line FILE REGEX: the last matching line, or nothing.
last_line() {
  grep -E -- "$2" "$1" 2>/dev/null | tail -n 1
}

# Strips GLib's "iv-otad-Message: 12:00:00.000: " prefix from an agent log line.
agent_text() {
  sed -E 's/^[^:]*-(Message|INFO|DEBUG|WARNING): [0-9:.]+: //' <<<"$1"
}

port_is_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# start NAME COMMAND...: runs it in the background, output in $tmp/NAME.log.
start() {
  local name=$1
  shift
  "$@" >"$tmp/$name.log" 2>&1 &
  pids+=($!)
}

# ---- the cast ----

start_broker() {
  local exe port conf attempt i
  exe=$(command -v mosquitto || echo /usr/sbin/mosquitto)
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    port=$((20000 + RANDOM % 40000))
    port_is_open "$port" && continue
    conf=$tmp/mosquitto.conf
    {
      echo "listener $port 127.0.0.1"
      echo "allow_anonymous true"
      echo "persistence false"
      echo "log_dest stderr"
      [ "$(id -u)" = 0 ] && echo "user root"
    } >"$conf"
    "$exe" -c "$conf" >"$tmp/mosquitto.log" 2>&1 &
    local pid=$!
    for i in $(seq 50); do
      if port_is_open "$port"; then
        pids+=("$pid")
        broker_port=$port
        return 0
      fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  fail "cannot start mosquitto on a free port (see $tmp/mosquitto.log)"
}

start_cloud() {
  head -c "$FW_SIZE" /dev/urandom >"$tmp/firmware-$NEW_VERSION.bin" || fail "cannot write the firmware"
  fw_md5=$(md5sum "$tmp/firmware-$NEW_VERSION.bin" | cut -d' ' -f1)
  "$IV_OTA_CLOUD" --product=$PRODUCT --device=$DEVICE --port="$broker_port" --version=$NEW_VERSION \
    --firmware="$tmp/firmware-$NEW_VERSION.bin" --ready-file="$tmp/cloud.ready" \
    --cut-after=$CUT_AT --cut-once --rate=$RATE >"$tmp/cloud-reports.log" 2>"$tmp/cloud.log" &
  pids+=($!)
  wait_line "$tmp/cloud.ready" '^[0-9]+$' "iv-ota-cloud to be ready"
}

start_agent() {
  mkdir -p "$tmp/state"
  cat >"$tmp/iv-otad.conf" <<EOF
[mqtt]
host=127.0.0.1
port=$broker_port
keepalive=10
[device]
product_id=$PRODUCT
device_name=$DEVICE
[ota]
state_dir=$tmp/state
# iv-ota-cloud serves plain http on loopback; a real device keeps https.
require_https=false
EOF
  start iv-otad "$IV_OTAD" --config "$tmp/iv-otad.conf" --bus session
  gdbus wait --session --timeout 20 org.iv.Ota || fail "iv-otad did not appear on the bus"
  wait_line "$tmp/iv-otad.log" 'cloud connected' "iv-otad to connect to the broker"
}

start_device_app() { # LOG_NAME
  mkdir -p "$tmp/device"
  "$DEVICE_APP" -d "$tmp/device" -v $OLD_VERSION >"$tmp/$1.log" 2>&1 &
  app_pid=$!
  pids+=("$app_pid")
}

# start_watch ARGS...: `iv-ota watch` on the terminal (or as indented plain lines).
start_watch() {
  if [ "$interactive" = 1 ]; then
    "$IV_OTA" watch "$@" &
  else
    "$IV_OTA" watch --plain "$@" > >(sed -u 's/^/    iv-ota watch  │ /') &
  fi
  watch_pid=$!
}

stop_watch() {
  kill -TERM "$watch_pid" 2>/dev/null
  wait "$watch_pid" 2>/dev/null
  watch_pid=
}

# wait_watch: waits for watch (started with --until) to end; its status in $watch_rc.
wait_watch() {
  while kill -0 "$watch_pid" 2>/dev/null; do
    check_deadline "waiting for iv-ota watch --until"
    sleep 0.1
  done
  wait "$watch_pid"
  watch_rc=$?
  watch_pid=
}

status_table() {
  "$IV_OTA" status 2>&1 | while IFS= read -r l; do show "iv-ota status" "$l"; done
}

# ---- the story ----

if [ "$interactive" = 1 ]; then
  printf '%siv-ota demo%s: one OTA agent per device, shared by every application on it.\n' "$B" "$N"
  printf 'cloud ──MQTT──▶ iv-otad ──D-Bus──▶ device app, iv-ota watch     (all on this machine)\n'
fi
say "a private D-Bus session bus for the demo: $DBUS_SESSION_BUS_ADDRESS"

start_broker
say "an MQTT broker (mosquitto) on 127.0.0.1:$broker_port, a free port"

start_cloud
say "iv-ota-cloud, a local stand-in for the cloud, has new firmware $NEW_VERSION (64 MiB, md5 $fw_md5)"
show iv-ota-cloud "$(grep -m1 '^http: serving' "$tmp/cloud.log")"
show iv-ota-cloud "it serves at $((RATE / 1024 / 1024)) MiB/s and cuts the first download after byte $CUT_AT (40 %)"

start_agent
say "iv-otad, the agent, takes org.iv.Ota on the bus and connects to the broker"
show iv-otad "$(agent_text "$(grep -m1 'connecting to the cloud' "$tmp/iv-otad.log")")"
show iv-otad "$(agent_text "$(grep -m1 'cloud connected' "$tmp/iv-otad.log")")"
status_table

say "the device app (examples/device-app.c, on the classic iv_ota.h) starts with firmware $OLD_VERSION"
start_device_app device-app
wait_line "$tmp/device-app.log" 'registered with the OTA agent' "the device app to register"
show device-app "$(grep -m1 'running' "$tmp/device-app.log")"
wait_line "$tmp/cloud-reports.log" '"report_version"' "the version report"
say "the agent reports the version to the cloud, which answers with an offer"
show "cloud got" "$(grep -m1 '"report_version"' "$tmp/cloud-reports.log" | sed -E 's/.*"payload"://; s/}$//')"
wait_line "$tmp/cloud.log" '^cloud: sent update_firmware' "the offer"
show "cloud sent" "$(grep -m1 '^cloud: offer:' "$tmp/cloud.log" | sed -E 's/^cloud: offer: //')"

say "iv-ota watch follows the download (any process may watch, through libiv-ota's observer API)"
start_watch
wait_line "$tmp/iv-otad.log" 'interrupted at byte' "the injected cut"
cut_line=$line
cut_bytes=$(sed -E 's/.*interrupted at byte ([0-9]+).*/\1/' <<<"$cut_line")
sleep 0.3 # let watch draw the stall before it stops
stop_watch
say "the cloud cut the connection at byte $cut_bytes of $FW_SIZE"
show iv-ota-cloud "$(last_line "$tmp/cloud.log" '^http: GET .*fault=cut')"
show iv-otad "$(agent_text "$cut_line")"
say "the agent keeps those $cut_bytes bytes and asks for the rest: Range: bytes=$cut_bytes-"
start_watch --until rebooting,fail
wait_watch
[ "$watch_rc" = 0 ] || fail "the update did not reach rebooting (iv-ota watch exited $watch_rc)"

wait_line "$tmp/cloud.log" "^http: GET .* range=$cut_bytes- status=206" "the resumed request"
say "resumed at byte $cut_bytes, not from 0: the second request asked only for the rest"
show iv-ota-cloud "$line"
show iv-otad "$(agent_text "$(grep -m1 'downloaded and verified' "$tmp/iv-otad.log")") (size and MD5 $fw_md5)"
say "the device app got the verified image, burned it, and reports the reboot"
grep -E 'ready:|burning [0-9.]+ into|burning: 100%|installed|rebooting' "$tmp/device-app.log" |
  while IFS= read -r l; do show device-app "$l"; done

# The app ends its OTA service and exits, as the device goes down.
for _ in $(seq 100); do kill -0 "$app_pid" 2>/dev/null || break; sleep 0.1; done
say "the device reboots: the device app starts again and runs $(cat "$tmp/device/installed.version" 2>/dev/null)"
start_watch --until done,fail
start_device_app device-app-after-reboot
wait_watch
[ "$watch_rc" = 0 ] || fail "the update did not reach done (iv-ota watch exited $watch_rc)"
show device-app "$(grep -m1 'running' "$tmp/device-app-after-reboot.log")"
wait_line "$tmp/cloud-reports.log" '"state":"done"' "the done report"
say "the agent told the cloud by itself: the new version runs, the update is done"
show iv-ota-cloud "$(grep -c 'state=downloading' "$tmp/cloud.log") downloading reports (QoS 0, one a second), then:"
show iv-ota-cloud "$(grep -m1 'state=burning' "$tmp/cloud.log")"
show iv-ota-cloud "$(last_line "$tmp/cloud.log" 'state=burning')"
show iv-ota-cloud "$(grep -m1 'state=done' "$tmp/cloud.log")"
show "cloud got" "$(sed -E 's/.*"payload"://; s/}$//' <<<"$line")"
status_table

sent=$(last_line "$tmp/cloud.log" 'total_sent=' | sed -E 's/.*total_sent=([0-9]+).*/\1/')
say "stopping everything"
completed=1
elapsed=$((SECONDS - started))
summary="firmware $OLD_VERSION → $NEW_VERSION in ${elapsed} s, 64 MiB over a cut connection, resumed at byte $cut_bytes"
[ "$sent" = "$FW_SIZE" ] && summary="$summary, no byte sent twice"
trap - EXIT
cleanup
printf '%sdone%s: %s\n' "$G$B" "$N" "$summary"
exit 0
