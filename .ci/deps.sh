#!/usr/bin/env bash
# Installs the Debian packages bootlab needs, only those missing, without questions.
# Safe to run again: it says what it installs and does nothing when all are present.
set -euo pipefail

# Packages by what they are for, so a failure message can say why one is wanted and a CI
# job can install only its part: `.ci/deps.sh nix` (make deps DEPS=nix). No argument
# installs every group, which is what `make test` needs.
declare -A groups=(
  [base]="ca-certificates git curl openssh-client"                 # clones, downloads, ssh-keygen in tests
  [vm]="qemu-system-x86 qemu-utils"                               # the VMs
  [images]="busybox-static cpio mmdebstrap squashfs-tools xorriso isolinux syslinux-common grub-pc-bin grub-common mtools zstd"  # mini image, fixture ISO, GRUB ISOs (grub-mkrescue, boot-menu tests), zstd initrds (isoinspect tests)
  [disks]="e2fsprogs gdisk dosfstools"                            # seeding disks with data from the host
  [nix]="nix-bin"                                                 # nix-instantiate --parse, nix-hash for flake.nix
  [report]="chromium"                                             # rendering report.html in tests
  [lint]="shellcheck"                                             # actionlint checks the workflows' run: scripts with it
  [cc]="gcc libc6-dev"                                            # go test -race (make unit) needs cgo, so a C compiler
  [container]="podman runc mmdebstrap"                            # make test / make ci-local run the workflows' container jobs (.ci/container.sh)
  [go]=""                                                         # Go itself: install_go below (not one package list)
)
order=(go base vm images disks nix report lint cc container)

want=("$@")
[ ${#want[@]} -eq 0 ] && want=("${order[@]}")
packages=()
for g in "${want[@]}"; do
  if [ -z "${groups[$g]+set}" ]; then
    echo "deps: unknown group '$g' (groups: ${order[*]})" >&2
    exit 2
  fi
  # shellcheck disable=SC2206 # the group strings are space-separated package names
  packages+=(${groups[$g]})
done

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ "$(id -u)" -ne 0 ]; then
  sudo=sudo
else
  sudo=
fi
as_root() {
  if [ -n "$sudo" ] && ! command -v sudo >/dev/null; then
    echo "deps: not root and no sudo; run as root: $*" >&2
    exit 2
  fi
  $sudo "$@"
}

# The Go toolchain. go.mod names the version the module needs (its `go` line). A Go of
# 1.21 or later fetches that toolchain itself through the module proxy when it is older
# (GOTOOLCHAIN=auto; the Makefile exports it), so any such go will do. Debian 12's own
# golang is 1.19, too old for that; bookworm-backports' golang-go is new enough, so it
# is installed from there (the backports source added when missing). /usr/bin/go is
# that package's, so the Makefile and every later shell find it on PATH.
here="$(cd "$(dirname "$0")/.." && pwd)"
go_wanted() { sed -n 's/^go \([0-9][0-9.]*\).*/\1/p' "$here/go.mod"; }
# version_ge A B: A >= B as Go versions (1.26.0 >= 1.26, 1.21.13 >= 1.21).
version_ge() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" = "$2" ]; }
find_go() {
  command -v go && return 0
  # A go installed but not on PATH (golang-1.xx-go without golang-go, or a tarball).
  local g found=()
  for g in /usr/lib/go-1.*/bin/go /usr/local/go/bin/go; do
    [ -x "$g" ] && found+=("$g")
  done
  [ ${#found[@]} -gt 0 ] && printf '%s\n' "${found[@]}" | sort -V | tail -n1
}
go_version() { GOTOOLCHAIN=local "$1" env GOVERSION 2>/dev/null | sed 's/^go//'; }

add_backports() {
  local codename uri file=/etc/apt/sources.list.d/bookworm-backports.sources
  codename=$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release 2>/dev/null)
  if [ "$codename" != bookworm ] && ! grep -qs '^12' /etc/debian_version; then
    echo "deps: this is not Debian 12 ($codename): install Go $(go_wanted) or any Go >= 1.21 yourself (golang-go of your release, if new enough)" >&2
    exit 2
  fi
  if grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    return 0
  fi
  # The same mirror as the system's own Debian source (a derivative or a local mirror
  # keeps its own), else Debian's.
  uri=$(sed -n 's/^URIs: *\([^ ]*\/debian\/*\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 || true)
  [ -n "$uri" ] || uri=$(sed -n 's/^deb \(\[[^]]*\] \)\{0,1\}\([^ ]*\/debian\/*\) bookworm .*/\2/p' /etc/apt/sources.list 2>/dev/null | head -n1 || true)
  [ -n "$uri" ] || uri=http://deb.debian.org/debian
  echo "deps: adding bookworm-backports ($uri) to apt's sources: $file"
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" |
    as_root tee "$file" >/dev/null
}

install_go() {
  [[ " ${want[*]} " == *" go "* ]] || return 0
  local g v need
  need=$(go_wanted)
  [ -n "$need" ] || { echo "deps: no go line in $here/go.mod" >&2; exit 2; }
  g=$(find_go || true)
  v=""
  [ -n "$g" ] && v=$(go_version "$g")
  if [ -n "$v" ] && version_ge "$v" "$need"; then
    echo "deps: go $v ($g) is at least go.mod's $need"
    go_on_path "$g"
    return 0
  fi
  if [ -z "$v" ] || ! version_ge "$v" 1.21; then
    echo "deps: installing Go from bookworm-backports (found: ${v:-none}; go.mod wants $need, which a Go >= 1.21 fetches itself)"
    add_backports
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -q --no-install-recommends -t bookworm-backports golang-go
    g=$(command -v go || true)
    [ -n "$g" ] || { echo "deps: golang-go installed but no go on PATH" >&2; exit 1; }
    v=$(go_version "$g")
  fi
  go_on_path "$g"
  # Fetch go.mod's toolchain now (module proxy), so the first build does not stall on it
  # and a proxy or CA problem shows here, named.
  echo "deps: go $v fetches go.mod's go $need (GOTOOLCHAIN=auto)"
  if ! (cd "$here" && GOTOOLCHAIN=auto "$g" version); then
    echo "deps: go $v could not fetch go $need through the module proxy ($(GOTOOLCHAIN=local "$g" env GOPROXY)); check the network, GOPROXY, and SSL_CERT_FILE behind a TLS-inspecting proxy" >&2
    exit 1
  fi
}

# go_on_path makes a go found off PATH callable as `go` (the Makefile's default GO, and
# go_tools below): /usr/local/bin/go links to it.
go_on_path() {
  local g=$1 dir
  if ! command -v go >/dev/null; then
    echo "deps: linking /usr/local/bin/go to $g"
    as_root ln -sf "$g" /usr/local/bin/go
  fi
  dir=$(dirname "$g")
  export PATH="$dir:$PATH"
}

go_tools() {
  # Only the lint group's users (the workflow checks in harness/ci) need it.
  [[ " ${want[*]} " == *" lint "* ]] || return 0
  # actionlint comes from the Go module proxy (a pinned version, like go.sum pins ours).
  local gobin
  gobin="$(go env GOPATH)/bin"
  if ! command -v actionlint >/dev/null && [ ! -x "$gobin/actionlint" ]; then
    echo "deps: installing actionlint v1.7.12 with go install"
    go install github.com/rhysd/actionlint/cmd/actionlint@v1.7.12
  fi
}

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#packages[@]} Debian packages present"
else
  echo "deps: installing missing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
install_go
go_tools
echo "deps: done"
