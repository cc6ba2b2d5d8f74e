# syntax=docker/dockerfile:1
# The dvsigner container image:
#
#   docker build -t dvsigner/dvsigner:0.1.0 .        (tag: the Cargo package version)
#
# Runtime stage: FROM scratch with /usr/local/bin/dvsigner, exactly the shared libraries it links
# (as `ldd` resolves them) plus the dynamic loader, /etc/passwd with the user dvsigner
# (10001:10001), the data volume /var/lib/dvsigner owned by it, and /tmp. No shell, no package
# manager; it runs with a read-only root filesystem (only the data volume is written).
# tests/container/rootfs.sh lays out those files, here and in tests/container/build-image.sh,
# which builds the same image from an existing binary with buildah, without Docker (that path
# is the one CI runs, in tests/it/container.rs; it also checks this file's runtime settings
# against the image it built).

# Cargo.lock's dependencies need a recent toolchain; this is the one CI builds with.
ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# A C compiler (blst, bundled SQLite) comes with the rust image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin dvsigner \
    && tests/container/rootfs.sh target/release/dvsigner /rootfs \
    && mkdir /data \
    && mv /rootfs/var/lib/dvsigner /data/

FROM scratch
# The Cargo package version (Cargo.toml); SOURCE, REVISION and CREATED describe the build.
ARG VERSION=0.1.0
ARG SOURCE=unknown
ARG REVISION=unknown
ARG CREATED=unknown
COPY --from=build /rootfs/ /
COPY --from=build --chown=10001:10001 /data/ /var/lib/
LABEL org.opencontainers.image.title="dvsigner" \
      org.opencontainers.image.description="Threshold (distributed-validator) remote signer for Ethereum validators, Web3Signer-compatible" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
# `dvsigner` resolves as a bare command too (the Helm chart runs `command: [dvsigner]`).
ENV PATH=/usr/local/bin
USER 10001:10001
WORKDIR /var/lib/dvsigner
VOLUME ["/var/lib/dvsigner"]
# 9000: signer (Web3Signer API), 9100: combiner, 9001: metrics (--metrics-listen).
EXPOSE 9000 9100 9001
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/dvsigner"]
CMD ["--help"]
