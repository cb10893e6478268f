#!/usr/bin/env bash
# Makes a Go image on this machine, for the Containerfile's toolchain stage where no registry
# serves one: a minimal Debian 12 (debootstrap, from Debian's mirror) with this host's Go and
# CA bundle, imported with podman as $GO_IMAGE. Then:
#   GO_IMAGE=localhost/go-local:1.26 make image
# Needs root, debootstrap (installed when missing) and podman.
#   GO_IMAGE  the tag (default localhost/go-local:<host Go version>)
#   MIRROR    the Debian mirror (default http://deb.debian.org/debian)
set -euo pipefail
goroot=$(go env GOROOT)
GO_IMAGE=${GO_IMAGE:-localhost/go-local:$(go env GOVERSION | sed 's/^go//; s/\.[0-9]*$//')}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
work=$(mktemp -d /tmp/go-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
debootstrap --variant=minbase --include=ca-certificates,tzdata bookworm "$work/root" "$MIRROR" >&2
cp -a "$goroot" "$work/root/usr/local/go"
# The host's bundle: it trusts whatever this host trusts on the way to the module proxy.
cp /etc/ssl/certs/ca-certificates.crt "$work/root/etc/ssl/certs/ca-certificates.crt"
tar -C "$work/root" -c . | podman import -q \
	--change 'ENV PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	--change 'ENV GOPATH=/go' - "$GO_IMAGE" >/dev/null
echo "local-go-image.sh: $GO_IMAGE"
