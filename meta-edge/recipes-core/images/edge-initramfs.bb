SUMMARY = "The slot's initramfs: the project's /init on busybox"
DESCRIPTION = "Installed into each root slot as /boot/initrd.img by edge-slot-boot: the boot \
script loads the kernel and this initramfs from the slot it boots (DESIGN.md contract 1)."
# The repository carries no license file yet: CLOSED until its owner picks a license.
LICENSE = "CLOSED"

PACKAGE_INSTALL = "edge-initramfs-init ${VIRTUAL-RUNTIME_base-utils}"
IMAGE_FEATURES = ""
IMAGE_LINGUAS = ""
PACKAGE_EXCLUDE = "kernel-image-*"
IMAGE_FSTYPES = "cpio.gz"
# A stable name for edge-slot-boot to pick up: edge-initramfs-<machine>.cpio.gz.
IMAGE_NAME_SUFFIX = ""
IMAGE_LINK_NAME = "edge-initramfs-${MACHINE}"

inherit core-image

IMAGE_ROOTFS_SIZE = "8192"
IMAGE_ROOTFS_EXTRA_SPACE = "0"

# The project's /init runs with PATH=/bin:/sbin: Debian's static busybox runs its applets
# whatever the PATH, poky's does not, and some (hexdump) live under /usr: link them there.
ROOTFS_POSTPROCESS_COMMAND += "edge_initramfs_path_links; "
edge_initramfs_path_links() {
    for dir in bin sbin; do
        for applet in ${IMAGE_ROOTFS}/usr/$dir/*; do
            [ -e "$applet" ] || continue
            name=$(basename "$applet")
            [ -e ${IMAGE_ROOTFS}/$dir/$name ] || ln -s ../usr/$dir/$name ${IMAGE_ROOTFS}/$dir/$name
        done
    done
}
