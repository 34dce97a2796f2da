SUMMARY = "The kernel and initramfs inside the root slot: /boot/Image.gz and /boot/initrd.img"
DESCRIPTION = "DESIGN.md contract 1: the kernel and initramfs live inside each slot, so an \
update can change them. boot.scr (bootloader/uboot-env/boot.cmd) loads /boot/Image.gz and \
/boot/initrd.img from the slot it boots."
# The repository carries no license file yet: CLOSED until its owner picks a license.
LICENSE = "CLOSED"

EDGE_INITRAMFS_IMAGE ?= "edge-initramfs"

PACKAGE_ARCH = "${MACHINE_ARCH}"
INHIBIT_DEFAULT_DEPS = "1"
do_install[depends] += "virtual/kernel:do_deploy ${EDGE_INITRAMFS_IMAGE}:do_image_complete"

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -d ${D}/boot
    # booti inflates a gzip kernel: a third of the bytes to read from an SD card.
    case "${KERNEL_IMAGETYPE}" in
        Image) gzip -9n <${DEPLOY_DIR_IMAGE}/Image >${D}/boot/Image.gz ;;
        Image.gz) install -m 0644 ${DEPLOY_DIR_IMAGE}/Image.gz ${D}/boot/Image.gz ;;
        *) bbfatal "KERNEL_IMAGETYPE ${KERNEL_IMAGETYPE}: boot.scr boots an arm64 Image or Image.gz" ;;
    esac
    chmod 0644 ${D}/boot/Image.gz
    install -m 0644 ${DEPLOY_DIR_IMAGE}/${EDGE_INITRAMFS_IMAGE}-${MACHINE}.cpio.gz ${D}/boot/initrd.img
}

FILES:${PN} = "/boot/Image.gz /boot/initrd.img"
