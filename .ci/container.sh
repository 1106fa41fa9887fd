#!/usr/bin/env bash
# The container engine for the local workflow runner (harness/ci, `make ci-local`):
# Debian's podman with runc, and a debian:12 image built from Debian's archive.
#
#   .ci/container.sh conf STATE   write STATE/containers.conf, print its path
#   .ci/container.sh image STATE  build localhost/debian:12 unless present, print its id
#
# Why a containers.conf of our own: crun fails on hosts with hybrid (v1 + v2) cgroups,
# the systemd cgroup manager needs a systemd session, and podman's default ulimits are
# refused in some sandboxes. runc + cgroupfs + no default ulimits work everywhere we run.
# Why not a registry pull: the image is what `debian:12` is (minbase bookworm with
# updates and security), built from the same archive apt uses, so the only registry this
# needs is Debian's.
set -euo pipefail

usage() { echo "usage: $0 conf|image STATE_DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1 state=$2
case "$cmd" in conf|image) ;; *) usage ;; esac

for tool in podman runc; do
  command -v "$tool" >/dev/null || { echo "container: $tool missing; run: make deps DEPS=container" >&2; exit 1; }
done
mkdir -p "$state"
conf="$state/containers.conf"
cat >"$conf.tmp" <<'EOF'
# Written by .ci/container.sh; see there for why.
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
mv "$conf.tmp" "$conf"
export CONTAINERS_CONF="$conf"

if [ "$cmd" = conf ]; then
  echo "$conf"
  exit 0
fi

image=localhost/debian:12
if id=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null); then
  echo "$id"
  exit 0
fi
command -v mmdebstrap >/dev/null || { echo "container: mmdebstrap missing; run: make deps DEPS=container" >&2; exit 1; }
echo "container: building $image from Debian's archive (mmdebstrap minbase bookworm)" >&2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bootlab-debian12.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# --mode=unshare: root mode leaves /proc busy in some sandboxes and then fails its cleanup.
mmdebstrap --quiet --mode=unshare --variant=minbase bookworm "$tmp/rootfs.tar" \
  "deb http://deb.debian.org/debian bookworm main" \
  "deb http://deb.debian.org/debian bookworm-updates main" \
  "deb http://deb.debian.org/debian-security bookworm-security main" >&2
# What the registry image has: no package lists (the jobs' first step runs apt-get
# update), and a shell as the command.
podman import --quiet --change 'CMD ["bash"]' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  "$tmp/rootfs.tar" "$image" >/dev/null
podman image inspect --format '{{.Id}}' "$image"
