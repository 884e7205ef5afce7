#!/usr/bin/env bash
# `meson install` into a DESTDIR puts every deployment file in place (TAP output):
# binaries, library, headers, pkg-config file, D-Bus interface XML, bus policy,
# activation file, systemd unit, sysusers.d file, example configuration.
# The unit is checked with `systemd-analyze verify` (and its hardening with
# `systemd-analyze security --offline`) when systemd-analyze is here.
#
# Env (from tests/meson.build): BUILD_ROOT, PROJECT_VERSION and the install
# directories PREFIX BINDIR SBINDIR LIBDIR INCLUDEDIR DATADIR SYSCONFDIR
# SYSTEMD_UNIT_DIR SYSUSERS_DIR (absolute; the unit dirs may be "no").
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/tap.sh"

: "${BUILD_ROOT:?}" "${PROJECT_VERSION:?}" "${SBINDIR:?}" "${SYSCONFDIR:?}"
dest=$(mktemp -d /tmp/iv-ota-install-XXXXXX)
trap 'if [ "$failures" -eq 0 ]; then rm -rf "$dest"; else echo "# tree kept in $dest"; fi' EXIT

if ! meson install -C "$BUILD_ROOT" --no-rebuild --destdir "$dest" >"$dest.log" 2>&1; then
  echo "Bail out! meson install failed: $(tail -20 "$dest.log")"
  rm -f "$dest.log"
  exit 1
fi
rm -f "$dest.log"
ok "meson install --destdir succeeds"

# ---- the tree ----
agent=$SBINDIR/iv-otad
conf=$SYSCONFDIR/iv-ota/iv-otad.conf
activation=$DATADIR/dbus-1/system-services/org.iv.Ota.service
policy=$DATADIR/dbus-1/system.d/org.iv.Ota.conf
unit=$SYSTEMD_UNIT_DIR/iv-otad.service
expected=(
  "$agent"
  "$BINDIR/iv-ota-cloud"
  "$BINDIR/iv-ota"
  "$BINDIR/iv-ota-sign"
  "$LIBDIR/libiv-ota.so"
  "$LIBDIR/libiv-ota.so.0"
  "$LIBDIR/pkgconfig/iv-ota.pc"
  "$INCLUDEDIR/iv-ota/iv_ota.h"
  "$INCLUDEDIR/iv-ota/iv_ota_ext.h"
  "$DATADIR/dbus-1/interfaces/org.iv.Ota.xml"
  "$policy"
  "$activation"
  "$conf"
)
[ "$SYSTEMD_UNIT_DIR" != no ] && expected+=("$unit")
[ "$SYSUSERS_DIR" != no ] && expected+=("$SYSUSERS_DIR/iv-ota.conf")
for f in "${expected[@]}"; do
  check "installed: $f" test -f "$dest$f"
done
check "installed: $agent is executable" test -x "$dest$agent"

out=$("$dest$agent" --version 2>&1)
check "iv-otad --version prints \"iv-otad $PROJECT_VERSION\" ($out)" test "$out" = "iv-otad $PROJECT_VERSION"

# ---- contents ----
has_line() { grep -qxF -- "$2" "$dest$1"; }
for line in "Name=org.iv.Ota" "Exec=$agent --config $conf" "User=root" "SystemdService=iv-otad.service"; do
  check "activation file: $line" has_line "$activation" "$line"
done
if [ "$SYSTEMD_UNIT_DIR" != no ]; then
  for line in "Type=dbus" "BusName=org.iv.Ota" "ExecStart=$agent --config $conf" "Restart=on-failure" \
    "StateDirectory=iv-ota" "ProtectSystem=strict" "ProtectHome=read-only" "NoNewPrivileges=yes" \
    "PrivateTmp=yes"; do
    check "unit: $line" has_line "$unit" "$line"
  done
fi
[ "$SYSUSERS_DIR" != no ] && check "sysusers.d creates group iv-ota" has_line "$SYSUSERS_DIR/iv-ota.conf" "g iv-ota -"

