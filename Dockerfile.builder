# Build workers: the registry image plus buildah (bud --isolation chroot) and
# qemu-user-static for foreign platforms, with tini as PID 1 to reap what RUN steps leave behind.
#
#   docker build -t dify-registry .
#   docker build -f Dockerfile.builder --build-arg REGISTRY_IMAGE=dify-registry -t dify-registry-builder .
#
# Building needs root and privileges inside the container; see the chart README, "Build workers".
ARG REGISTRY_IMAGE=dify-registry:latest

FROM ${REGISTRY_IMAGE}
USER root
# Debian's packages only (bookworm: buildah 1.28). git fetches build contexts.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      buildah qemu-user-static tini git ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
# For buildah run by hand: vfs and chroot work in any container. The worker picks its own driver
# (builder.buildah.storagedriver: auto, overlay where a privileged pod can mount it on its cache volume).
RUN mkdir -p /etc/containers /var/lib/containers /var/lib/builder \
 && printf '[storage]\ndriver = "vfs"\ngraphroot = "/var/lib/containers/storage"\nrunroot = "/run/containers/storage"\n' > /etc/containers/storage.conf
ENV BUILDAH_ISOLATION=chroot \
    STORAGE_DRIVER=vfs
# The worker runs as root: buildah mounts /proc and /dev in build roots and switches users for RUN steps.
USER 0:0
ENTRYPOINT ["/usr/bin/tini", "--", "node", "/app/dist/server/main.js"]
CMD ["worker"]
