#!/usr/bin/env bash
# Builds U-Boot's own fw_printenv/fw_setenv (tools/env) from Debian bookworm's u-boot source:
# Debian's u-boot-tools does not ship them (Debian bug #939598), and the environment codec's
# tests compare against them. Cached by source version; prints the folder holding both tools.
#   scripts/build-uboot-envtools.sh        # build once, then print the cached folder
# The tests look in ${EDGE_CACHE:-$HOME/.cache/edge-firmware}/uboot-envtools/bin.
set -euo pipefail

cache=${EDGE_CACHE:-$HOME/.cache/edge-firmware}/uboot-envtools
apt_dir=$cache/apt
# A private apt configuration with deb-src lines: the system's sources stay as they are.
apt_options=(
  -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$apt_dir/lists" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
)

die() {
  echo "build-uboot-envtools: $*" >&2
  exit 1
}

build_packages=(gcc make flex bison dpkg-dev) # kconfig needs flex and bison; apt-get source, dpkg-source
missing=()
for package in "${build_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' ||
    missing+=("$package")
done
if ((${#missing[@]})); then
  ((EUID == 0)) || die "needs the Debian packages ${missing[*]}: install them as root first"
  echo "build-uboot-envtools: installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p "$apt_dir/lists/partial"
cat >"$apt_dir/sources.list" <<'EOF'
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main
EOF
# Refresh the source index at most once a day; an offline host keeps using the last one.
if [[ -z $(find "$apt_dir/lists" -maxdepth 1 -name '*Sources*' -mtime -1 -print -quit) ]]; then
  apt-get "${apt_options[@]}" update -qq 2>/dev/null ||
    echo "build-uboot-envtools: could not refresh the deb-src index; using the cached one" >&2
fi

version=$(apt-cache "${apt_options[@]}" showsrc u-boot 2>/dev/null |
  sed -n 's/^Version: //p' | sort -V | tail -1)
[[ -n $version ]] || die "no u-boot source package found in Debian bookworm (is the network up?)"

out=$cache/$version
if [[ ! -x $out/fw_printenv ]]; then
  work=$cache/work
  rm -rf "$work"
  mkdir -p "$work"
  echo "build-uboot-envtools: fetching u-boot $version source" >&2
  (cd "$work" && apt-get "${apt_options[@]}" source -qq "u-boot=$version" >/dev/null 2>"$work/source.log") ||
    die "apt-get source u-boot=$version failed: $(tail -3 "$work/source.log")"
  tree=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'u-boot-*' -print -quit)
  [[ -n $tree ]] || die "apt-get source left no u-boot-* folder in $work"
  echo "build-uboot-envtools: building envtools (tools-only_defconfig)" >&2
  # sdl2-config is probed by the sandbox board's make rules; envtools does not need it.
  if ! (make -s -C "$tree" O="$work/build" tools-only_defconfig &&
    make -s -C "$tree" -j"$(nproc)" O="$work/build" envtools) >"$work/build.log" 2>&1; then
    die "make envtools failed; see $work/build.log"
  fi
  mkdir -p "$out.partial"
  install -m 755 "$work/build/tools/env/fw_printenv" "$out.partial/fw_printenv"
  ln -sf fw_printenv "$out.partial/fw_setenv" # one binary; it acts on the name it is called by
  rm -rf "$out"
  mv "$out.partial" "$out"
  rm -rf "$work"
fi
ln -sfn "$version" "$cache/bin"
echo "$cache/bin"
