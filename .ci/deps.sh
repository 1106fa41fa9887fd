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
)
order=(base vm images disks nix report lint cc container)

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
  go_tools
  exit 0
fi

echo "deps: installing missing Debian packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  sudo=sudo
  command -v sudo >/dev/null || { echo "deps: not root and no sudo; install as root: apt-get install ${missing[*]}" >&2; exit 2; }
else
  sudo=
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
go_tools
echo "deps: done"
