#!/usr/bin/env bash
# Installs the Debian packages the test suite needs (real clients and peers), idempotently.
# Run as root on Debian 12. Safe to run again: apt skips what is already installed.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(
  docker.io skopeo podman buildah          # real registry clients
  docker-registry                          # CNCF Distribution 2.8.2 as a peer and benchmark baseline
  qemu-user-static binfmt-support          # run arm64 images
  busybox-static                           # amd64 base image for tests
  redis-server                             # shared state (later issues)
  ceph-mon ceph-osd radosgw ceph-common    # a real S3 (RADOS Gateway) for the S3 driver tests
  golang-go golang-github-masterminds-sprig-dev golang-k8s-sigs-yaml-dev   # render the Helm chart (test/helm-render)
  mmdebstrap                               # a Debian base for building the Dockerfile (no Docker Hub)
  git                                      # the builder fetches sources with Debian's git
  ca-certificates curl openssl
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# docker-registry's package starts a system service on :5000; tests start their own.
if command -v systemctl >/dev/null && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl stop docker-registry || true
fi
# binfmt for arm64 may need an explicit update where systemd is not running.
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
  update-binfmts --enable qemu-aarch64 2>/dev/null || true
fi
