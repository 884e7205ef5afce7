#!/usr/bin/env bash
# The RAUC installer with the real RAUC ([install] method=rauc, TAP output).
# The test makes a CA and signed "plain" bundles (rauc bundle), two raw slots
# on loop devices, and a system.conf whose "custom" bootloader backend is a
# script of the test's: a "reboot" restarts RAUC's service booted from the slot
# the backend made primary (or, for a failed boot, from the old one) and
# restarts the agent. RAUC's service runs on the test's private session bus.
#  - RAUC absent: a clear error in GetStatus, another module still served;
#    once RAUC runs, the module registers with the factory version;
#  - offer -> download -> InstallBundle -> the bundle's image is in the
#    inactive slot -> reboot_command ran -> RAUC booted from the other slot
#    and the restarted agent report done, and the slot is marked good;
#  - a bundle signed by a stranger's key, and one for another compatible:
#    fail -5 with RAUC's LastError, image removed, no reboot;
#  - a "reboot" that comes back on the old slot: fail -5 naming both versions;
#  - the agent killed during InstallBundle: RAUC completes it, the restarted
#    agent reboots, and exactly one terminal report (done) follows; also when
#    the device rebooted before the agent came back (the slot is marked good).
# Loop devices and mounts are tracked and removed in the EXIT trap, also when
# a case fails. Needs root, rauc, squashfs-tools, losetup and openssl;
# otherwise every case is skipped with the reason (and not counted as passed).
#
# Env: IV_OTAD, IV_OTA_CLOUD.
set -uo pipefail

here=$(dirname "${BASH_SOURCE[0]}")
source "$here/tap.sh"
source "$here/installers-common.sh"
WAIT_SECONDS=40

cases=("rauc absent" "install and reboot into the new slot" "stranger's signature refused"
  "other compatible refused" "reboot back on the old slot" "agent killed during InstallBundle" "killed, then rebooted")
skip_all() {
  for what in "${cases[@]}"; do skip "$what" "$1"; done
  echo "1..$n"
  exit 0
}
[ "$(id -u)" -eq 0 ] || skip_all "needs root for loop devices"
for tool in rauc mksquashfs losetup openssl; do
  command -v "$tool" >/dev/null || skip_all "needs $tool (scripts/deps.sh installs rauc, squashfs-tools, openssl)"
done
: "${IV_OTAD:?}" "${IV_OTA_CLOUD:?}"

tmp=$(mktemp -d /tmp/iv-ota-rauc-XXXXXX)
loops=()
cleanup() {
  local dev mnt
  cleanup_processes
  # A RAUC service killed mid-install may leave its bundle mounted.
  for mnt in $(awk -v d="$tmp/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r); do
    umount -l "$mnt" 2>/dev/null
  done
  for dev in "${loops[@]}"; do losetup -d "$dev" 2>/dev/null; done
  if [ "$failures" -eq 0 ] && [ -z "${OTA_TEST_KEEP:-}" ]; then rm -rf "$tmp"; else echo "# files kept in $tmp"; fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# ---- keys and bundles ----
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/ca.key" -out "$tmp/ca.pem" -days 30 -subj "/CN=iv-ota test CA" \
  -addext basicConstraints=critical,CA:TRUE >"$tmp/openssl.log" 2>&1 || bail "openssl: cannot make the CA"
openssl req -newkey rsa:2048 -nodes -keyout "$tmp/signer.key" -out "$tmp/signer.csr" -subj "/CN=iv-ota test signer" \
  >>"$tmp/openssl.log" 2>&1 &&
  openssl x509 -req -in "$tmp/signer.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial -days 30 \
    -out "$tmp/signer.pem" >>"$tmp/openssl.log" 2>&1 || bail "openssl: cannot make the signer"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/stranger.key" -out "$tmp/stranger.pem" -days 30 \
  -subj "/CN=stranger" >>"$tmp/openssl.log" 2>&1 || bail "openssl: cannot make the stranger's key"

# make_bundle NAME VERSION COMPATIBLE SIGNER: $tmp/NAME.raucb holding $tmp/NAME.img.
make_bundle() {
  local dir=$tmp/bundle-$1
  mkdir -p "$dir"
  head -c $((300 * 1024)) /dev/urandom >"$tmp/$1.img"
  cp "$tmp/$1.img" "$dir/rootfs.img"
  printf '[update]\ncompatible=%s\nversion=%s\n[bundle]\nformat=plain\n[image.rootfs]\nfilename=rootfs.img\n' \
    "$3" "$2" >"$dir/manifest.raucm"
  rauc bundle --cert="$tmp/$4.pem" --key="$tmp/$4.key" "$dir" "$tmp/$1.raucb" >>"$tmp/rauc-bundle.log" 2>&1 ||
    bail "rauc bundle $1 failed"
}
make_bundle good 2.0.0 iv-ota-test signer
make_bundle stranger 3.0.0 iv-ota-test stranger
make_bundle other 3.1.0 another-product signer
make_bundle fallback 3.2.0 iv-ota-test signer
make_bundle killed 3.3.0 iv-ota-test signer
make_bundle killed2 3.4.0 iv-ota-test signer

# ---- two raw slots on loop devices ----
for slot in A B; do
  truncate -s 1M "$tmp/slot$slot.img"
  dev=$(losetup -f --show "$tmp/slot$slot.img") || bail "losetup failed"
  loops+=("$dev")
  eval "dev_$slot=$dev"
done

# ---- the bootloader backend: primary slot and boot states in $tmp/boot ----
mkdir -p "$tmp/boot" "$tmp/mnt"
echo A >"$tmp/boot/primary"
cat >"$tmp/backend.sh" <<EOF
#!/bin/sh
echo "\$*" >>'$tmp/boot/backend.log'
case "\$1" in
  get-primary) cat '$tmp/boot/primary' ;;
  set-primary) echo "\$2" >'$tmp/boot/primary' ;;
  get-state) cat "$tmp/boot/state.\$2" 2>/dev/null || echo good ;;
  set-state) echo "\$3" >"$tmp/boot/state.\$2" ;;
  *) exit 1 ;;
