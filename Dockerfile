# syntax=docker/dockerfile:1
#
# sinkstream gateway image.
#   docker build -t sinkstream .
#   docker run --rm -p 8000:8000 -v /path/to/models:/models:ro \
#     -e SINKSTREAM_MODEL=/models/stories260K/stories260K.bin sinkstream
#   GPU: add --gpus all -e SINKSTREAM_BACKEND=cuda (the image has the CUDA backend whenever
#   csrc/cuda.mk exists; cuBLAS comes with the CUDA runtime base image)
#   Without SINKSTREAM_MODEL the gateway downloads its default model into /data/cache.
#
# Stage 1 builds the native library (CPU, plus CUDA when csrc/cuda.mk exists) and fills the Deno
# caches; stage 2 is the CUDA runtime image with only the deno binary, the library and the caches.

ARG CUDA_VERSION=13.0.1
ARG UBUNTU=ubuntu24.04

# ---------------------------------------------------------------------------------------------- build
FROM nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU} AS build

ARG DENO_VERSION=2.9.6
# Portable x86-64 by default (the Makefile's default, -march=native, would tie the image to the
# build machine's CPU). Use MARCH=native for a machine-specific build.
ARG MARCH=x86-64-v2
# GPU architectures for the CUDA backend (csrc/cuda.mk): SASS for each, PTX for the last.
ARG CUDA_ARCHS="80 90"
ENV DEBIAN_FRONTEND=noninteractive

RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates make gcc g++ libc6-dev nodejs npm \
 && rm -rf /var/lib/apt/lists/*

# Deno from the npm registry; its postinstall step puts the platform binary at <pkg>/deno.
# Copy that binary out so the runtime stage needs no Node.js.
RUN npm install -g --no-fund --no-audit "deno@${DENO_VERSION}" \
 && root="$(npm root -g)" \
 && bin="" \
 && for f in "$root/deno/deno" "$root"/deno/node_modules/@deno/linux-*-glibc/deno "$root"/@deno/linux-*-glibc/deno; do \
      if [ -f "$f" ] && "$f" --version >/dev/null 2>&1; then bin="$f"; break; fi; \
    done \
 && test -n "$bin" \
 && install -D -m 0755 "$bin" /opt/deno/bin/deno \
 && /opt/deno/bin/deno --version \
 && "/opt/deno/bin/deno" --version | head -n1 | grep -q " ${DENO_VERSION}"

ENV PATH=/opt/deno/bin:${PATH} \
    DENO_DIR=/opt/deno/cache \
    DENO_NO_UPDATE_CHECK=1 \
    DENO_NO_PROMPT=1

WORKDIR /app

# npm dependencies first: this layer is reused until deno.json or deno.lock change.
COPY deno.json deno.lock ./
RUN deno install --frozen

# Sources (.dockerignore keeps tests, benchmarks, docs and build outputs out). The native build
# comes after this copy because the CUDA rules (csrc/cuda.mk) compile ../kernels/*.cu too.
COPY . .

# Native library: CPU backend, plus the CUDA backend when csrc/cuda.mk (the `cuda` target) exists.
RUN if [ -f csrc/cuda.mk ]; then \
      make -C csrc cuda MARCH="${MARCH}" CUDA_ARCHS="${CUDA_ARCHS}" -j"$(nproc)"; \
    else \
      make -C csrc lib MARCH="${MARCH}" -j"$(nproc)"; \
    fi \
 && test -f csrc/build/libsinkstream.so

# Cache the gateway's whole module graph so the container starts without fetching or
# transpiling anything.
RUN deno cache gateway/main.ts

# -------------------------------------------------------------------------------------------- runtime
FROM nvidia/cuda:${CUDA_VERSION}-runtime-${UBUNTU} AS runtime

ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 sinkstream \
 && useradd --system --uid 10001 --gid sinkstream --home-dir /home/sinkstream --create-home \
      --shell /usr/sbin/nologin sinkstream \
 && install -d -o sinkstream -g sinkstream /data /data/cache

COPY --from=build /opt/deno/bin/deno /usr/local/bin/deno

WORKDIR /app
# Code and library read-only (owned by root); the Deno cache and node_modules writable by the
# service user, since Deno may add to them (a transpile it has not cached, node_modules state).
COPY --from=build /app/deno.json /app/deno.lock /app/mod.ts ./
COPY --from=build /app/csrc/build/libsinkstream.so csrc/build/libsinkstream.so
COPY --from=build /app/runtime/ runtime/
COPY --from=build /app/gateway/ gateway/
COPY --from=build --chown=sinkstream:sinkstream /app/node_modules/ node_modules/
COPY --from=build --chown=sinkstream:sinkstream /opt/deno/cache /home/sinkstream/.deno

# SINKSTREAM_LIB: use the library built above; the runtime then never tries to run make.
ENV DENO_DIR=/home/sinkstream/.deno \
    DENO_NO_UPDATE_CHECK=1 \
    DENO_NO_PROMPT=1 \
    SINKSTREAM_LIB=/app/csrc/build/libsinkstream.so \
    SINKSTREAM_PORT=8000 \
    SINKSTREAM_CACHE_DIR=/data/cache

USER sinkstream
EXPOSE 8000
VOLUME ["/data"]

# No curl in the image: ask deno itself. Reads the port the gateway listens on.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["deno", "eval", "const p = Deno.env.get('SINKSTREAM_PORT') ?? '8000'; const r = await fetch(`http://127.0.0.1:${p}/healthz`, { signal: AbortSignal.timeout(4000) }); Deno.exit(r.ok ? 0 : 1);"]

ENTRYPOINT ["deno", "task", "start", "--host", "0.0.0.0"]
