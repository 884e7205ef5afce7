# shellcheck shell=bash
# Sourced by scripts/demo.sh and scripts/demo-rauc.sh, with $root set to the
# source tree. Each demo runs twice: stage 1 builds and starts the same script
# again on a private session bus, stage 2 plays the story there.
#
# demo_build: sets $builddir to IV_OTA_DEMO_BUILDDIR as it is, or else installs
# what is missing (scripts/deps.sh) and builds build-demo/ (release). Exits the
# script, with the log's tail on stderr, when that fails.
demo_build() {
  if [ -n "${IV_OTA_DEMO_BUILDDIR:-}" ]; then
    builddir=$(cd "$IV_OTA_DEMO_BUILDDIR" && pwd) || exit 1
    return
  fi
  "$root/scripts/deps.sh" || { echo "demo: cannot install the dependencies" >&2; exit 1; }
  builddir=$root/build-demo
  if [ ! -f "$builddir/build.ninja" ]; then
    echo "demo: configuring $builddir (release)"
    meson setup "$builddir" "$root" -Dbuildtype=release >"$builddir.setup.log" 2>&1 ||
      { cat "$builddir.setup.log" >&2; exit 1; }
  fi
  echo "demo: building (ninja -C $builddir)"
  ninja -C "$builddir" >"$builddir.compile.log" 2>&1 || { tail -n 40 "$builddir.compile.log" >&2; exit 1; }
}

# demo_in_session ARGS...: stage 1's end. Runs the script again inside
# dbus-run-session and exits with its status. The bus daemon's stderr (a
# harmless "Failed to set fd limit" as root) is dropped; the script gets ours
# back through fd 3.
demo_in_session() {
  IV_OTA_DEMO_IN_SESSION=1 IV_OTA_DEMO_BUILDDIR=$builddir dbus-run-session -- bash "$0" "$@" 3>&2 2>/dev/null
  exit $?
}

# demo_session_programs: stage 2's start. Takes stderr back and sets
# $builddir and the programs' paths ($IV_OTAD, $IV_OTA_CLOUD, $IV_OTA), which
# use the session bus.
demo_session_programs() {
  { exec 2>&3 3>&-; } 2>/dev/null || true
  builddir=$IV_OTA_DEMO_BUILDDIR
  IV_OTAD=$builddir/service/iv-otad
  IV_OTA_CLOUD=$builddir/tools/iv-ota-cloud
  IV_OTA=$builddir/tools/iv-ota
  export IV_OTA_BUS=session
}
