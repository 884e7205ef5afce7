SUMMARY = "OTA agent for the Tencent IoT $ota protocol, and its client library"
DESCRIPTION = "iv-otad owns the device's MQTT session and its firmware downloads \
(resumable, verified) and serves org.iv.Ota on the system bus; libiv-ota gives \
applications the iv_ota_* API of the Tencent IoT Video SDK over D-Bus."
SECTION = "network"
LICENSE = "MIT"
# The project declares its license in meson.build (project(... license : 'MIT')).
LIC_FILES_CHKSUM = "file://meson.build;beginline=3;endline=3;md5=bf049ba3b250fde5dee5c490075abdd1"

# Where the repository is: set both in a .bbappend or local.conf, e.g.
#   IV_OTA_GIT_URI = "git://git.example.com/iv-ota.git;protocol=https;branch=main"
#   SRCREV:pn-iv-ota = "<commit>"
IV_OTA_GIT_URI ??= "git://git.example.com/iv-ota.git;protocol=https;branch=main"
SRC_URI = "${IV_OTA_GIT_URI}"
SRCREV ??= "${AUTOREV}"
PV = "0.1.0+git${SRCPV}"
S = "${WORKDIR}/git"

# glib-2.0-native: gdbus-codegen generates the D-Bus glue at build time.
# mosquitto comes from meta-networking (meta-openembedded).
DEPENDS = "glib-2.0 glib-2.0-native libsoup json-glib mosquitto dbus openssl"

inherit meson pkgconfig systemd useradd

# The meson options used here exist in meson_options.txt; scripts/cross.sh
# configures its arm64/armhf builds with the same directories.
EXTRA_OEMESON = " \
    -Dtests=false \
    -Dsystemdsystemunitdir=${@bb.utils.contains('DISTRO_FEATURES', 'systemd', '${systemd_system_unitdir}', 'no', d)} \
    -Dsysusersdir=${@bb.utils.contains('DISTRO_FEATURES', 'systemd', '${nonarch_libdir}/sysusers.d', 'no', d)} \
"

# Installers ([install] in iv-otad.conf): the agent installs images itself.
# method=rauc drives RAUC's D-Bus service (nothing more to build, RAUC must be
# on the image); method=command runs a program of the image's own.
PACKAGECONFIG ??= ""
PACKAGECONFIG[rauc] = ",,,rauc"

# Group iv-ota: the members may call the agent's methods (bus policy). The
# sysusers.d file is installed too, for images that run systemd-sysusers.
USERADD_PACKAGES = "${PN}"
GROUPADD_PARAM:${PN} = "--system iv-ota"

SYSTEMD_SERVICE:${PN} = "iv-otad.service"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

# libiv-ota on its own: an application needs the library, not the agent.
# iv-ota-cloud is the local stand-in for the cloud (development, demos).
PACKAGES =+ "libiv-ota ${PN}-cloud"
FILES:libiv-ota = "${libdir}/libiv-ota${SOLIBS}"
FILES:${PN}-cloud = "${bindir}/iv-ota-cloud"
FILES:${PN} += " \
    ${datadir}/dbus-1/system.d/org.iv.Ota.conf \
    ${datadir}/dbus-1/system-services/org.iv.Ota.service \
    ${datadir}/dbus-1/interfaces/org.iv.Ota.xml \
    ${nonarch_libdir}/sysusers.d/iv-ota.conf \
"
CONFFILES:${PN} = "${sysconfdir}/iv-ota/iv-otad.conf"

# dbus-daemon serves the system bus the agent lives on; HTTPS downloads
# verify against the system's CA store.
RDEPENDS:${PN} = "dbus libiv-ota"
RRECOMMENDS:${PN} = "ca-certificates"
