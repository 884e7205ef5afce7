#!/usr/bin/env bash
# Directory ownership end to end (docs/dbus.md, TAP output): the agent runs as
# root, apps run as user nobody (setpriv), all on a private dbus-daemon that
# lets every user in. It checks that an app of another uid
#  - cannot make the agent use a directory it does not own, nor a symlink in
#    place of its directory, nor a version or module name that would leave it;
#  - gets its firmware owned by it once verified, and the resume record while
#    downloading, but cannot write into the image while the agent writes it;
#  - cannot have the agent overwrite or chown someone else's file through hard
#    links or symlinks planted under the agent's file names;
#  - cannot redirect a running download by swapping its directory for a
#    symlink to another one: the agent keeps writing where Init pointed.
# Needs root (to run the agent as root and the apps as nobody); otherwise every
# case is skipped with the reason.
#
# Env: IV_OTAD, IV_OTA_CLOUD, OTA_TEST_CLIENT (tests/ota-test-client.c).
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/tap.sh"
WAIT_SECONDS=30

cases=("foreign directory refused" "symlinked directory refused" "escaping version refused"
  "escaping module refused" "firmware owned by the app" "record owned by the app"
  "partial image not writable by the app"
  "planted hard links left alone" "planted symlink left alone" "directory swap does not redirect")
if [ "$(id -u)" -ne 0 ] || ! command -v setpriv >/dev/null; then
  for what in "${cases[@]}"; do skip "$what" "needs root and setpriv to run apps as another user"; done
  echo "1..$n"
  exit 0
fi

: "${IV_OTAD:?}" "${IV_OTA_CLOUD:?}" "${OTA_TEST_CLIENT:?}"
tmp=$(mktemp -d /tmp/iv-ota-dirs-XXXXXX)
chmod 755 "$tmp" # apps run as nobody reach the bus socket and their directories through it
pids=()

cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  if [ "$failures" -eq 0 ] && [ -z "${OTA_TEST_KEEP:-}" ]; then rm -rf "$tmp"; else echo "# files kept in $tmp"; fi
}
trap cleanup EXIT

