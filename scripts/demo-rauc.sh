#!/usr/bin/env bash
# The RAUC story of iv-ota (scripts/demo.sh --rauc): a device whose root file
# system is updated by RAUC, with no application at all.
#
#   scripts/demo.sh --rauc        (as root: it makes loop devices)
#
# On a private D-Bus session bus: two raw root file system slots A and B on
# loop devices, RAUC's service booted from A (a factory image, version 1.0.0),
# a signed bundle 2.0.0 made with `rauc bundle`, a mosquitto broker,
# iv-ota-cloud offering the .raucb, and iv-otad with an [install] group
# (method=rauc). The agent downloads the bundle, has RAUC install it into
# slot B and asks for a reboot; the demo "reboots" (RAUC's service and the
# agent restart, booted from B) and the agent reports done and marks B good.
# Everything is removed at the end (processes, mounts, loop devices).
#
# Environment: IV_OTA_DEMO_BUILDDIR (a build tree to use as it is),
# IV_OTA_DEMO_TIMEOUT (seconds, default 120), IV_OTA_DEMO_KEEP=1 (keep logs).
# The last line is "demo: done" when the story completed (exit status 0).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/demo-common.sh
source "$root/scripts/demo-common.sh"

if [ "$(id -u)" -ne 0 ]; then
  echo "demo --rauc: needs root (it puts RAUC's slots on loop devices); try: sudo $0 --rauc" >&2
  exit 1
fi

# ---- stage 1: dependencies, build, then this script on a private bus ----
if [ -z "${IV_OTA_DEMO_IN_SESSION:-}" ]; then
  demo_build
  for tool in rauc mksquashfs losetup openssl mosquitto; do
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] ||
      { echo "demo: $tool is missing (scripts/deps.sh installs it)" >&2; exit 1; }
  done
  demo_in_session "$@"
fi

# ---- stage 2: the story ----
demo_session_programs

deadline=$((SECONDS + ${IV_OTA_DEMO_TIMEOUT:-120}))
tmp=$(mktemp -d "${TMPDIR:-/tmp}/iv-ota-demo-rauc.XXXXXX") || exit 1
pids=()
loops=()
completed=0

