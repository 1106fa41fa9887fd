#!/usr/bin/env bash
# Installs the Debian packages bootlab needs, only those missing, without questions.
# Safe to run again: it says what it installs and does nothing when all are present.
set -euo pipefail

# What each group is for, so a failure message can say why a package is wanted.
packages=(
  qemu-system-x86 qemu-utils      # the VMs
  busybox-static cpio             # the mini image (busybox initramfs)
  mmdebstrap squashfs-tools xorriso isolinux syslinux-common  # the fixture ISO
  e2fsprogs gdisk dosfstools      # seeding disks with data from the host
  grub-pc-bin grub-common mtools  # GRUB ISOs made by grub-mkrescue (boot-menu tests)
  nix-bin                         # nix-instantiate --parse for flake.nix
  chromium                        # rendering report.html in tests
  shellcheck                      # actionlint checks the workflows' run: scripts with it
  ca-certificates
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

go_tools() {
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
