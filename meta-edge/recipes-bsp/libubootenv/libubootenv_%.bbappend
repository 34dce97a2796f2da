# fw_printenv / fw_setenv read the A/B state (/boot/abstate1.env) through the project's own
# bootloader/uboot-env/fw_env.config, the file the image build and its tests use.
FILESEXTRAPATHS:prepend := "${EDGE_SRC_DIR}:"
SRC_URI:append:class-target = " file://bootloader/uboot-env/fw_env.config"

do_install:append:class-target() {
    install -D -m 0644 ${WORKDIR}/bootloader/uboot-env/fw_env.config ${D}${sysconfdir}/fw_env.config
}

FILES:${PN}-bin += "${sysconfdir}/fw_env.config"
CONFFILES:${PN}-bin += "${sysconfdir}/fw_env.config"
