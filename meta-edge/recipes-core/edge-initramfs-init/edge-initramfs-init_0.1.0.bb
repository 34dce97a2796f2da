SUMMARY = "The slot's initramfs /init: mounts the root slot by PARTUUID and hands over to it"
DESCRIPTION = "board/common/initramfs/init and its module list, from the repository: finds the \
slot the boot script named (root=PARTUUID=), mounts it read-only and switch_roots to its \
/sbin/init; any failure reboots, so that U-Boot counts the attempt."
# The repository carries no license file yet: CLOSED until its owner picks a license.
LICENSE = "CLOSED"

FILESEXTRAPATHS:prepend := "${EDGE_SRC_DIR}:"
SRC_URI = " \
    file://board/common/initramfs/init \
    file://board/common/initramfs/modules \
"

S = "${WORKDIR}"

inherit allarch

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -m 0755 ${S}/board/common/initramfs/init ${D}/init
    install -D -m 0644 ${S}/board/common/initramfs/modules ${D}${sysconfdir}/modules
    install -d ${D}/dev ${D}/proc ${D}/sys ${D}/newroot
}

FILES:${PN} = "/init ${sysconfdir}/modules /dev /proc /sys /newroot"
RDEPENDS:${PN} = "${VIRTUAL-RUNTIME_base-utils}"
