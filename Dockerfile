# syntax=docker/dockerfile:1
#
# Images of every shortener-stack binary from one Dockerfile: one final stage (build target) per
# binary, each holding only /usr/local/bin/<binary> on distroless and running as uid 65532.
#
#   docker build --target url-api       -t ghcr.io/shortener-stack/url-api:0.1.0 .
#   docker build --target analytics-rpc -t ghcr.io/shortener-stack/analytics-rpc:0.1.0 .
#   docker build --target consumer      -t ghcr.io/shortener-stack/consumer:0.1.0 .
#   docker build --target operator      -t ghcr.io/shortener-stack/operator:0.1.0 .
#
# Why targets and not a BIN build argument: the runtime image has no shell, and an exec-form
# ENTRYPOINT cannot expand build arguments, so each image needs its own literal ENTRYPOINT.
# The four targets share the `build` stage, which compiles all binaries at once: building the
# four images compiles the workspace once (BuildKit reuses the stage), not four times.

ARG RUST_VERSION=1.95.0
ARG CARGO_CHEF_VERSION=0.1.78
# Builder and runtime must share the Debian release: the binaries link glibc and the system
# OpenSSL (rdkafka's `ssl` feature) of the builder; cc-debian12 ships glibc, libgcc and libssl3.
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM rust:${RUST_VERSION}-bookworm AS chef
ARG CARGO_CHEF_VERSION
# rdkafka-sys builds librdkafka from source (mklove configure + make, C and C++), finding OpenSSL
# and zlib through pkg-config; zstd-sys compiles its bundled zstd. protoc comes vendored
# (protoc-bin-vendored), so no protobuf package is needed.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential pkg-config libssl-dev zlib1g-dev python3 \
    && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /src

# The recipe lists the workspace's manifests and lockfile only, so the dependency layer below
# is rebuilt only when they change, not on every source edit.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
ENV CARGO_TERM_COLOR=never \
    SQLX_OFFLINE=true
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json \
        --bin url-api --bin analytics-rpc --bin consumer --bin operator
COPY . .
RUN cargo build --release --locked \
        --bin url-api --bin analytics-rpc --bin consumer --bin operator \
    && mkdir -p /out \
    && cp target/release/url-api target/release/analytics-rpc \
          target/release/consumer target/release/operator /out/

FROM ${RUNTIME_IMAGE} AS runtime
LABEL org.opencontainers.image.source="https://github.com/shortener-stack/shortener-stack" \
      org.opencontainers.image.licenses="Apache-2.0"
# Numeric so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532

FROM runtime AS url-api
LABEL org.opencontainers.image.title="url-api"
COPY --from=build /out/url-api /usr/local/bin/url-api
EXPOSE 8080 9095
ENTRYPOINT ["/usr/local/bin/url-api"]

FROM runtime AS analytics-rpc
LABEL org.opencontainers.image.title="analytics-rpc"
COPY --from=build /out/analytics-rpc /usr/local/bin/analytics-rpc
EXPOSE 50051 9091
ENTRYPOINT ["/usr/local/bin/analytics-rpc"]

FROM runtime AS consumer
LABEL org.opencontainers.image.title="consumer"
COPY --from=build /out/consumer /usr/local/bin/consumer
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/consumer"]

FROM runtime AS operator
LABEL org.opencontainers.image.title="operator"
COPY --from=build /out/operator /usr/local/bin/operator
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/operator"]