esac
EOF
# Holds an installation while $tmp/hold exists (the kill case).
printf '#!/bin/sh\nwhile [ -e %s/hold ]; do sleep 0.1; done\n' "$tmp" >"$tmp/pre-install.sh"
chmod 755 "$tmp/backend.sh" "$tmp/pre-install.sh"
cat >"$tmp/system.conf" <<EOF
[system]
compatible=iv-ota-test
bootloader=custom
statusfile=$tmp/status.raucs
mountprefix=$tmp/mnt
[keyring]
path=$tmp/ca.pem
[handlers]
bootloader-custom-backend=$tmp/backend.sh
pre-install=$tmp/pre-install.sh
[slot.rootfs.0]
device=$dev_A
type=raw
bootname=A
[slot.rootfs.1]
device=$dev_B
type=raw
bootname=B
EOF

rauc_on_bus() {
  gdbus call --session --dest org.freedesktop.DBus --object-path /org/freedesktop/DBus \
    --method org.freedesktop.DBus.NameHasOwner de.pengutronix.rauc 2>/dev/null | grep -q true
}
start_rauc() { # start_rauc BOOTNAME: RAUC's service, booted from that slot
  DBUS_STARTER_BUS_TYPE=session rauc service --conf="$tmp/system.conf" --override-boot-slot="$1" \
    >>"$tmp/rauc.log" 2>&1 &
  rauc_pid=$!
  pids+=("$rauc_pid")
  wait_for rauc_on_bus || bail "RAUC's service did not start"
}
stop_rauc() { stop_pid "$rauc_pid"; }

# A "reboot": the agent and RAUC stop, RAUC comes back booted from BOOTNAME,
# the agent starts in a new boot.
boot=1
reboot_into() {
  stop_agent
  stop_rauc
  boot=$((boot + 1))
  export IV_OTAD_TEST_BOOT_ID="00000000-0000-4000-8000-00000000000$boot"
  start_rauc "$1"
  start_agent "$agent_dir"
}

# slot_holds DEV IMAGE: the slot's first bytes are the image.
slot_holds() { cmp -s -n "$(stat -c %s "$2")" "$1" "$2"; }
check_now() {
  gdbus call --session --dest org.iv.Ota --object-path /org/iv/Ota --method org.iv.Ota.CheckNow "" >/dev/null
}
# offer NAME VERSION: a new cloud offers $tmp/NAME.raucb as VERSION, once.
offer() {
  [ -n "${cloud_pid:-}" ] && stop_pid "$cloud_pid"
  cloud_dir=$tmp/cloud-$1
  mkdir -p "$cloud_dir"
  start_cloud "$cloud_dir" "" "$2" "$tmp/$1.raucb" --offer-once
  check_now
}

