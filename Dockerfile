# One image per service: docker build --build-arg SERVICE=ingest -t l2flow/ingest .
# (SERVICE = ingest | normalizer | analyzer | gateway). The build stage compiles every workspace; the
# runtime stage keeps production dependencies only and runs as the unprivileged `node` user (uid 1000).
FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
COPY libs ./libs
COPY services ./services
COPY tsconfig.base.json tsconfig.json ./
RUN npm ci --no-audit --no-fund && npx tsc -b

FROM node:22-bookworm-slim AS runtime
ARG SERVICE
# A capped old generation: V8 otherwise lets a service with a ~35 MB live heap sit at 200-500 MB RSS
# (measured with the soak). The young generation keeps V8's 64-bit default (16 MB semi-spaces): at 4 MB
# the normalizer spent 18 % of its thread in GC instead of 9 % (every output in flight outlived two
# scavenges and was promoted) and handled ~20 % fewer messages per second; 16 MB costs each service
# ~25 MB of RSS. 192 MB of old space leaves room for ingest's 64 MB outage buffer; raise both (and
# OUTAGE_BUFFER_BYTES) together. Override per deployment if needed.
# Each service also sets V8's --incremental-marking-soft-trigger=60 as it starts (GC_TUNING=on, the
# default; Node refuses it here): with an old space this small V8 otherwise started a full
# mark-compact after nearly every scavenge (libs/runtime/src/gc.ts).
# jemalloc instead of glibc's malloc: glibc kept the memory of a burst (frames held through a NATS
# outage, then sent at once) in RSS for good (400-symbol soak: ingest 100 -> 143 MB at a 3 s outage);
# jemalloc hands it back (118 -> 107 MB), and the soak's RSS stays flat.
RUN apt-get update && apt-get install -y --no-install-recommends libjemalloc2 \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s "$(find /usr/lib -name libjemalloc.so.2 | head -n 1)" /usr/local/lib/libjemalloc.so.2 \
    && test -e /usr/local/lib/libjemalloc.so.2
ENV NODE_ENV=production SERVICE=${SERVICE} \
    NODE_OPTIONS="--max-semi-space-size=16 --max-old-space-size=192" \
    LD_PRELOAD=/usr/local/lib/libjemalloc.so.2
WORKDIR /app
COPY --from=build /app/package.json /app/package-lock.json ./
COPY --from=build /app/libs ./libs
COPY --from=build /app/services ./services
RUN npm ci --omit=dev --no-audit --no-fund && rm -rf libs/*/src services/*/src libs/testkit/fixtures
USER node
# 9464: /metrics, /healthz, /readyz of every service; 50051: the gateway's gRPC API.
EXPOSE 9464 50051
CMD ["sh", "-c", "exec node services/${SERVICE}/dist/main.js"]
