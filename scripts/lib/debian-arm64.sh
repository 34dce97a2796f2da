# Debian bookworm arm64 packages for the image, fetched with a private apt state in the
# cache folder: no `dpkg --add-architecture` on the host and no root needed.
# Needs: CACHE, and the settings of board/common/packages.conf.

apt_dir() { echo "$CACHE/apt-arm64"; }

apt_arm64() {
  local dir
  dir=$(apt_dir)
  "$@" -o Dir="$dir" -o Dir::State::status="$dir/status" \
    -o APT::Architecture=arm64 -o APT::Architectures=arm64 \
    -o Debug::NoLocking=1 -o APT::Sandbox::User=root -qq
}

apt_arm64_sources() {
  local suite component="$DEBIAN_COMPONENTS" keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  for suite in $DEBIAN_SUITES; do
    echo "deb [signed-by=$keyring] http://deb.debian.org/debian $suite $component"
  done
  echo "deb [signed-by=$keyring] http://deb.debian.org/debian-security $DEBIAN_SECURITY_SUITE $component"
}

# Refreshes the package lists when they are missing, a day old, or when asked to.
apt_arm64_update() {
  local dir stamp
  dir=$(apt_dir)
  stamp="$dir/updated"
  mkdir -p "$dir/etc/apt/apt.conf.d" "$dir/etc/apt/preferences.d" "$dir/etc/apt/trusted.gpg.d" \
    "$dir/var/lib/apt/lists/partial" "$dir/var/cache/apt/archives/partial"
  touch "$dir/status"
  apt_arm64_sources >"$dir/etc/apt/sources.list"
  if [[ ${1:-} == force || ! -f $stamp || -n $(find "$stamp" -mmin +1440) ]]; then
    step "refreshing the Debian arm64 package lists"
    apt_arm64 apt-get update || die "cannot fetch the Debian package lists (network, or deb.debian.org down?)"
    touch "$stamp"
  fi
}

# The package a meta package depends on (linux-image-arm64 -> linux-image-6.1.0-N-arm64).
apt_arm64_resolve() {
  local name=$1 target
  target=$(apt_arm64 apt-cache depends --no-recommends --no-suggests "$name" 2>/dev/null |
    sed -n 's/^ *Depends: //p' | head -n 1)
  [[ -n $target ]] || die "package $name not found in Debian bookworm arm64"
  echo "$target"
}

# Downloads the named packages into $CACHE/debs (checked against the index's SHA-256;
# kept across builds) and prints their file paths.
apt_arm64_download() {
  local debs="$CACHE/debs" line url file size hash
  mkdir -p "$debs"
  local uris
  uris=$(apt_arm64 apt-get download --print-uris "$@" 2>&1) ||
    die "cannot resolve packages $*: $(echo "$uris" | tail -n 1)"
  while read -r line; do
    [[ -n $line ]] || continue
    read -r url file size hash <<<"$line"
    url=${url//\'/}
    hash=${hash#SHA256:}
    if [[ ! -f $debs/$file ]] || ! echo "$hash  $debs/$file" | sha256sum -c --quiet - 2>/dev/null; then
      progress "downloading $file ($((size / 1024)) KiB)"
      curl -fsSL --retry 3 -o "$debs/$file.part" "$url" || die "download failed: $url"
      echo "$hash  $debs/$file.part" | sha256sum -c --quiet - 2>/dev/null ||
        die "download of $file does not match the Debian index's SHA-256"
      mv "$debs/$file.part" "$debs/$file"
    fi
    echo "$debs/$file"
  done <<<"$uris"
}
