#!/usr/bin/env bash
# Writes the image's whole root filesystem under OUT: the static flashhold binary, the CA bundle,
# the time zone data, and a passwd and group naming the user it runs as. The Containerfile's
# toolchain stage runs it inside the Go image; when no Go image can be pulled, `make image`
# runs it on the host and the runtime stage copies its output in instead.
#   VERSION   the release stamped into the binary (flashhold version)
set -euo pipefail
out=${1:?usage: rootfs.sh OUT}
cd "$(dirname "$0")/../.."

rm -rf "$out"
mkdir -p "$out/usr/local/bin" "$out/etc/ssl/certs" "$out/usr/share" "$out/tmp" "$out/var/lib/flashhold"

# timetzdata: the binary carries its own zone data too, should the files below be absent.
CGO_ENABLED=0 go build -trimpath -tags timetzdata -ldflags "-s -w -X main.version=${VERSION:-dev}" \
	-o "$out/usr/local/bin/flashhold" ./cmd/flashhold

# Outbound TLS (managed Redis and Postgres, webhooks) needs the CA bundle; time zones are read
# by the reconcile reports and any TZ the operator sets.
cp /etc/ssl/certs/ca-certificates.crt "$out/etc/ssl/certs/ca-certificates.crt"
if [ -d /usr/share/zoneinfo ]; then
	cp -a /usr/share/zoneinfo "$out/usr/share/zoneinfo"
else
	echo "rootfs.sh: no /usr/share/zoneinfo here; the image has only the binary's own zone data" >&2
fi

# 65532 is not root and owns nothing else in the image.
cat >"$out/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
flashhold:x:65532:65532:flashhold:/var/lib/flashhold:/sbin/nologin
PASSWD
cat >"$out/etc/group" <<'GROUP'
root:x:0:
flashhold:x:65532:
GROUP
chmod 1777 "$out/tmp"
chown -R 65532:65532 "$out/var/lib/flashhold" 2>/dev/null || true