start_bus_and_broker
export IV_OTAD_TEST_BOOT_ID="00000000-0000-4000-8000-000000000001"
echo 1.0.0 >"$tmp/factory-version"
cat >"$tmp/reboot.sh" <<EOF
#!/bin/sh
echo "reboot \$*" >>'$tmp/reboots.log'
EOF
chmod 755 "$tmp/reboot.sh"
agent_dir=$tmp/agent
mkdir -p "$agent_dir"
write_agent_config "$agent_dir" "[install]
method=rauc
rauc_bus=session
reboot_command=$tmp/reboot.sh now
version_command=cat $tmp/factory-version"
images=$agent_dir/state/images
reboots() { if [ -e "$tmp/reboots.log" ]; then wc -l <"$tmp/reboots.log"; else echo 0; fi; }
rebooted_times() { [ "$(reboots)" -ge "$1" ]; }
rauc_installing() {
  gdbus call --session --dest de.pengutronix.rauc --object-path / --method org.freedesktop.DBus.Properties.Get \
    de.pengutronix.rauc.Installer Operation 2>&1 | grep -q installing
}

# ---- RAUC absent ----
start_agent "$agent_dir"
wait_for status_is "" result_code -5
msg=$(status "" result_msg)
check "rauc absent: GetStatus says RAUC is not there ($msg)" \
  grep -q "RAUC (de.pengutronix.rauc on the session bus) does not answer GetSlotStatus" <<<"$msg"
app_init=$(gdbus call --session --dest org.iv.Ota --object-path /org/iv/Ota --method org.iv.Ota.Init mcu 1.0.0 \
  "$tmp" '{}' 2>&1)
check "rauc absent: another module is still served ($app_init)" test "$app_init" = "()"
app_init=$(gdbus call --session --dest org.iv.Ota --object-path /org/iv/Ota --method org.iv.Ota.Init "" 1.0.0 \
  "$tmp" '{}' 2>&1)
check "rauc absent: the main module stays the agent's (Busy)" grep -q "org.iv.Ota.Error.Busy" <<<"$app_init"
start_rauc A
check "rauc absent: once RAUC runs, the module registers with the factory version" \
  wait_for status_is "" version "'1.0.0'"
check "rauc absent: the error is cleared" status_is "" result_code 0

# ---- install, reboot into the new slot, done and marked good ----
offer good 2.0.0
wait_for rebooted_times 1 || bail "reboot_command did not run after the install"
check "install: the bundle's image is in the inactive slot B" slot_holds "$dev_B" "$tmp/good.img"
check "install: slot A is untouched" sh -c "! cmp -s -n 307200 '$dev_A' '$tmp/good.img'"
check "install: reboot_command ran with its arguments ($(cat "$tmp/reboots.log"))" \
  test "$(cat "$tmp/reboots.log")" = "reboot now"
check "install: burning reported with RAUC's percent" has_report "$cloud_dir" '"state":"burning","percent":"100"'
check "install: the rebooting marker is persisted" test -e "$agent_dir/state/rebooting.json"
check "install: GetStatus shows rebooting" status_is "" state "'rebooting'"
check "install: no terminal report before the reboot" test "$(reports "$cloud_dir" done)$(reports "$cloud_dir" fail)" = 00
check "install: the image is removed ($(ls "$images"))" test -z "$(ls "$images")"
check "install: RAUC made slot B primary" test "$(cat "$tmp/boot/primary")" = B
reboot_into "$(cat "$tmp/boot/primary")"
wait_for has_report "$cloud_dir" '"state":"done"' || bail "no done after the reboot into B"
check "install: exactly one done after the reboot" test "$(reports "$cloud_dir" done)$(reports "$cloud_dir" fail)" = 10
check "install: the booted slot B is marked good" grep -qx "set-state B good" "$tmp/boot/backend.log"
check "install: the version is now the bundle's" wait_for status_is "" version "'2.0.0'"
wait_for has_report "$cloud_dir" '"type":"report_version","report":{"version":"2.0.0"}'
check "install: the new version is reported" has_report "$cloud_dir" '"type":"report_version","report":{"version":"2.0.0"}'

