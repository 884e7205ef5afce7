#!/usr/bin/env bash
# The command installer ([install.<module>] method=command, TAP output): the
# agent owns the module, downloads the image and runs an install script with
# {path} {version} {module}, with no application. Each case has its own agent,
# state and iv-ota-cloud on one private bus and broker:
#  - a script that prints "progress N": burning percents, done at once (no
#    reboot_command), the image installed and removed, the new version reported;
#  - a script that fails: fail -5 with its last stderr line, image removed;
#  - a script that hangs past its timeout: fail -5, its process group killed;
#  - a script followed by reboot_command: rebooting, and the start after the
#    "reboot" reports done exactly once;
#  - the agent killed while the script runs: the script dies with it, and
#    after the restart exactly one terminal report (fail) for the target;
#  - an app's Init of the module is refused (Busy), status shows the module;
#  - a version_command that fails: a clear error in GetStatus, other modules served.
#
# Env: IV_OTAD, IV_OTA_CLOUD, IV_OTA (the CLI).
set -uo pipefail

here=$(dirname "${BASH_SOURCE[0]}")
source "$here/tap.sh"
source "$here/installers-common.sh"
WAIT_SECONDS=30

: "${IV_OTAD:?}" "${IV_OTA_CLOUD:?}" "${IV_OTA:?}"
tmp=$(mktemp -d /tmp/iv-ota-install-command-XXXXXX)

cleanup() {
  cleanup_processes
  if [ "$failures" -eq 0 ] && [ -z "${OTA_TEST_KEEP:-}" ]; then rm -rf "$tmp"; else echo "# files kept in $tmp"; fi
}
trap cleanup EXIT

start_bus_and_broker

# new_case NAME: a directory with the image (2.0.0), a version file (1.0.0)
# and the install scripts.
new_case() {
  dir=$tmp/$1
  mkdir -p "$dir"
  head -c $((256 * 1024)) /dev/urandom >"$dir/image.bin"
  echo 1.0.0 >"$dir/version"
}

# The script an installer runs: ARGS path version module.
write_script() { # write_script FILE BODY
  printf '#!/bin/sh\n%s\n' "$2" >"$1"
  chmod 755 "$1"
}

install_group() { # install_group DIR EXTRA_LINES
  printf '[install.mcu]\nmethod=command\nversion_command=cat %s/version\ncommand=%s/install.sh {path} {version} {module}\n%s\n' \
    "$1" "$1" "$2"
}

# ---- a script that prints progress, no reboot_command ----
new_case progress
write_script "$dir/install.sh" "
echo \"\$1 \$2 \$3\" >'$dir/args'
echo progress 10; sleep 1.2
echo progress 50; sleep 1.2
echo 'writing the mcu'
cp \"\$1\" '$dir/installed.bin'
echo \"\$2\" >'$dir/version'
echo progress 100"
write_agent_config "$dir" "$(install_group "$dir" "")"
start_cloud "$dir" mcu 2.0.0 "$dir/image.bin"
start_agent "$dir"
wait_for has_report "$dir" '"state":"done"' || bail "no done report for the command install"
fw_dir=$dir/state/images
check "progress: the script got {path} {version} {module} ($(cat "$dir/args" 2>/dev/null))" \
  test "$(cat "$dir/args")" = "$fw_dir/FW_mcu_2.0.0.bin 2.0.0 mcu"
check "progress: the installed image is the cloud's" cmp -s "$dir/installed.bin" "$dir/image.bin"
check "progress: burning 50 reached the cloud" has_report "$dir" '"state":"burning","percent":"50"'
check "progress: burning 100 reached the cloud" has_report "$dir" '"state":"burning","percent":"100"'
check "progress: exactly one done, no fail ($(reports "$dir" done) done, $(reports "$dir" fail) fail)" \
  test "$(reports "$dir" done)" = 1 -a "$(reports "$dir" fail)" = 0
check "progress: no rebooting marker without reboot_command" test ! -e "$dir/state/rebooting_mcu.json"
wait_for has_report "$dir" '"report_version","report":{"version":"2.0.0","fw_type":"mcu"}'
check "progress: the new version is reported" has_report "$dir" '"report":{"version":"2.0.0","fw_type":"mcu"}'
check "progress: the image is removed after the install ($(ls "$fw_dir"))" test -z "$(ls "$fw_dir")"
check "progress: firmware_dir is root's, mode 700 ($(stat -c '%u %a' "$fw_dir"))" \
  test "$(stat -c '%u %a' "$fw_dir")" = "$(id -u) 700"
check "progress: status shows the agent as owner ($(status mcu owner))" status_is mcu owner "'iv-otad:command'"
check "progress: iv-ota status lists the installer module" sh -c "${ours[*]} '$IV_OTA' --bus session status | grep -q 'iv-otad:command'"
app_init=$(gdbus call --session --dest org.iv.Ota --object-path /org/iv/Ota --method org.iv.Ota.Init mcu 1.0.0 \
  "$dir" '{}' 2>&1)
check "progress: an app's Init of the module gets Busy ($app_init)" grep -q "org.iv.Ota.Error.Busy" <<<"$app_init"
stop_agent
stop_pid "$cloud_pid"

# ---- a script that fails ----
new_case failing
write_script "$dir/install.sh" "
echo progress 20
echo 'checking the image' >&2
echo 'flash: write error at block 7' >&2
exit 3"
write_agent_config "$dir" "$(install_group "$dir" "reboot_command=$dir/reboot.sh")"
write_script "$dir/reboot.sh" "touch '$dir/rebooted'"
start_cloud "$dir" mcu 2.0.0 "$dir/image.bin" --offer-once
start_agent "$dir"
wait_for has_report "$dir" '"state":"fail"' || bail "no fail report for the failing script"
check "failing: fail -5 with the last stderr line" \
  has_report "$dir" '"state":"fail","result_code":"-5","result_msg":"flash: write error at block 7"'
