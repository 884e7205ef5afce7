#!/usr/bin/env bash
# Signed images with an installer ([install.<module>] method=command, TAP
# output): [security] trusted_keys applies to the agent's own modules as to
# apps'. Keys and statements come from the real iv-ota-sign.
#  - a signed image is downloaded, its signature checked, and installed;
#  - an unsigned offer is refused before any request (fail -5, the install
#    script never runs);
#  - a statement for another module is refused the same way.
#
# Env: IV_OTAD, IV_OTA_CLOUD, IV_OTA, IV_OTA_SIGN.
set -uo pipefail

here=$(dirname "${BASH_SOURCE[0]}")
source "$here/tap.sh"
source "$here/installers-common.sh"
WAIT_SECONDS=30

: "${IV_OTAD:?}" "${IV_OTA_CLOUD:?}" "${IV_OTA:?}" "${IV_OTA_SIGN:?}"
tmp=$(mktemp -d /tmp/iv-ota-install-signed-XXXXXX)

cleanup() {
  cleanup_processes
  if [ "$failures" -eq 0 ] && [ -z "${OTA_TEST_KEEP:-}" ]; then rm -rf "$tmp"; else echo "# files kept in $tmp"; fi
}
trap cleanup EXIT

start_bus_and_broker
"${ours[@]}" "$IV_OTA_SIGN" keygen "$tmp/vendor" >/dev/null || bail "iv-ota-sign keygen failed"

# new_case NAME: the image (2.0.0), the version file (1.0.0), an install
# script that copies the image and takes its version, and the agent config.
new_case() {
  dir=$tmp/$1
  mkdir -p "$dir"
  head -c $((300 * 1024 + 7)) /dev/urandom >"$dir/image.bin"
  echo 1.0.0 >"$dir/version"
  printf '#!/bin/sh\ncp "$1" %s/installed.bin\necho "$2" >%s/version\n' "$dir" "$dir" >"$dir/install.sh"
  chmod 755 "$dir/install.sh"
  write_agent_config "$dir" "$(printf '[install.mcu]\nmethod=command\nversion_command=cat %s/version\ncommand=%s/install.sh {path} {version} {module}\n[security]\ntrusted_keys=%s\n' \
    "$dir" "$dir" "$tmp/vendor.pub")"
}

http_requests() { grep -c '^http: GET' "$1/cloud.log"; }

# ---- a signed image installs ----
new_case signed
statement=$("${ours[@]}" "$IV_OTA_SIGN" sign --key "$tmp/vendor" --module mcu --version 2.0.0 "$dir/image.bin")
start_cloud "$dir" mcu 2.0.0 "$dir/image.bin" --user-defined="$statement"
start_agent "$dir"
wait_for has_report "$dir" '"state":"done"' || bail "no done report for the signed image"
check "signed: the installed image is the cloud's" cmp -s "$dir/installed.bin" "$dir/image.bin"
check "signed: no fail report" test "$(reports "$dir" fail)" = 0
check "signed: GetStatus says signature_checked" status_is mcu signature_checked true
check "signed: the agent logged the key" grep -q "2.0.0 signed by key" "$dir/iv-otad.log"
stop_agent
stop_pid "$cloud_pid"

# ---- an unsigned offer is refused before any request ----
new_case unsigned
start_cloud "$dir" mcu 2.0.0 "$dir/image.bin"
start_agent "$dir"
wait_for has_report "$dir" '"state":"fail"' || bail "no fail report for the unsigned offer"
check "unsigned: fail -5 naming the reason" has_report "$dir" '"result_code":"-5","result_msg":"signature refused: unsigned offer'
check "unsigned: no HTTP request ($(http_requests "$dir"))" test "$(http_requests "$dir")" = 0
check "unsigned: the install script never ran" test ! -e "$dir/installed.bin"
stop_agent
stop_pid "$cloud_pid"

# ---- a statement for another module ----
new_case other-module
statement=$("${ours[@]}" "$IV_OTA_SIGN" sign --key "$tmp/vendor" --module radio --version 2.0.0 "$dir/image.bin")
start_cloud "$dir" mcu 2.0.0 "$dir/image.bin" --user-defined="$statement"
start_agent "$dir"
wait_for has_report "$dir" '"state":"fail"' || bail "no fail report for the statement of another module"
check "other module: fail -5 naming it" has_report "$dir" 'signed for module \\"radio\\", offered for module \\"mcu\\"'
check "other module: no HTTP request ($(http_requests "$dir"))" test "$(http_requests "$dir")" = 0
stop_agent
stop_pid "$cloud_pid"

check "no sanitizer report in any agent log" sh -c "! grep -q Sanitizer '$tmp'/*/iv-otad.log"
echo "1..$n"
exit $((failures > 0))