# ---- bundles RAUC refuses ----
refused_case() { # refused_case NAME VERSION WHAT REGEX
  offer "$1" "$2"
  wait_for has_report "$cloud_dir" '"state":"fail"' || bail "no fail report for the $3 bundle"
  local line
  line=$(grep '"state":"fail"' "$cloud_dir/cloud.out")
  check "$3: fail -5 with RAUC's LastError ($line)" grep -qE "\"result_code\":\"-5\",\"result_msg\":\"RAUC: $4" <<<"$line"
  check "$3: the image is removed" test -z "$(ls "$images")"
  check "$3: no reboot, no marker" test "$(reboots)" = 1 -a ! -e "$agent_dir/state/rebooting.json"
  check "$3: the inactive slot A keeps its content" sh -c "! cmp -s -n 1024 '$dev_A' '$tmp/$1.img'"
  check "$3: exactly one terminal report" test "$(reports "$cloud_dir" done)$(reports "$cloud_dir" fail)" = 01
}
refused_case stranger 3.0.0 "stranger's signature refused" ".*signature"
refused_case other 3.1.0 "other compatible refused" ".*[Cc]ompatible"

# ---- a reboot that comes back on the old slot ----
offer fallback 3.2.0
wait_for rebooted_times 2 || bail "reboot_command did not run after installing 3.2.0"
check "reboot back on the old slot: the image went to slot A" slot_holds "$dev_A" "$tmp/fallback.img"
reboot_into B
wait_for has_report "$cloud_dir" '"state":"fail"' || bail "no fail after coming back on the old slot"
check "reboot back on the old slot: fail -5 naming both versions" \
  has_report "$cloud_dir" '"result_code":"-5","result_msg":"version after reboot is 2.0.0, expected 3.2.0"'
check "reboot back on the old slot: exactly one terminal report" \
  test "$(reports "$cloud_dir" done)$(reports "$cloud_dir" fail)" = 01
check "reboot back on the old slot: the old slot is not marked good again" \
  test "$(grep -c "set-state B good" "$tmp/boot/backend.log")" = 1

# ---- the agent killed during InstallBundle ----
touch "$tmp/hold"
offer killed 3.3.0
wait_for rauc_installing || bail "RAUC is not installing 3.3.0"
wait_for has_report "$cloud_dir" '"state":"burning"' || bail "no burning report for 3.3.0"
check "agent killed during InstallBundle: RAUC's percent while it works" \
  wait_for grep -qE '"state":"burning","percent":"([1-9]|[1-9][0-9])"' "$cloud_dir/cloud.out"
kill_agent
rm -f "$tmp/hold"
start_agent "$agent_dir"
wait_for rebooted_times 3 || bail "no reboot after the interrupted installation completed"
check "agent killed during InstallBundle: RAUC finished the install into slot A" slot_holds "$dev_A" "$tmp/killed.img"
reboot_into "$(cat "$tmp/boot/primary")"
wait_for has_report "$cloud_dir" '"state":"done"' || bail "no done for 3.3.0 after the reboot"
check "agent killed during InstallBundle: exactly one terminal report, done" \
  test "$(reports "$cloud_dir" done)$(reports "$cloud_dir" fail)" = 10
check "agent killed during InstallBundle: slot A is marked good" grep -qx "set-state A good" "$tmp/boot/backend.log"


# ---- the agent killed during InstallBundle, and the device rebooted before it came back ----
rauc_idle() { ! rauc_installing; }
touch "$tmp/hold"
offer killed2 3.4.0
wait_for rauc_installing || bail "RAUC is not installing 3.4.0"
wait_for has_report "$cloud_dir" '"state":"burning"' || bail "no burning report for 3.4.0"
kill_agent
rm -f "$tmp/hold"
wait_for rauc_idle || bail "RAUC did not finish installing 3.4.0"
check "killed, then rebooted: RAUC installed 3.4.0 into slot B" slot_holds "$dev_B" "$tmp/killed2.img"
reboot_into "$(cat "$tmp/boot/primary")"
wait_for has_report "$cloud_dir" '"state":"done"' || bail "no done for 3.4.0 after the reboot"
check "killed, then rebooted: exactly one terminal report, done" \
  test "$(reports "$cloud_dir" done)$(reports "$cloud_dir" fail)" = 10
check "killed, then rebooted: slot B is marked good" test "$(grep -c "set-state B good" "$tmp/boot/backend.log")" = 2

stop_agent
check "no sanitizer report in the agent's log" sh -c "! grep -q Sanitizer '$agent_dir/iv-otad.log'"
echo "1..$n"
exit $((failures > 0))
