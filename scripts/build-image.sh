#!/usr/bin/env bash
# Builds the device images from Debian bookworm arm64 packages and the edge server's bundle:
#   out/<version>/rootfs.ext4        the root slot image (ext4, byte-identical for the same inputs)
#   out/<version>/qemu-disk.img      QEMU virt disk: p1 boot, p2 slot A, p3 slot B, p4 data
#   out/<version>/rpi4-sdcard.img    Raspberry Pi 4 SD card, same layout
#   out/<version>/manifest.json      what went in, sizes and SHA-256 of the slot image
# Usage: scripts/build-image.sh [--version V] [--out DIR] [--compress] [--force]
#                               [--ota-url URL --tuf-root FILE]
#   --ota-url, --tuf-root: the update server the device checks in with, and the TUF root.json
#   it trusts (baked into the slot); without them the image has no update agent.
# Downloads are cached in $EDGE_CACHE (default ~/.cache/edge-firmware), outside the checkout.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${EDGE_CACHE:-$HOME/.cache/edge-firmware}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1704067200}
# The same filesystem UUID (and directory hash seed) for every slot image: slots are found
# by partition, and a fixed UUID keeps the superblocks of two releases alike.
SLOT_FS_UUID=45444745-0000-4000-8000-000000000001
export SOURCE_DATE_EPOCH

step() { printf '\033[1m==> %s\033[0m (%ds)\n' "$*" "$SECONDS" >&2; }
progress() { printf '    %s\n' "$*" >&2; }
die() {
  printf 'build-image: error: %s\n' "$*" >&2
  exit 1
}

VERSION=$(node -p 'require(process.argv[1]).version' "$ROOT/package.json")
OUT=$ROOT/out
COMPRESS=0
FORCE=0
OTA_URL=
TUF_ROOT=
while (($#)); do
  case $1 in
    --version) VERSION=${2:?--version needs a value}; shift 2 ;;
    --out) OUT=${2:?--out needs a value}; shift 2 ;;
    --compress) COMPRESS=1; shift ;;
    --force) FORCE=1; shift ;;
    --ota-url) OTA_URL=${2:?--ota-url needs a value}; shift 2 ;;
    --tuf-root) TUF_ROOT=${2:?--tuf-root needs a file}; shift 2 ;;
    -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[[ -z $OTA_URL || -f $TUF_ROOT ]] || die "--ota-url needs --tuf-root FILE (the repository's metadata/root.json)"
[[ -z $TUF_ROOT || -n $OTA_URL ]] || die "--tuf-root needs --ota-url URL"
[[ $VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$ ]] || die "version '$VERSION' is not semver"

# shellcheck source=board/common/packages.conf
source "$ROOT/board/common/packages.conf"
# shellcheck source=scripts/lib/debian-arm64.sh
source "$ROOT/scripts/lib/debian-arm64.sh"

for tool in mke2fs genimage mkimage mkenvimage depmod cpio busybox dpkg-deb curl mcopy mkdosfs; do
  command -v "$tool" >/dev/null || die "$tool is missing: run scripts/install-deps.sh"
done

