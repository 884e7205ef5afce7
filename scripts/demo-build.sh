# shellcheck shell=bash
# Sourced by scripts/demo.sh and scripts/demo-rauc.sh (stage 1), with $root
# set to the source tree.
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
