SUMMARY = "Edge server configuration: the update server, the trusted TUF root, example modules"
DESCRIPTION = "/etc/edge/edge-server.json (the update server URL, EDGE_OTA_SERVER_URL) and \
/etc/edge/tuf-root.json (the TUF root.json the device trusts, EDGE_TUF_ROOT), as \
scripts/build-image.sh --ota-url --tuf-root writes them; and the example WASM modules."
# The repository carries no license file yet: CLOSED until its owner picks a license.
LICENSE = "CLOSED"

# The update server the device checks in with, e.g. "https://updates.example.net"; empty: the
# image has no update agent. EDGE_TUF_ROOT: the absolute path of the update server's
# metadata/root.json (the fleet's TUF root). Both or neither, as for build-image.sh.
EDGE_OTA_SERVER_URL ??= ""
EDGE_TUF_ROOT ??= ""
# Where the example modules are installed; the server loads modules from its modules.dir.
EDGE_EXAMPLE_MODULES_DIR ??= "${datadir}/edge/modules"

FILESEXTRAPATHS:prepend := "${EDGE_SRC_DIR}:"
SRC_URI = " \
    file://board/common/rootfs/etc/edge/edge-server.json \
    file://app/dist/modules \
"

S = "${WORKDIR}"

inherit allarch

python () {
    url = d.getVar('EDGE_OTA_SERVER_URL')
    root = d.getVar('EDGE_TUF_ROOT')
    if bool(url) != bool(root):
        bb.fatal('edge-config: EDGE_OTA_SERVER_URL and EDGE_TUF_ROOT go together (the update server and the TUF root.json it signs with)')
    if root:
        if not os.path.isabs(root) or not os.path.isfile(root):
            bb.fatal('edge-config: EDGE_TUF_ROOT must name an existing root.json by its absolute path: %s' % root)
        # A new root.json (a key rotation baked into new images) rebuilds this recipe.
        d.appendVarFlag('do_install', 'file-checksums', ' %s:True' % root)
}

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -d ${D}${sysconfdir}/edge
    if [ -n "${EDGE_OTA_SERVER_URL}" ]; then
        # The same file as scripts/build-image.sh --ota-url writes.
        printf '{\n  "firmware": { "slotPath": "auto" },\n  "ota": { "serverUrl": "%s" }\n}\n' \
            "${EDGE_OTA_SERVER_URL}" >${D}${sysconfdir}/edge/edge-server.json
        install -m 0644 "${EDGE_TUF_ROOT}" ${D}${sysconfdir}/edge/tuf-root.json
    else
        install -m 0644 ${S}/board/common/rootfs/etc/edge/edge-server.json ${D}${sysconfdir}/edge/edge-server.json
    fi
    chmod 0644 ${D}${sysconfdir}/edge/edge-server.json

    install -d ${D}${EDGE_EXAMPLE_MODULES_DIR}
    for module in ${S}/app/dist/modules/*/; do
        name=$(basename "$module")
        install -d ${D}${EDGE_EXAMPLE_MODULES_DIR}/$name
        install -m 0644 "$module/$name.wasm" "$module/manifest.json" ${D}${EDGE_EXAMPLE_MODULES_DIR}/$name/
    done
}

PACKAGES =+ "${PN}-example-modules"
FILES:${PN} = "${sysconfdir}/edge"
CONFFILES:${PN} = "${sysconfdir}/edge/edge-server.json"
FILES:${PN}-example-modules = "${EDGE_EXAMPLE_MODULES_DIR}"
RDEPENDS:${PN} = "edge-server"
