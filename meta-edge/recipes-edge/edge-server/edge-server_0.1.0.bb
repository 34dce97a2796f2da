SUMMARY = "Edge server and update agent for Raspberry Pi 4 fleets"
DESCRIPTION = "The project's one-file esbuild bundle (app/dist/edge-server.mjs), the script that \
works out its V8 heap flags (node-flags.mjs), the start script that supervises it, the trial \
boot watchdog and the clock floor, run by sysvinit as busybox init runs them in the project's \
own image."
# The repository carries no license file yet: CLOSED until its owner picks a license
# (then: LICENSE and LIC_FILES_CHKSUM against that file, checked by meta-edge/test).
LICENSE = "CLOSED"

# The project's files, from the repository (EDGE_SRC_DIR, conf/layer.conf): run
# `npm run build` there before bitbake, which writes app/dist/.
FILESEXTRAPATHS:prepend := "${EDGE_SRC_DIR}:"
SRC_URI = " \
    file://app/dist/edge-server.mjs \
    file://app/dist/node-flags.mjs \
    file://board/common/rootfs/usr/sbin/edge-server-run \
    file://board/common/rootfs/usr/sbin/edge-trial-watchdog \
    file://board/common/rootfs/etc/edge/trial-deadline-seconds \
    file://board/common/rootfs/etc/init.d/edge-clock-floor \
"

S = "${WORKDIR}"

# poky's init manager is sysvinit (INIT_MANAGER = "sysvinit"): its inittab supervises the
# server with respawn, as busybox init does with board/common/rootfs/etc/inittab.
inherit allarch features_check update-rc.d
REQUIRED_DISTRO_FEATURES = "sysvinit"

# The clock floor (a Pi 4 has no battery-backed clock): set at boot once /data is mounted
# (mountall.sh, S03) and after bootmisc.sh (S36) applied /etc/timestamp; noted at shutdown
# and reboot before umountfs (S40).
INITSCRIPT_NAME = "edge-clock-floor"
INITSCRIPT_PARAMS = "start 40 S . stop 30 0 6 ."

# The release the slot carries, as the update agent reports it (ota.releaseFile).
EDGE_RELEASE_VERSION ?= "${PV}"

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -d ${D}${nonarch_libdir}/edge ${D}${sbindir} ${D}${sysconfdir}/edge
    install -m 0644 ${S}/app/dist/edge-server.mjs ${D}${nonarch_libdir}/edge/edge-server.mjs
    install -m 0644 ${S}/app/dist/node-flags.mjs ${D}${nonarch_libdir}/edge/node-flags.mjs
    install -m 0755 ${S}/board/common/rootfs/usr/sbin/edge-server-run ${D}${sbindir}/edge-server-run
    install -m 0755 ${S}/board/common/rootfs/usr/sbin/edge-trial-watchdog ${D}${sbindir}/edge-trial-watchdog
    install -m 0644 ${S}/board/common/rootfs/etc/edge/trial-deadline-seconds ${D}${sysconfdir}/edge/trial-deadline-seconds
    install -d ${D}${sysconfdir}/init.d
    install -m 0755 ${S}/board/common/rootfs/etc/init.d/edge-clock-floor ${D}${sysconfdir}/init.d/edge-clock-floor
    printf '{"version":"%s"}\n' "${EDGE_RELEASE_VERSION}" >${D}${sysconfdir}/edge/release.json
}

# The two lines busybox init has in the project's inittab (respawn, once), for sysvinit.
pkg_postinst:${PN}() {
    if ! grep -q '/edge-server-run$' $D${sysconfdir}/inittab; then
        echo 'ed:2345:respawn:${sbindir}/edge-server-run' >>$D${sysconfdir}/inittab
        echo 'ew:2345:once:${sbindir}/edge-trial-watchdog' >>$D${sysconfdir}/inittab
    fi
}

pkg_postrm:${PN}() {
    sed -i -e '/^ed:2345:respawn:/d' -e '/^ew:2345:once:/d' $D${sysconfdir}/inittab
}

FILES:${PN} = "${nonarch_libdir}/edge ${sbindir}/edge-server-run ${sbindir}/edge-trial-watchdog ${sysconfdir}/edge ${sysconfdir}/init.d/edge-clock-floor"
# The bundle targets Node 20 (app/build.ts) and package.json asks for >= 20.19.
RDEPENDS:${PN} = "nodejs (>= 20.19) sysvinit-inittab ${VIRTUAL-RUNTIME_base-utils}"
