# syntax=docker/dockerfile:1
# Build stage: compile TypeScript and the native better-sqlite3 addon.
FROM node:20-bookworm-slim AS build
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

# Runtime stage: no compiler, no sources, no secrets. The passphrase arrives at run time
# (FLEETCA_PASSPHRASE or a mounted passphraseFile), never in a layer.
FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json config.example.yaml ./
# A container default: all interfaces, state on the volume. Mount your own over it to change it.
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
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:8080/healthz').then(r=>process.exit(r.status===200?0:1),()=>process.exit(1))"
ENTRYPOINT ["node", "dist/cli/fleetca.js"]
CMD ["serve"]