bail() {
  echo "Bail out! $*"
  for log in "$tmp"/*.log; do echo "# --- $log"; tail -n 20 "$log" | sed 's/^/# /'; done
  exit 1
}
port_is_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

nobody_uid=$(id -u nobody)
nobody_gid=$(getent group nogroup | cut -d: -f3)
nobody_gid=${nobody_gid:-$(id -g nobody)}
as_app() { setpriv --reuid="$nobody_uid" --regid="$nobody_gid" --clear-groups -- "$@"; }
owner_of() { stat -c %u:%g "$1"; }
# The apps' directories live in a home of their own, where they may rename and link.
home=$tmp/home
mkdir "$home" && chown "$nobody_uid:$nobody_gid" "$home"

# ---- the bus: every user may connect, own names and call (the policy is not under test here) ----
start_private_bus "$tmp" '  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>'
bus_ok=$?
pids+=("$bus_pid")
[ "$bus_ok" -eq 0 ] || bail "dbus-daemon did not start"

# ---- the broker ----
broker_port=
for _ in 1 2 3 4 5 6 7 8 9 10; do
  port=$((20000 + RANDOM % 40000))
  port_is_open "$port" && continue
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\n' "$port" >"$tmp/mosquitto.conf"
  "$(command -v mosquitto || echo /usr/sbin/mosquitto)" -c "$tmp/mosquitto.conf" >"$tmp/mosquitto.log" 2>&1 &
  pid=$!
  if wait_for port_is_open "$port"; then pids+=("$pid"); broker_port=$port; break; fi
  kill "$pid" 2>/dev/null
done
[ -n "$broker_port" ] || bail "cannot start mosquitto"

# ---- two clouds: the main firmware and module "mcu", each 4 MiB served at 2 MiB/s ----
# (slow enough to look at the files while they download)
start_cloud() { # start_cloud NAME MODULE
  head -c $((4 * 1024 * 1024)) /dev/urandom >"$tmp/$1.img"
  "${ours[@]}" "$IV_OTA_CLOUD" --product=PROD --device=dev1 --port="$broker_port" --version=2.0.0 --module="$2" \
    --firmware="$tmp/$1.img" --rate=$((2 * 1024 * 1024)) --ready-file="$tmp/$1.ready" \
    >"$tmp/$1-reports.log" 2>"$tmp/$1.log" &
  pids+=($!)
  wait_for test -s "$tmp/$1.ready" || bail "iv-ota-cloud $1 did not start"
}
start_cloud cloud-main ""
start_cloud cloud-mcu mcu

# ---- the agent, as root ----
mkdir -p "$tmp/state"
cat >"$tmp/iv-otad.conf" <<EOF
[mqtt]
port=$broker_port
[device]
product_id=PROD
device_name=dev1
[ota]
state_dir=$tmp/state
require_https=false
retry_interval=1
EOF
"${ours[@]}" "$IV_OTAD" --config "$tmp/iv-otad.conf" --bus session >"$tmp/iv-otad.log" 2>&1 &
agent_pid=$!
pids+=("$agent_pid")
wait_for grep -q "cloud connected" "$tmp/iv-otad.log" || bail "the agent did not connect"

# init_as_app NAME MODULE VERSION DIR: runs ota-test-client as nobody; its lines in NAME.log.
init_as_app() {
  as_app "${ours[@]}" "$OTA_TEST_CLIENT" "$2" "$3" "$4" >"$tmp/$1.log" 2>&1 &
  pids+=($!)
  wait_for grep -qE "^(owner|error) " "$tmp/$1.log"
}
refused() { # refused NAME REGEX: the app's Init failed with an error matching REGEX
  grep -qE "^error .*$2" "$tmp/$1.log"
}

# ---- what Init accepts ----
mkdir -m 1777 "$tmp/shared" # writable by all, but root's: not the app's to hand over
init_as_app foreign "" 1.0.0 "$tmp/shared"
check "foreign directory refused: a world-writable directory of root ($(cat "$tmp/foreign.log"))" \
  refused foreign "not owned by the caller"

mkdir "$tmp/rootdir"
as_app ln -s "$tmp/rootdir" "$home/link"
init_as_app symlinked "" 1.0.0 "$home/link"
check "symlinked directory refused: the app's own symlink to root's directory ($(cat "$tmp/symlinked.log"))" \
  refused symlinked "firmware_dir"

as_app mkdir "$home/app"
init_as_app module "../../etc" 1.0.0 "$home/app"
check "escaping module refused ($(cat "$tmp/module.log"))" refused module "module"
if grep -q "Sanitizer\|CRITICAL" "$tmp/iv-otad.log"; then bail "the agent logged: $(grep -m1 'Sanitizer\|CRITICAL' "$tmp/iv-otad.log")"; fi

# A cloud offer whose version would leave the app's directory, for a module
# the app owns: rejected before any file is named after it.
as_app mkdir "$home/esc"
init_as_app esc esc 1.0.0 "$home/esc"
grep -q "^owner " "$tmp/esc.log" || bail "the app could not own module esc: $(cat "$tmp/esc.log")"
mosquitto_pub -h 127.0.0.1 -p "$broker_port" -q 1 -t '$ota/update/PROD/dev1' -m \
  '{"type":"update_firmware","fw_type":"esc","version":"../../rootdir/pwn","url":"http://127.0.0.1:9/x.bin","md5sum":"0123456789abcdef0123456789abcdef","file_size":1}'
if wait_for grep -q "cloud message rejected.*version" "$tmp/iv-otad.log"; then
  created=$(find "$tmp/rootdir" "$home/esc" -mindepth 1 | tr '\n' ' ')
  check "escaping version refused: no file created, no offer to the app (${created:-nothing created})" \
    test -z "$created" -a "$(grep -c offered "$tmp/esc.log")" = 0
else
  not_ok "escaping version refused: no \"cloud message rejected\" line for it"
fi

# ---- traps under the agent's file names in the app's directory ----
# Root's files that a careless agent would overwrite (and chown to the app).
# Root creates the links itself, as the app could where fs.protected_hardlinks is 0.
# A record of the app's, matching the offer, makes the agent try to continue
# the image under that name: a hard link to root's file.
for v in victim-bin victim-tmp victim-json; do echo "root's $v" >"$tmp/rootdir/$v"; done
ln "$tmp/rootdir/victim-bin" "$home/app/FW_2.0.0.bin"
ln "$tmp/rootdir/victim-tmp" "$home/app/FW_2.0.0.json.tmp"
main_md5=$(md5sum "$tmp/cloud-main.img" | cut -d' ' -f1)
planted='{"module":"","version":"2.0.0","md5sum":"'$main_md5'","file_size":4194304,"downloaded_size":1048576}'
as_app sh -c "printf '%s' '$planted' >'$home/app/FW_2.0.0.json'"
as_app ln -s "$tmp/rootdir/victim-json" "$home/mcu-record-link" # for module mcu, below

init_as_app main "" 1.0.0 "$home/app"
grep -q "^owner " "$tmp/main.log" || bail "the app could not own the main module: $(cat "$tmp/main.log")"
record_owner=
# The record as the agent rewrote it (the planted one says 1048576).
if wait_for sh -c "test -f '$home/app/FW_2.0.0.json' && ! grep -q '\"downloaded_size\":1048576' '$home/app/FW_2.0.0.json'"; then
  record_owner=$(owner_of "$home/app/FW_2.0.0.json")
  # While the agent writes it, the image is root's, mode 0600: the app cannot append to it.
  image_owner=$(stat -c '%u:%g %a' "$home/app/FW_2.0.0.bin" 2>/dev/null)
  if as_app sh -c "printf tail >>'$home/app/FW_2.0.0.bin'" 2>/dev/null; then app_append=done; else app_append=refused; fi
fi
wait_for grep -q "^firmware-ready " "$tmp/main.log" || bail "no FirmwareReady for the main module"
# "firmware-ready MODULE VERSION PATH SIZE MD5", MODULE empty for the main firmware
path=$(grep -m1 "^firmware-ready " "$tmp/main.log" | awk '{ print $(NF - 2) }')
check "firmware owned by the app: $path is $(owner_of "$path"), app is $nobody_uid:$nobody_gid" \
  test "$path" = "$home/app/FW_2.0.0.bin" -a "$(owner_of "$path")" = "$nobody_uid:$nobody_gid"
check "firmware owned by the app: content is the cloud's image" cmp -s "$path" "$tmp/cloud-main.img"
check "record owned by the app while downloading (${record_owner:-never seen})" \
  test "$record_owner" = "$nobody_uid:$nobody_gid"
check "partial image not writable by the app: ${image_owner:-never seen}, the app's append ${app_append:-not tried}" \
  test "$image_owner" = "0:0 600" -a "$app_append" = refused
untouched=1
for v in victim-bin victim-tmp victim-json; do
  [ "$(cat "$tmp/rootdir/$v")" = "root's $v" ] && [ "$(owner_of "$tmp/rootdir/$v")" = 0:0 ] || untouched=0
done
check "planted hard links left alone: root's files keep their content and owner" test "$untouched" = 1
check "planted hard links left alone: the agent says why it replaced the name" \
  grep -q "existing FW_2.0.0.bin has 2 links and uid 0: replaced" "$tmp/iv-otad.log"

# ---- the directory swapped for a symlink while its download runs ----
# Also: a symlink to root's file planted as the record's name.
as_app mkdir "$home/mcu"
as_app mv "$home/mcu-record-link" "$home/mcu/FW_mcu_2.0.0.json"
init_as_app mcu mcu 1.0.0 "$home/mcu"
grep -q "^owner " "$tmp/mcu.log" || bail "the app could not own module mcu: $(cat "$tmp/mcu.log")"
wait_for test -f "$home/mcu/FW_mcu_2.0.0.json" -a ! -L "$home/mcu/FW_mcu_2.0.0.json" ||
  bail "the mcu download did not start"
check "planted symlink left alone: the record replaced the link, not its target" \
  test "$(cat "$tmp/rootdir/victim-json")" = "root's victim-json" -a "$(owner_of "$tmp/rootdir/victim-json")" = 0:0
as_app mv "$home/mcu" "$home/mcu.moved"
as_app ln -s "$tmp/rootdir" "$home/mcu"
wait_for grep -q "^firmware-ready " "$tmp/mcu.log" || bail "no FirmwareReady for module mcu"
check "directory swap does not redirect: the image is complete where Init pointed" \
  cmp -s "$home/mcu.moved/FW_mcu_2.0.0.bin" "$tmp/cloud-mcu.img"
check "directory swap does not redirect: nothing was written into root's directory" \
  test "$(ls "$tmp/rootdir" | sort | tr '\n' ' ')" = "victim-bin victim-json victim-tmp "

check "the agent is still serving" kill -0 "$agent_pid"
kill -TERM "$agent_pid"
wait_for sh -c "! kill -0 $agent_pid 2>/dev/null"
check "the agent stops cleanly (no sanitizer report)" sh -c "! grep -q Sanitizer '$tmp/iv-otad.log'"

echo "1..$n"
exit $((failures > 0))
