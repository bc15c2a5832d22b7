# The registry's image: compiled with dev dependencies, run with production dependencies only.
#
#   docker build -t dify-registry .
#   docker run -p 5000:5000 -v registry-data:/var/lib/registry dify-registry
#
# NODE_IMAGE: any Node LTS image on Debian with npm (node in PATH, npm for the build stage). CI builds this
# file with buildah from a locally made base, since it cannot reach Docker Hub.
ARG NODE_IMAGE=node:22-bookworm-slim

FROM ${NODE_IMAGE} AS build
ENV NPM_CONFIG_UPDATE_NOTIFIER=false
WORKDIR /app
# Dependencies first: this layer is reused until package-lock.json changes.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=warn
COPY tsconfig.json tsconfig.build.json ./
COPY server ./server
COPY storage-drivers ./storage-drivers
COPY builder ./builder
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund --loglevel=warn \
 && rm -rf node_modules/.cache

FROM ${NODE_IMAGE} AS registry
ARG VERSION=dev
LABEL org.opencontainers.image.title="dify-registry" \
      org.opencontainers.image.description="An OCI container registry for teams that run Dify" \
      org.opencontainers.image.version="${VERSION}"
ENV NODE_ENV=production \
    REGISTRY_CONFIGURATION_PATH=/etc/dify-registry/config.yml
WORKDIR /app
# A fixed non-root user (10001) written directly: slim bases need not ship useradd. The data directory
# belongs to it, so a fresh volume there is writable.
RUN echo 'registry:x:10001:10001:dify-registry:/var/lib/registry:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'registry:x:10001:' >> /etc/group \
 && mkdir -p /var/lib/registry /etc/dify-registry \
 && chown 10001:10001 /var/lib/registry
COPY docker/config.yml /etc/dify-registry/config.yml
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/builder/recipes ./builder/recipes
USER 10001:10001
VOLUME /var/lib/registry
EXPOSE 5000
# Node runs as PID 1 and handles SIGTERM itself: the registry stops accepting, reports not ready and
# drains in-flight requests (http.draintimeout). No HEALTHCHECK: Kubernetes probes /healthz and /readyz.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "/app/dist/server/main.js"]
CMD ["serve"]
