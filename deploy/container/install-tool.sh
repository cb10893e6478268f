#!/usr/bin/env bash
# Prints the container tool `make image` builds with: podman when installed, else docker when its
# engine answers. With neither, installs podman from Debian's packages (root and apt-get needed)
# and prints it; exits 1 with the reason when none can be had.
set -euo pipefail

if command -v podman >/dev/null 2>&1; then
	echo podman
	exit 0
fi
# A docker client without an engine cannot build; only an answering engine counts.
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
	echo docker
	exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	echo "deploy/container/install-tool.sh: no podman or docker engine here, and podman cannot be installed (needs root and apt-get)" >&2
	exit 1
fi
echo "deploy/container/install-tool.sh: installing podman from Debian's packages" >&2
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends \
	podman buildah fuse-overlayfs uidmap slirp4netns netavark aardvark-dns \
	containernetworking-plugins catatonit golang-github-containers-common >&2; }; then
	echo "deploy/container/install-tool.sh: apt-get could not install podman" >&2
	exit 1
fi
echo podman