DEST=$OUT/$VERSION
mkdir -p "$OUT" "$CACHE"
# One build at a time: builds share the cache and the output folder.
exec 9>"$CACHE/build.lock"
flock -n 9 || { echo "build-image: another build is running; waiting for it" >&2; flock 9; }
WORK=$(mktemp -d "$OUT/.build-$VERSION.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

step "edge server bundle"
(cd "$ROOT" && node --import tsx app/build.ts) >&2

step "Debian arm64 packages"
apt_arm64_update
KERNEL_DEB_PACKAGE=$(apt_arm64_resolve "$KERNEL_PACKAGE")
mapfile -t DEBS < <(apt_arm64_download "$KERNEL_DEB_PACKAGE" $ROOTFS_PACKAGES $BOOT_PACKAGES)
((${#DEBS[@]})) || die "no packages downloaded"
# Everything the image is made from; an unchanged key means the images are up to date.
inputs_key() {
  (
    cd "$ROOT"
    echo "$VERSION $SOURCE_DATE_EPOCH $OTA_URL"
    [[ -z $TUF_ROOT ]] || sha256sum <"$TUF_ROOT"
    find board bootloader scripts/build-image.sh scripts/lib -type f -print0 | LC_ALL=C sort -z |
      xargs -0 sha256sum
    sha256sum app/dist/edge-server.mjs app/dist/node-flags.mjs
    for deb in "${DEBS[@]}"; do basename "$deb"; done # a Debian update rebuilds too
  ) | sha256sum | cut -d' ' -f1
}
KEY=$(inputs_key)
if ((!FORCE)) && [[ -f $DEST/manifest.json ]] && grep -q "\"inputsKey\": \"$KEY\"" "$DEST/manifest.json"; then
  step "out/$VERSION is up to date"
  exit 0
fi

# The packages unpacked once into the cache, keyed by their content; read-only from here on.
STAGE_KEY=$( (echo stage-v2; for deb in "${DEBS[@]}"; do basename "$deb"; done) | LC_ALL=C sort | sha256sum | cut -c1-16)
STAGE=$CACHE/stage/$STAGE_KEY
if [[ ! -d $STAGE ]]; then
  rm -rf "$STAGE.tmp"
  mkdir -p "$STAGE.tmp"
  for deb in "${DEBS[@]}"; do
    progress "unpacking ${deb##*/}"
    dpkg-deb -x "$deb" "$STAGE.tmp"
  done
  kernel=$(ls "$STAGE.tmp/lib/modules")
  depmod -b "$STAGE.tmp" "$kernel"
  # The applet list comes from the host's busybox-static: the same Debian version.
  progress "busybox applet links"
  install -D -m 0755 "$STAGE.tmp/bin/busybox" "$STAGE.tmp/.busybox-tree/bin/busybox"
  while read -r applet; do
    mkdir -p "$STAGE.tmp/.busybox-tree/${applet%/*}"
    [[ -e $STAGE.tmp/.busybox-tree/$applet ]] || ln -s /bin/busybox "$STAGE.tmp/.busybox-tree/$applet"
  done < <(busybox --list-full)
  mv "$STAGE.tmp" "$STAGE"
fi
KERNEL_VERSION=${KERNEL_DEB_PACKAGE#linux-image-}
[[ -f $STAGE/boot/vmlinuz-$KERNEL_VERSION ]] || die "kernel $KERNEL_VERSION has no /boot/vmlinuz"

step "Node.js for aarch64 ($NODE_PACKAGE)"
NODE_DIR=$CACHE/node
mkdir -p "$NODE_DIR"
NODE_TGZ=$NODE_DIR/${NODE_PACKAGE//@/-}.tgz
if [[ ! -f $NODE_TGZ ]]; then
  progress "npm pack $NODE_PACKAGE"
  (cd "$WORK" && npm pack --silent "$NODE_PACKAGE" >pack.txt) || die "cannot fetch $NODE_PACKAGE from the npm registry"
  mv "$WORK/$(tail -n 1 "$WORK/pack.txt")" "$NODE_TGZ"
fi
mkdir -p "$WORK/node"
tar -xzf "$NODE_TGZ" -C "$WORK/node"
[[ -x $WORK/node/package/bin/node ]] || die "$NODE_TGZ holds no bin/node"

# Copies the named kernel modules and their dependencies from the staged kernel into $1.
copy_modules() {
  local dest=$1 list=$2 moddir=$STAGE/lib/modules/$KERNEL_VERSION name path dep
  mkdir -p "$dest/lib/modules/$KERNEL_VERSION"
  while read -r name; do
    [[ -n $name ]] || continue
    path=$(grep -E "(^|/)${name//_/[_-]}\.ko:" "$moddir/modules.dep" | cut -d: -f1)
    if [[ -z $path ]]; then
      grep -qE "/${name//_/[_-]}\.ko$" "$moddir/modules.builtin" || die "kernel module $name not found"
      continue
    fi
    for dep in $path $(grep -E "^$path:" "$moddir/modules.dep" | cut -d: -f2-); do
      install -D -m 0644 "$moddir/$dep" "$dest/lib/modules/$KERNEL_VERSION/$dep"
    done
  done <"$list"
  cp "$moddir"/modules.{order,builtin,builtin.modinfo} "$dest/lib/modules/$KERNEL_VERSION/"
  depmod -b "$dest" "$KERNEL_VERSION"
}

# busybox and a link for each of its applets, made once per stage (see below).
install_busybox() {
  cp -a "$STAGE/.busybox-tree/." "$1/"
}

# Pins what mke2fs and cpio copy from the tree: times and permissions.
pin_tree() {
  find "$1" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  chmod -R go-w "$1"
}

step "initramfs"
INITRAMFS=$WORK/initramfs
install_busybox "$INITRAMFS"
mkdir -p "$INITRAMFS"/{dev,proc,sys,newroot,etc}
install -m 0755 "$ROOT/board/common/initramfs/init" "$INITRAMFS/init"
cp "$ROOT/board/common/initramfs/modules" "$INITRAMFS/etc/modules"
copy_modules "$INITRAMFS" "$ROOT/board/common/initramfs/modules"
pin_tree "$INITRAMFS"
(cd "$INITRAMFS" && find . -mindepth 1 | LC_ALL=C sort |
  cpio --quiet --reproducible -o -H newc -R 0:0) | gzip -9n >"$WORK/initrd.img"
progress "initrd.img: $(($(stat -c %s "$WORK/initrd.img") / 1024)) KiB"

step "root slot tree"
TREE=$WORK/rootfs
mkdir -p "$TREE"/{boot,data,dev,proc,sys,run,tmp,root,mnt,etc,usr/lib/edge,usr/bin,var}
install_busybox "$TREE"
for lib in ld-linux-aarch64.so.1 libc.so.6 libm.so.6 libdl.so.2 libpthread.so.0 librt.so.1 \
  libresolv.so.2 libnss_files.so.2 libnss_dns.so.2 libgcc_s.so.1; do
  install -D -m 0755 "$STAGE/lib/aarch64-linux-gnu/$lib" "$TREE/lib/aarch64-linux-gnu/$lib"
done
cp -a "$STAGE"/usr/lib/aarch64-linux-gnu/libstdc++.so.6* "$TREE/lib/aarch64-linux-gnu/"
ln -s aarch64-linux-gnu/ld-linux-aarch64.so.1 "$TREE/lib/ld-linux-aarch64.so.1"
install -m 0755 "$WORK/node/package/bin/node" "$TREE/usr/bin/node"
# chrt (util-linux; busybox has none): the scheduler's precise tasks ask it for SCHED_FIFO.
install -m 0755 "$STAGE/usr/bin/chrt" "$TREE/usr/bin/chrt"
NODE_VERSION=$(node -p 'require(process.argv[1]).version' "$WORK/node/package/package.json")
# gzip: the boot loader reads a third of the bytes (an SD card is slow), booti inflates it.
gzip -9n <"$STAGE/boot/vmlinuz-$KERNEL_VERSION" >"$TREE/boot/Image.gz"
chmod 0644 "$TREE/boot/Image.gz"
install -m 0644 "$WORK/initrd.img" "$TREE/boot/initrd.img"
copy_modules "$TREE" "$ROOT/board/common/rootfs/etc/modules"
cp -a "$ROOT/board/common/rootfs/." "$TREE/"
install -m 0644 "$ROOT/app/dist/edge-server.mjs" "$TREE/usr/lib/edge/edge-server.mjs"
install -m 0644 "$ROOT/app/dist/node-flags.mjs" "$TREE/usr/lib/edge/node-flags.mjs"
printf '{"version":"%s","kernel":"%s","node":"%s"}\n' "$VERSION" "$KERNEL_VERSION" "$NODE_VERSION" \
  >"$TREE/etc/edge/release.json"
if [[ -n $OTA_URL ]]; then
  printf '{\n  "firmware": { "slotPath": "auto" },\n  "ota": { "serverUrl": "%s" }\n}\n' "$OTA_URL" \
    >"$TREE/etc/edge/edge-server.json"
  install -m 0644 "$TUF_ROOT" "$TREE/etc/edge/tuf-root.json"
fi
ln -s /run/resolv.conf "$TREE/etc/resolv.conf"
ln -s /run "$TREE/var/run"
ln -s /tmp "$TREE/var/tmp"
ln -s /data/log "$TREE/var/log"
pin_tree "$TREE"

step "root slot image (ext4, ${SLOT_IMAGE_MIB} MiB)"
TREE_KIB=$(du -sk --apparent-size "$TREE" | cut -f1)
progress "tree: $((TREE_KIB / 1024)) MiB"
((TREE_KIB < SLOT_IMAGE_MIB * 1024 * 90 / 100)) ||
  die "the root tree ($((TREE_KIB / 1024)) MiB) does not fit a ${SLOT_IMAGE_MIB} MiB slot image with 10% to spare"
MKE2FS_CONFIG=$ROOT/board/common/mke2fs.conf E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH \
  mke2fs -q -F -t ext4 -L rootfs -U "$SLOT_FS_UUID" -m 0 \
  -E "hash_seed=$SLOT_FS_UUID,root_owner=0:0,lazy_itable_init=0,nodiscard" \
  -d "$TREE" "$WORK/rootfs.ext4" "${SLOT_IMAGE_MIB}M" ||
  die "mke2fs could not build the slot image"
# mke2fs -d copies each file's ctime and atime from the host, where no one can pin them (the
# ctime is the host's clock; reading a file moves its atime): set both here.
{
  echo /
  (cd "$TREE" && find . -mindepth 1 | LC_ALL=C sort | cut -c2-)
} | sed "s|.*|sif & ctime @$SOURCE_DATE_EPOCH\nsif & atime @$SOURCE_DATE_EPOCH|" >"$WORK/ctime.debugfs"
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH debugfs -w -f "$WORK/ctime.debugfs" "$WORK/rootfs.ext4" \
  >"$WORK/ctime.log" 2>&1 || die "debugfs could not pin the slot image's times: $(tail -n 3 "$WORK/ctime.log")"
debugfs -R 'stat /etc/inittab' "$WORK/rootfs.ext4" 2>/dev/null | grep -q "ctime: $(printf '0x%x' "$SOURCE_DATE_EPOCH"):" ||
  die "the slot image's times are not pinned"
SLOT_SHA256=$(sha256sum "$WORK/rootfs.ext4" | cut -d' ' -f1)
progress "rootfs.ext4: sha256 $SLOT_SHA256"

step "boot partition files"
BOOTFILES=$WORK/bootfiles
mkdir -p "$BOOTFILES"
mkimage -T script -A arm64 -C none -n "edge A/B boot" \
  -d "$ROOT/bootloader/uboot-env/boot.cmd" "$BOOTFILES/boot.scr" >/dev/null
for copy in 1 2; do
  mkenvimage -p 0 -s 0x1000 -o "$BOOTFILES/abstate$copy.env" "$ROOT/bootloader/uboot-env/abstate.defaults"
done
cp "$WORK/rootfs.ext4" "$BOOTFILES/rootfs.ext4"
# The Pi's U-Boot environment: its compiled-in defaults with board/rpi4/uboot-env.txt applied.
node "$ROOT/scripts/lib/uboot-default-env.mjs" "$STAGE/usr/lib/u-boot/rpi_arm64/u-boot.bin" |
  awk -F= 'NR == FNR { if (!/^#/ && NF) { keys[++n] = $1; set[$1] = $0 } next }
    $1 in set { print set[$1]; done[$1] = 1; next } { print }
    END { for (i = 1; i <= n; i++) if (!(keys[i] in done)) print set[keys[i]] }' \
    "$ROOT/board/rpi4/uboot-env.txt" - >"$WORK/uboot-env.txt"
mkenvimage -p 0 -s 0x4000 -o "$BOOTFILES/uboot.env" "$WORK/uboot-env.txt" # CONFIG_ENV_SIZE of rpi_arm64
cp "$STAGE/usr/lib/raspi-firmware/start4.elf" "$STAGE/usr/lib/raspi-firmware/fixup4.dat" \
  "$STAGE/usr/lib/u-boot/rpi_arm64/u-boot.bin" \
  "$STAGE/usr/lib/linux-image-$KERNEL_VERSION/broadcom/bcm2711-rpi-4-b.dtb" \
  "$ROOT/board/rpi4/config.txt" "$ROOT/board/rpi4/cmdline.txt" "$BOOTFILES/"

# The data partition starts with slot A's hash on record (app/src/slot-hash-records.ts): a new
# device knows what it runs without reading its whole slot at the first boot.
SLOT_HEAD_SHA256=$(head -c 65536 "$WORK/rootfs.ext4" | sha256sum | cut -d' ' -f1)
make_disk() { # board, image name
  step "$1 disk image"
  mkdir -p "$WORK/genimage-$1/root/edge" "$WORK/genimage-$1/out"
  printf '{\n  "/dev/disk/by-partuuid/45444745-02": { "sha256": "%s", "length": %s, "head": "%s" }\n}\n' \
    "$SLOT_SHA256" "$(stat -c %s "$WORK/rootfs.ext4")" "$SLOT_HEAD_SHA256" >"$WORK/genimage-$1/root/edge/slot-hashes.json"
  pin_tree "$WORK/genimage-$1/root"
  genimage --config "$ROOT/board/$1/genimage.cfg" --rootpath "$WORK/genimage-$1/root" \
    --tmppath "$WORK/genimage-$1/tmp" --inputpath "$BOOTFILES" --outputpath "$WORK/genimage-$1/out" \
    >"$WORK/genimage-$1.log" 2>&1 || die "genimage failed for $1: $(tail -n 5 "$WORK/genimage-$1.log")"
  mv "$WORK/genimage-$1/out/$2" "$WORK/$1-$2"
}
make_disk qemu disk.img
make_disk rpi4 sdcard.img

if ((COMPRESS)); then
  step "compressing the Raspberry Pi 4 SD card image (zstd -19)"
  zstd -q -19 -T0 --long=27 "$WORK/rpi4-sdcard.img" -o "$WORK/rpi4-sdcard.img.zst"
fi

size_of() { [[ -f $1 ]] && stat -c %s "$1" || echo null; }
package_versions=$(for deb in "${DEBS[@]}"; do dpkg-deb -W --showformat='${Package} ${Version}\n' "$deb"; done |
  awk '{printf "%s\"%s\": \"%s\"", (NR>1?", ":""), $1, $2}')
cat >"$WORK/manifest.json" <<JSON
{
  "version": "$VERSION",
  "inputsKey": "$KEY",
  "sourceDateEpoch": $SOURCE_DATE_EPOCH,
  "kernel": "$KERNEL_VERSION",
  "node": "$NODE_VERSION",
  "packages": { $package_versions },
  "slotImage": { "file": "rootfs.ext4", "sha256": "$SLOT_SHA256", "bytes": $(size_of "$WORK/rootfs.ext4"), "treeBytes": $((TREE_KIB * 1024)) },
  "qemuDisk": { "file": "qemu-disk.img", "bytes": $(size_of "$WORK/qemu-disk.img") },
  "rpi4SdCard": { "file": "rpi4-sdcard.img", "bytes": $(size_of "$WORK/rpi4-sdcard.img"), "zstdBytes": $(size_of "$WORK/rpi4-sdcard.img.zst") }
}
JSON

# Only a complete build replaces the previous one.
rm -rf "$DEST.old"
[[ -d $DEST ]] && mv "$DEST" "$DEST.old"
mkdir -p "$DEST"
mv "$WORK/rootfs.ext4" "$WORK/qemu-disk.img" "$WORK/rpi4-sdcard.img" "$DEST/"
[[ -f $WORK/rpi4-sdcard.img.zst ]] && mv "$WORK/rpi4-sdcard.img.zst" "$DEST/"
mv "$WORK/manifest.json" "$DEST/manifest.json"
rm -rf "$DEST.old"
step "done: out/$VERSION"
sed 's/^/    /' "$DEST/manifest.json" >&2
