# The Weir image: `weir` (coordinator and workers; the entrypoint) and `weir-operator`.
#   docker build -t weir:dev .                                  # CPU pools and the operator
#   docker build -t weir:dev-cuda --build-arg VARIANT=cuda .    # GPU pools (CUDA 12, candle's cuda feature)
# Both variants run as the non-root user 65532 with a read-only root filesystem: the operator
# mounts the job's manifest at /etc/weir and emptyDirs at /tmp and /var/cache/weir.
ARG VARIANT=cpu

# ---- build (CPU): Debian bookworm, FFmpeg 5.1 development files ----
FROM rust:1.95-bookworm AS build-cpu
RUN apt-get update && apt-get install -y --no-install-recommends \
      clang libclang-dev pkg-config libturbojpeg0-dev \
      libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev \
    && rm -rf /var/lib/apt/lists/*
ENV CARGO_FEATURES=""

# ---- build (CUDA): the CUDA toolkit's devel image (nvcc for candle's kernels) ----
FROM nvidia/cuda:12.6.3-devel-ubuntu24.04 AS build-cuda
RUN apt-get update && apt-get install -y --no-install-recommends \
      ca-certificates curl build-essential clang libclang-dev pkg-config libturbojpeg0-dev \
      libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev \
    && rm -rf /var/lib/apt/lists/*
RUN curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain 1.95.0
ENV PATH=/root/.cargo/bin:$PATH
# Compute capability of the target GPUs (8.0 A100, 8.6 A10/L4-class, 9.0 H100).
ARG CUDA_COMPUTE_CAP=80
ENV CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP}
ENV CARGO_FEATURES="cuda"

FROM build-${VARIANT} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p weir ${CARGO_FEATURES:+--features $CARGO_FEATURES} \
 && cargo build --release --locked -p weir-operator \
 && install -m 0755 target/release/weir target/release/weir-operator /usr/local/bin/

# ---- runtime (CPU): Debian slim with FFmpeg's shared libraries ----
FROM debian:bookworm-slim AS runtime-cpu
RUN apt-get update && apt-get install -y --no-install-recommends \
      ca-certificates libavcodec59 libavformat59 libavutil57 libswscale6 libswresample4 libturbojpeg0 \
    && rm -rf /var/lib/apt/lists/*

# ---- runtime (CUDA): the CUDA runtime image (cuBLAS, NVRTC) with FFmpeg's shared libraries ----
FROM nvidia/cuda:12.6.3-runtime-ubuntu24.04 AS runtime-cuda
RUN apt-get update && apt-get install -y --no-install-recommends \
      ca-certificates libavcodec60 libavformat60 libavutil58 libswscale7 libswresample4 libturbojpeg \
    && rm -rf /var/lib/apt/lists/*

FROM runtime-${VARIANT}
COPY --from=build /usr/local/bin/weir /usr/local/bin/weir-operator /usr/local/bin/
USER 65532:65532
ENV HOME=/tmp XDG_CACHE_HOME=/var/cache/weir
ENTRYPOINT ["weir"]
CMD ["--help"]
