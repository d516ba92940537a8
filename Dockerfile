# syntax=docker/dockerfile:1
# Build stage: compile TypeScript and the native better-sqlite3 addon.
# Both stages use the same Node (24 LTS): the addon is built for the runtime stage's ABI.
FROM node:24-bookworm-slim AS build
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

# Runtime stage: no compiler, no sources, no secrets. The passphrase arrives at run time from a
# mounted secret file, never in a layer and not in an environment variable (which `docker
# inspect` shows and child processes inherit): mount your own config with
#   passphraseFile: /run/secrets/fleetca-passphrase
# and the file there, mode 0600 (fleetca refuses a group- or world-readable one) and owned by
# the image's fleetca user (`docker run --rm --entrypoint id IMAGE` prints its uid), e.g.
#   --mount type=bind,src=/srv/fleetca/passphrase,dst=/run/secrets/fleetca-passphrase,readonly
# or a Docker/Compose secret of that name with that uid and mode 0400.
FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json config.example.yaml ./
# A container default: all interfaces, state on the volume. Mount your own over it to change it.
# The URLs clients are given default to names only the container itself reaches (publicUrl
# http://localhost:8080 from listen.public, written into every certificate as its CRL, OCSP and
# caIssuers URLs, with a warning at every start; apiUrl from listen.api, the bootstrap tokens'
# audience and a name on the API certificate). Set them at run time to the names and published
# ports clients use:
#   -e FLEETCA_PUBLIC_URL=http://ca.example:8080 -e FLEETCA_API_URL=https://ca.example:8443
RUN mkdir -p /etc/fleetca && printf '%s\n' \
      'dataDir: /var/lib/fleetca' \
      'listen: { api: "0.0.0.0:8443", public: "0.0.0.0:8080" }' \
      'serverNames: []' > /etc/fleetca/config.yaml
RUN groupadd --system fleetca && useradd --system --gid fleetca --home /app --shell /usr/sbin/nologin fleetca \
 && mkdir -p /var/lib/fleetca && chown fleetca:fleetca /var/lib/fleetca && chmod 0700 /var/lib/fleetca
USER fleetca
# The CA's whole state: database, wrapped keys, KEK parameters.
VOLUME ["/var/lib/fleetca"]
ENV FLEETCA_CONFIG=/etc/fleetca/config.yaml
# Listeners bind all interfaces inside the container; map ports as needed.
EXPOSE 8443 8080
# `fleetca status --health` finds the running daemon's listener in its state file (no fixed
# port) and exits 0 when its /healthz answers 200, 1 otherwise.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "dist/cli/fleetca.js", "status", "--health"]
ENTRYPOINT ["node", "dist/cli/fleetca.js"]
CMD ["serve"]
