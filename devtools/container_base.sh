#!/usr/bin/env bash
# Build the local stand-in for python:3.11-slim when no container registry can be reached (used by
# `make container-base`): a Debian bookworm minbase with python3 + venv from the apt mirror this machine already
# uses, this machine's CA bundle (so pip inside the build reaches the package index as the host's pip does),
# imported into podman's storage as localhost/python-base. Does nothing when the image already exists.
set -euo pipefail
image=${1:-localhost/python-base}
if podman image exists "$image"; then echo "container base: $image already built"; exit 0; fi

mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
mirror=${mirror:-$(awk '$1 == "deb" && $3 ~ /^bookworm$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)}
mirror=${mirror:-http://deb.debian.org/debian}
rootfs=$(mktemp -d /var/tmp/python-base.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
started=$(date +%s)
echo "container base: debootstrap bookworm from $mirror (log: $rootfs.log)"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$mirror" \
  > "$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log"; exit 1; }
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
version=$(chroot "$rootfs" python3 --version)
tar -C "$rootfs" -c . | podman import --quiet --change 'CMD ["python3"]' - "$image" >/dev/null
rm -f "$rootfs.log"
echo "container base: $image ($version) in $(( $(date +%s) - started )) s"
