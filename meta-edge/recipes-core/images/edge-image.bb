SUMMARY = "Edge firmware for the Raspberry Pi 4: A/B root slots with U-Boot fallback, the edge server"
DESCRIPTION = "The product scripts/build-image.sh builds from Debian packages, built with Yocto: \
the root slot (ext4, SLOT_IMAGE_MIB of board/common/packages.conf) and the SD card with the \
A/B layout of board/rpi4/genimage.cfg (wic/edge-ab.wks.in)."
# The repository carries no license file yet: CLOSED until its owner picks a license.
LICENSE = "CLOSED"

# Not ${MACHINE_EXTRA_RRECOMMENDS}: it adds the Wi-Fi and Bluetooth firmware, which the
# project's card does not carry either.
IMAGE_INSTALL = " \
    packagegroup-core-boot \
    edge-server \
    edge-config \
    edge-config-example-modules \
    edge-slot-boot \
    libubootenv-bin \
    init-ifupdown \
    kernel-modules \
    udev-rules-rpi \
    ${CORE_IMAGE_EXTRA_INSTALL} \
"
IMAGE_LINGUAS = ""

inherit core-image

# The slot is mounted read-only: its SHA-256 is what the update server signed.
IMAGE_FEATURES += "read-only-rootfs"

# The slot image: 256 MiB (SLOT_IMAGE_MIB), fixed so that releases line up block for block and
# deltas stay small; a tree over ~90% of it fails the build, as build-image.sh does.
IMAGE_ROOTFS_SIZE = "262144"
IMAGE_ROOTFS_MAXSIZE = "262144"
IMAGE_ROOTFS_EXTRA_SPACE = "0"
IMAGE_OVERHEAD_FACTOR = "1.1"

# mke2fs as build-image.sh runs it: the project's mke2fs.conf, the same filesystem UUID and
# hash seed for every release, no reserved blocks.
EDGE_SLOT_FS_UUID = "45444745-0000-4000-8000-000000000001"
EXTRA_IMAGECMD:ext4 = "-L rootfs -U ${EDGE_SLOT_FS_UUID} -m 0 -E hash_seed=${EDGE_SLOT_FS_UUID},root_owner=0:0,lazy_itable_init=0,nodiscard"
export MKE2FS_CONFIG = "${EDGE_SRC_DIR}/board/common/mke2fs.conf"
do_image_ext4[file-checksums] += "${EDGE_SRC_DIR}/board/common/mke2fs.conf:True"

# The card: the slot image goes into p2 as it is (rawcopy), so the ext4 image comes first.
IMAGE_FSTYPES = "ext4 wic"
IMAGE_TYPEDEP:wic = "ext4"
WKS_FILE = "edge-ab.wks.in"

# p1, as on board/rpi4/genimage.cfg: the Pi firmware, U-Boot and its device tree, and the
# project's boot files (edge-boot/, deployed by the u-boot bbappend).
IMAGE_BOOT_FILES = " \
    ${BOOTFILES_DIR_NAME}/start4.elf;start4.elf \
    ${BOOTFILES_DIR_NAME}/fixup4.dat;fixup4.dat \
    edge-boot/config.txt;config.txt \
    edge-boot/cmdline.txt;cmdline.txt \
    u-boot.bin \
    bcm2711-rpi-4-b.dtb \
    edge-boot/uboot.env;uboot.env \
    edge-boot/boot.scr;boot.scr \
    edge-boot/abstate1.env;abstate1.env \
    edge-boot/abstate2.env;abstate2.env \
"

ROOTFS_POSTPROCESS_COMMAND += "edge_slot_layout; "
edge_slot_layout() {
    # p1 (the A/B state) at /boot and p4 (kept across updates) at /data, by their labels.
    install -d ${IMAGE_ROOTFS}/boot ${IMAGE_ROOTFS}/data
    printf 'LABEL=BOOT\t/boot\tvfat\trw,noatime,flush,umask=0077\t0\t0\n' >>${IMAGE_ROOTFS}${sysconfdir}/fstab
    printf 'LABEL=data\t/data\text4\trw,noatime\t0\t2\n' >>${IMAGE_ROOTFS}${sysconfdir}/fstab
    # The initramfs checks [ -x /newroot/sbin/init ] before switch_root: an absolute link
    # (update-alternatives makes one) would point into the initramfs there.
    init=$(readlink ${IMAGE_ROOTFS}${base_sbindir}/init || true)
    case "$init" in
        /*) ln -sf "$(basename "$init")" ${IMAGE_ROOTFS}${base_sbindir}/init ;;
    esac
}
