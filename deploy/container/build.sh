#!/usr/bin/env bash
# `make image`: builds deploy/container/Containerfile as $IMAGE with podman or docker (podman is
# installed from Debian's packages when neither is). The Go toolchain stage is used when
# $GO_IMAGE can be pulled; otherwise the binary, CA bundle and time zone data come from this
# host (deploy/container/rootfs.sh) and the image is still FROM scratch.
#   IMAGE     tag to build (default localhost/flashhold:latest)
#   GO_IMAGE  the build stage's Go image (default docker.io/library/golang:1.26-bookworm)
#   BUILD     toolchain or host: skip the pull attempt
#   VERSION   release stamped into the binary (default: git describe)
set -euo pipefail
cd "$(dirname "$0")/../.."

IMAGE=${IMAGE:-localhost/flashhold:latest}
GO_IMAGE=${GO_IMAGE:-docker.io/library/golang:1.26-bookworm}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
tool=$(deploy/container/install-tool.sh)

if [ -z "${BUILD:-}" ]; then
	if "$tool" image inspect "$GO_IMAGE" >/dev/null 2>&1 ||
		timeout 120 "$tool" pull -q "$GO_IMAGE" >/dev/null 2>.image-pull.err; then
		BUILD=toolchain
	else
		echo "build.sh: cannot pull $GO_IMAGE ($(tail -1 .image-pull.err 2>/dev/null)); building the binary on this host" >&2
		BUILD=host
	fi
	rm -f .image-pull.err
fi

rm -rf .image
if [ "$BUILD" = host ]; then
	VERSION=$VERSION deploy/container/rootfs.sh .image/rootfs
else
	# The context must not carry a host root filesystem into the toolchain stage.
	mkdir -p .image/rootfs
fi

flags=()
# podman writes OCI images by default, and OCI has no HEALTHCHECK; the docker format keeps it.
# Chroot isolation runs the build stage's RUN steps without a container runtime (crun needs
# cgroups that not every build machine gives it).
[ "$tool" = podman ] && flags=(--format docker --isolation chroot)
"$tool" build "${flags[@]}" -f deploy/container/Containerfile \
	--build-arg BUILD="$BUILD" --build-arg GO_IMAGE="$GO_IMAGE" --build-arg VERSION="$VERSION" \
	--build-arg GOPROXY="${GOPROXY:-$(go env GOPROXY 2>/dev/null || echo https://proxy.golang.org,direct)}" \
	--build-arg GOFLAGS="${GOFLAGS:-}" \
	-t "$IMAGE" .
rm -rf .image
echo "build.sh: built $IMAGE ($BUILD build stage, $VERSION) with $tool"