cleanup() {
  local pid mnt dev
  trap '' INT TERM HUP PIPE
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  for mnt in $(awk -v d="$tmp/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r); do umount -l "$mnt"; done
  for dev in "${loops[@]}"; do losetup -d "$dev" 2>/dev/null; done
  if [ "$completed" = 0 ] || [ "${IV_OTA_DEMO_KEEP:-0}" = 1 ]; then
    echo "demo: logs kept in $tmp" >&2
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

say() { printf '\ndemo: %s\n' "$*"; }
show() { printf '    %-12s│ %s\n' "$1" "$2"; }
fail() {
  echo "demo: FAILED: $*" >&2
  for log in "$tmp"/*.log; do
    [ -f "$log" ] || continue
    printf -- '--- last lines of %s\n' "$log" >&2
    tail -n 8 "$log" >&2
  done
  exit 1
}
# until_true WHAT COMMAND...: polls COMMAND until it succeeds, within the deadline.
until_true() {
  local what=$1
  shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || fail "timed out waiting for $what"
    sleep 0.1
  done
}
port_is_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
name_owned() {
  gdbus call --session --dest org.freedesktop.DBus --object-path /org/freedesktop/DBus \
    --method org.freedesktop.DBus.NameHasOwner "$1" 2>/dev/null | grep -q true
}
agent_says() { grep -E "$1" "$tmp/iv-otad.log" | tail -n 1 | sed -E 's/^[^:]*-(Message|INFO|WARNING): [0-9:.]+: //'; }
cloud_got() { grep -q "$1" "$tmp/cloud.out" 2>/dev/null; }

# ---- the device: two slots, RAUC booted from A ----
say "the device: root file system slots A and B (loop devices), RAUC booted from A with the factory image 1.0.0"
for slot in A B; do
  truncate -s 16M "$tmp/slot$slot.img"
  dev=$(losetup -f --show "$tmp/slot$slot.img") || fail "losetup failed"
  loops+=("$dev")
  eval "dev_$slot=$dev"
  show "slot $slot" "$dev"
done
mkdir -p "$tmp/boot" "$tmp/mnt"
echo A >"$tmp/boot/primary"
# The bootloader, as RAUC's "custom" backend sees it: the primary slot and boot states in files.
cat >"$tmp/bootloader.sh" <<EOF
#!/bin/sh
echo "\$*" >>'$tmp/bootloader.log'
case "\$1" in
  get-primary) cat '$tmp/boot/primary' ;;
  set-primary) echo "\$2" >'$tmp/boot/primary' ;;
  get-state) cat "$tmp/boot/state.\$2" 2>/dev/null || echo good ;;
  set-state) echo "\$3" >"$tmp/boot/state.\$2" ;;
  *) exit 1 ;;
esac
EOF
chmod 755 "$tmp/bootloader.sh"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/maker.key" -out "$tmp/maker.pem" -days 30 \
  -subj "/CN=demo device maker" >"$tmp/openssl.log" 2>&1 || fail "openssl"
cat >"$tmp/system.conf" <<EOF
[system]
compatible=iv-ota-demo-camera
bootloader=custom
statusfile=$tmp/status.raucs
mountprefix=$tmp/mnt
[keyring]
path=$tmp/maker.pem
[handlers]
bootloader-custom-backend=$tmp/bootloader.sh
[slot.rootfs.0]
device=$dev_A
type=raw
bootname=A
[slot.rootfs.1]
device=$dev_B
type=raw
bootname=B
EOF
start_rauc() {
  DBUS_STARTER_BUS_TYPE=session rauc service --conf="$tmp/system.conf" --override-boot-slot="$1" \
    >>"$tmp/rauc.log" 2>&1 &
  rauc_pid=$!
  pids+=("$rauc_pid")
  until_true "RAUC's service" name_owned de.pengutronix.rauc
}
start_rauc A
echo 1.0.0 >"$tmp/factory-version"

# ---- the maker's bundle ----
say "the device maker builds and signs the bundle 2.0.0 (rauc bundle): this .raucb is what goes to the console"
mkdir -p "$tmp/bundle"
head -c $((8 * 1024 * 1024)) /dev/urandom >"$tmp/bundle/rootfs.img"
printf '[update]\ncompatible=iv-ota-demo-camera\nversion=2.0.0\n[bundle]\nformat=plain\n[image.rootfs]\nfilename=rootfs.img\n' \
  >"$tmp/bundle/manifest.raucm"
rauc bundle --cert="$tmp/maker.pem" --key="$tmp/maker.key" "$tmp/bundle" "$tmp/camera-2.0.0.raucb" \
  >"$tmp/rauc-bundle.log" 2>&1 || fail "rauc bundle"
show "bundle" "$tmp/camera-2.0.0.raucb ($(stat -c %s "$tmp/camera-2.0.0.raucb") bytes)"

# ---- the cloud ----
for _ in 1 2 3 4 5 6 7 8 9 10; do
  port=$((20000 + RANDOM % 40000))
  port_is_open "$port" && continue
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\n' "$port" >"$tmp/mosquitto.conf"
  "$(command -v mosquitto || echo /usr/sbin/mosquitto)" -c "$tmp/mosquitto.conf" >"$tmp/mosquitto.log" 2>&1 &
  pids+=($!)
  broker_port=$port
  for _ in $(seq 30); do port_is_open "$port" && break 2; sleep 0.1; done
done
port_is_open "${broker_port:-0}" || fail "cannot start mosquitto"
say "the cloud (iv-ota-cloud on a local broker) offers 2.0.0 to any device that reports another version"
"$IV_OTA_CLOUD" --product=DEMO --device=camera1 --port="$broker_port" --version=2.0.0 \
  --firmware="$tmp/camera-2.0.0.raucb" --rate=$((4 * 1024 * 1024)) --ready-file="$tmp/cloud.ready" \
  >"$tmp/cloud.out" 2>"$tmp/cloud.log" &
pids+=($!)
until_true "iv-ota-cloud" test -s "$tmp/cloud.ready"

# ---- the agent: no application, an [install] group ----
cat >"$tmp/reboot.sh" <<EOF
#!/bin/sh
touch '$tmp/reboot-requested'
EOF
chmod 755 "$tmp/reboot.sh"
cat >"$tmp/iv-otad.conf" <<EOF
[mqtt]
port=$broker_port
[device]
product_id=DEMO
device_name=camera1
[ota]
state_dir=$tmp/state
require_https=false
[install]
method=rauc
rauc_bus=session
reboot_command=$tmp/reboot.sh
version_command=cat $tmp/factory-version
EOF
say "iv-otad starts with [install] method=rauc: it owns the main firmware, no application involved"
show "config" "[install] method=rauc  reboot_command=$tmp/reboot.sh"
start_agent() {
  "$IV_OTAD" --config "$tmp/iv-otad.conf" --bus session >>"$tmp/iv-otad.log" 2>&1 &
  agent_pid=$!
  pids+=("$agent_pid")
  until_true "the agent" name_owned org.iv.Ota
}
export IV_OTAD_TEST_BOOT_ID=demo-boot-1
start_agent
"$IV_OTA" watch --plain >"$tmp/watch.log" 2>&1 &
pids+=($!)

until_true "the offer" cloud_got '"state":"downloading"'
show "iv-otad" "$(agent_says 'offered 2.0.0')"
until_true "RAUC's installation" cloud_got '"state":"burning"'
say "downloaded and MD5-checked; RAUC installs the bundle into the inactive slot B"
until_true "the reboot request" test -e "$tmp/reboot-requested"
show "iv-otad" "$(agent_says 'installed')"
show "RAUC" "$(grep -m1 -E 'Updating .* with' "$tmp/rauc.log" | sed -E 's/^[^:]*: [0-9:.]+: //')"
show "bootloader" "primary slot is now $(cat "$tmp/boot/primary")"
show "cloud" "$(grep -o '"state":"burning"[^}]*' "$tmp/cloud.out" | tail -n 1)"
cmp -s -n 8388608 "$dev_B" "$tmp/bundle/rootfs.img" || fail "slot B does not hold the bundle's image"

say "the agent reports rebooting and runs reboot_command: the device reboots (RAUC and the agent restart, booted from $(cat "$tmp/boot/primary"))"
kill "$agent_pid"; wait "$agent_pid" 2>/dev/null
kill "$rauc_pid"; wait "$rauc_pid" 2>/dev/null
export IV_OTAD_TEST_BOOT_ID=demo-boot-2
start_rauc "$(cat "$tmp/boot/primary")"
start_agent
until_true "done" cloud_got '"state":"done"'
show "iv-otad" "$(agent_says 'marked good')"
show "iv-otad" "$(agent_says 'report done')"
show "cloud" "$(grep -o '"report_version","report":{[^}]*}' "$tmp/cloud.out" | tail -n 1)"
say "iv-ota watch saw the module as any other:"
grep -E "rebooting|done" "$tmp/watch.log" | tail -n 3 | sed 's/^/    /'
say "iv-ota status"
"$IV_OTA" status | sed 's/^/    /'
completed=1
echo
echo "demo: done"
