#!/usr/bin/env bash
# Installs the packages iv-ota needs to build, test and run its demo (Debian 12),
# plus the packages named as arguments (scripts/cross.sh adds its cross
# compiler and qemu-user). Does nothing when they are all present; needs root
# (or sudo) otherwise.
set -euo pipefail

packages=(meson ninja-build pkg-config gcc libc6-dev
  libglib2.0-dev libglib2.0-bin libsoup-3.0-dev libjson-glib-dev
  libmosquitto-dev mosquitto mosquitto-clients libdbus-1-dev dbus dbus-bin
  libssl-dev ca-certificates curl openssl systemd python3
  clang libclang-rt-14-dev tinyproxy iproute2
  rauc squashfs-tools util-linux "$@")

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