xml_names() { # xml_names FILE XPATH ATTRIBUTE: well-formed, and the attribute values found
  python3 -c 'import sys, xml.etree.ElementTree as E
t = E.parse(sys.argv[1])
print(" ".join(e.get(sys.argv[3]) for e in t.iterfind(sys.argv[2]) if e.get(sys.argv[3])))' "$@"
}
out=$(xml_names "$dest$policy" "./policy" "user" 2>&1)
check "bus policy is well-formed XML with a policy for root ($out)" grep -qw root <<<"$out"
out=$(xml_names "$dest$policy" "./policy/allow" "own" 2>&1)
check "bus policy lets root own org.iv.Ota" test "$out" = "org.iv.Ota"
out=$(xml_names "$dest$DATADIR/dbus-1/interfaces/org.iv.Ota.xml" "./interface" "name" 2>&1)
check "interface XML is well-formed and declares org.iv.Ota and org.iv.Ota.Cloud ($out)" \
  test "$(echo $out)" = "org.iv.Ota org.iv.Ota.Cloud"

# ---- the library through pkg-config, as an application would build ----
cc=${CC:-cc}
if command -v "$cc" >/dev/null && command -v pkg-config >/dev/null; then
  cat >"$dest/app.c" <<'EOF'
#include <iv_ota.h>
#include <iv_ota_ext.h>
int main (void) { return iv_ota_strerror (IV_ERR_OTA_START_FAIL) != 0 ? 0 : 1; }
EOF
  # The sysroot prefixes the .pc file's -I and -L paths with the DESTDIR.
  flags=$(PKG_CONFIG_PATH=$dest$LIBDIR/pkgconfig PKG_CONFIG_SYSROOT_DIR=$dest pkg-config --cflags --libs iv-ota 2>&1)
  if "$cc" ${EXTRA_CFLAGS:-} -o "$dest/app" "$dest/app.c" $flags >"$dest/cc.log" 2>&1 && LD_LIBRARY_PATH=$dest$LIBDIR "$dest/app"; then
    ok "an app builds against the installed headers and library (pkg-config iv-ota: $flags)"
  else
    not_ok "an app builds against the installed headers and library: $flags $(cat "$dest/cc.log")"
  fi
else
  skip "an app builds against the installed headers and library" "no C compiler or pkg-config"
fi

# ---- the unit, as systemd reads it ----
if [ "$SYSTEMD_UNIT_DIR" = no ]; then
  skip "systemd-analyze verify" "unit not installed (-Dsystemdsystemunitdir=no)"
elif ! command -v systemd-analyze >/dev/null; then
  skip "systemd-analyze verify" "systemd-analyze is not installed"
else
  # verify checks that ExecStart= exists: point it at the DESTDIR copy. It
  # exits 0 on mere warnings ("Unknown key", "Failed to parse"): any output fails.
  mkdir -p "$dest/verify"
  sed "s#^ExecStart=$agent #ExecStart=$dest$agent #" "$dest$unit" >"$dest/verify/iv-otad.service"
  out=$(systemd-analyze verify "$dest/verify/iv-otad.service" 2>&1)
  rc=$?
  if [ $rc -eq 0 ] && [ -z "$out" ]; then ok "systemd-analyze verify: no complaint"
  else not_ok "systemd-analyze verify (exit $rc): $out"; fi
  # Exposure 0 (locked down) .. 10 (unprotected): guard the hardening against regressions.
  if systemd-analyze security --help 2>/dev/null | grep -q -- --offline; then
    out=$(systemd-analyze security --offline=yes --threshold=30 --no-pager "$dest/verify/iv-otad.service" 2>&1)
    rc=$?
    level=$(grep -o "Overall exposure level.*" <<<"$out")
    check "hardening: systemd-analyze security exposure at most 3.0 ($level)" test $rc -eq 0
  else
    skip "hardening: systemd-analyze security exposure" "this systemd-analyze has no --offline"
  fi
fi

echo "1..$n"
exit $((failures > 0))
