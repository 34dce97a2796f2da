# The A/B boot files on p1 of the Pi 4 card, made from the project's sources as
# scripts/build-image.sh makes them: boot.scr (bootloader/uboot-env/boot.cmd), the two copies
# of the A/B state (abstate.defaults), uboot.env (U-Boot's compiled-in defaults with
# board/rpi4/uboot-env.txt applied), and the Pi firmware's config.txt and cmdline.txt.
# Deployed under edge-boot/: meta-raspberrypi's rpi-u-boot-scr deploys its own boot.scr, and
# edge-image's IMAGE_BOOT_FILES takes ours by that path.
FILESEXTRAPATHS:prepend := "${EDGE_SRC_DIR}:"
SRC_URI:append:rpi = " \
    file://bootloader/uboot-env/boot.cmd \
    file://bootloader/uboot-env/abstate.defaults \
    file://board/rpi4/uboot-env.txt \
    file://board/rpi4/config.txt \
    file://board/rpi4/cmdline.txt \
"

DEPENDS:append:rpi = " u-boot-tools-native"

EDGE_BOOT_DEPLOY_DIR = "edge-boot"

do_deploy:append:rpi() {
    edge=${DEPLOYDIR}/${EDGE_BOOT_DEPLOY_DIR}
    install -d $edge
    mkimage -T script -A arm64 -C none -n "edge A/B boot" \
        -d ${WORKDIR}/bootloader/uboot-env/boot.cmd $edge/boot.scr
    for copy in 1 2; do
        mkenvimage -p 0 -s 0x1000 -o $edge/abstate$copy.env ${WORKDIR}/bootloader/uboot-env/abstate.defaults
    done

    # U-Boot's defaults (u-boot.inc makes u-boot-initial-env) with the board's settings
    # replacing a default of the same name or added at the end, as build-image.sh does.
    env_size=$(sed -n 's/^CONFIG_ENV_SIZE=//p' ${B}/.config)
    [ -n "$env_size" ] || bbfatal "no CONFIG_ENV_SIZE in ${B}/.config"
    awk -F= 'NR == FNR { if (!/^#/ && NF) { keys[++n] = $1; set[$1] = $0 } next }
        $1 in set { print set[$1]; done[$1] = 1; next } { print }
        END { for (i = 1; i <= n; i++) if (!(keys[i] in done)) print set[keys[i]] }' \
        ${WORKDIR}/board/rpi4/uboot-env.txt ${B}/u-boot-initial-env >${WORKDIR}/edge-uboot-env.txt
    mkenvimage -p 0 -s $env_size -o $edge/uboot.env ${WORKDIR}/edge-uboot-env.txt

    install -m 0644 ${WORKDIR}/board/rpi4/config.txt ${WORKDIR}/board/rpi4/cmdline.txt $edge/
}
