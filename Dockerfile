# syntax=docker/dockerfile:1.7
# Small static images of the lockstep binaries:
#   docker build --target operator -t ghcr.io/lockstep-dev/lockstep-operator:0.1.0 .
#   docker build --target proxy    -t ghcr.io/lockstep-dev/lockstep-proxy:0.1.0 .
# Both are fully static musl executables (rustls with ring, no OpenSSL, no libc at run time) on
# distroless/static: CA certificates and a nonroot user (65532), no shell, no package manager.
# Multi-arch: `docker buildx build --platform linux/amd64,linux/arm64 ...` builds each platform
# natively or under emulation (TARGETARCH picks the musl target; no cross linker needed).

ARG RUST_VERSION=1.89

FROM docker.io/library/rust:${RUST_VERSION}-alpine AS build
# musl-dev: the C runtime the musl target links statically; gcc: ring's C and assembly;
# binutils: readelf for the static check below.
RUN apk add --no-cache musl-dev gcc binutils
ARG TARGETARCH
WORKDIR /src
COPY . .
# Cache mounts keep the registry and incremental state between builds; the binaries are copied
# out of the cached target dir into the layer. --locked: exactly Cargo.lock's versions. An
# explicit --target keeps +crt-static off build scripts and proc-macros. The readelf check
# fails the build if a binary would need a dynamic loader.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    set -eux; \
    case "${TARGETARCH:-amd64}" in \
      amd64) target=x86_64-unknown-linux-musl ;; \
      arm64) target=aarch64-unknown-linux-musl ;; \
      *) echo "unsupported TARGETARCH ${TARGETARCH}" >&2; exit 1 ;; \
    esac; \
    rustup target add "$target"; \
    RUSTFLAGS="-C target-feature=+crt-static" \
      cargo build --release --locked --target "$target" \
        -p lockstep-operator -p lockstep-proxy --bin lockstep-operator --bin lockstep-proxy; \
    mkdir -p /out; \
    cp "target/$target/release/lockstep-operator" "target/$target/release/lockstep-proxy" /out/; \
    for bin in /out/*; do \
      if readelf -l "$bin" | grep -q 'Requesting program interpreter'; then \
        echo "$bin is dynamically linked" >&2; exit 1; \
      fi; \
    done

FROM gcr.io/distroless/static-debian12:nonroot AS operator
LABEL org.opencontainers.image.source="https://github.com/lockstep-dev/lockstep" \
      org.opencontainers.image.description="lockstep operator: RouterConfig rollouts you can wait on" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/lockstep-operator /usr/local/bin/lockstep-operator
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/lockstep-operator"]

FROM gcr.io/distroless/static-debian12:nonroot AS proxy
LABEL org.opencontainers.image.source="https://github.com/lockstep-dev/lockstep" \
      org.opencontainers.image.description="lockstep proxy: an HTTP router that reports the configuration generation it serves" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/lockstep-proxy /usr/local/bin/lockstep-proxy
USER 65532:65532
EXPOSE 8080 8443 9080
ENTRYPOINT ["/usr/local/bin/lockstep-proxy"]