check "failing: status says why ($(status mcu result_msg))" status_is mcu result_msg "'flash: write error at block 7'"
check "failing: the image is removed" test -z "$(ls "$dir/state/images")"
check "failing: no reboot, no marker" test ! -e "$dir/rebooted" -a ! -e "$dir/state/rebooting_mcu.json"
check "failing: exactly one terminal report" test "$(reports "$dir" fail)" = 1 -a "$(reports "$dir" done)" = 0
stop_agent
stop_pid "$cloud_pid"

# ---- a script that hangs past its timeout, with a child of its own ----
new_case hanging
write_script "$dir/install.sh" "
sleep 1000 &
echo \$! >'$dir/child.pid'
echo 'waiting for the flash' >&2
sleep 1000"
write_agent_config "$dir" "$(install_group "$dir" "timeout=2")"
start_cloud "$dir" mcu 2.0.0 "$dir/image.bin" --offer-once
start_agent "$dir"
wait_for has_report "$dir" '"state":"fail"' || bail "no fail report for the hanging script"
check "hanging: fail -5 naming the timeout and the last stderr line" \
  has_report "$dir" '"result_code":"-5","result_msg":"install command timed out after 2 s: waiting for the flash"'
child=$(cat "$dir/child.pid")
check "hanging: the script's child was killed with its group (pid $child)" wait_for sh -c "! kill -0 $child 2>/dev/null"
check "hanging: the image is removed" test -z "$(ls "$dir/state/images")"
stop_agent
stop_pid "$cloud_pid"

# ---- a script, then reboot_command; the "reboot" restarts the agent ----
new_case reboot
write_script "$dir/install.sh" "cp \"\$1\" '$dir/installed.bin'; echo \"\$2\" >'$dir/next-version'"
write_script "$dir/reboot.sh" "cp '$dir/next-version' '$dir/version'; touch '$dir/rebooted'"
write_agent_config "$dir" "$(install_group "$dir" "reboot_command=$dir/reboot.sh")"
start_cloud "$dir" mcu 2.0.0 "$dir/image.bin"
start_agent "$dir"
wait_for test -e "$dir/rebooted" || bail "reboot_command did not run"
check "reboot: the marker is persisted before the reboot" test -e "$dir/state/rebooting_mcu.json"
check "reboot: no terminal report before the reboot" test "$(reports "$dir" done)" = 0 -a "$(reports "$dir" fail)" = 0
stop_agent
start_agent "$dir"
wait_for has_report "$dir" '"state":"done"' || bail "no done after the reboot"
check "reboot: the installed image is the cloud's" cmp -s "$dir/installed.bin" "$dir/image.bin"
check "reboot: exactly one done after the restart" test "$(reports "$dir" done)" = 1 -a "$(reports "$dir" fail)" = 0
check "reboot: the marker is gone" test ! -e "$dir/state/rebooting_mcu.json"
stop_agent
stop_pid "$cloud_pid"

# ---- the agent killed while the script runs ----
new_case killed
write_script "$dir/install.sh" "
echo \$\$ >'$dir/script.pid'
echo progress 30
while [ ! -e '$dir/never' ]; do sleep 0.1; done"
write_agent_config "$dir" "$(install_group "$dir" "")"
start_cloud "$dir" mcu 2.0.0 "$dir/image.bin" --offer-once
start_agent "$dir"
wait_for test -s "$dir/script.pid" || bail "the install script did not start"
kill_agent
script=$(cat "$dir/script.pid")
check "killed: the script died with the agent (pid $script)" wait_for sh -c "! kill -0 $script 2>/dev/null"
start_agent "$dir"
wait_for has_report "$dir" '"state":"fail"' || bail "no terminal report after the agent's restart"
check "killed: exactly one terminal report after the restart, fail -5 naming the interruption" \
  has_report "$dir" '"result_code":"-5","result_msg":"the install command of 2.0.0 was interrupted: the agent stopped while it ran"'
check "killed: nothing else" test "$(reports "$dir" fail)$(reports "$dir" done)" = 10
check "killed: the image is removed" test -z "$(ls "$dir/state/images")"
stop_agent
stop_pid "$cloud_pid"

# ---- a version_command that fails: the module shows why, others are served ----
new_case no-version
rm -f "$dir/version"
write_script "$dir/install.sh" "exit 0"
write_agent_config "$dir" "$(install_group "$dir" "")"
start_agent "$dir"
wait_for status_is mcu result_code "-5"
msg=$(status mcu result_msg)
check "no-version: GetStatus names the failing version_command ($msg)" \
  grep -q "version_command cat .*failed: cat: .*No such file" <<<"$msg"
app_init=$(gdbus call --session --dest org.iv.Ota --object-path /org/iv/Ota --method org.iv.Ota.Init other 1.0.0 \
  "$dir" '{}' 2>&1)
check "no-version: another module is still served ($app_init)" test "$app_init" = "()"
echo 3.1.0 >"$dir/version"
check "no-version: once version_command works, the module registers" wait_for status_is mcu version "'3.1.0'"
stop_agent

check "no sanitizer report in any agent log" sh -c "! grep -q Sanitizer '$tmp'/*/iv-otad.log"
echo "1..$n"
exit $((failures > 0))
