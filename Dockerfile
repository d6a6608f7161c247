# syntax=docker/dockerfile:1
#
# m3shd in a container: `docker build -t m3shd .`, then see docker-compose.yml or the
# README ("Running it for real"). Two stages: a Rust toolchain builds a stripped release
# binary; the runtime stage is a slim Debian with that binary and nothing installed.

FROM rust:1-slim-bookworm AS builder
WORKDIR /src
# The toolchain image has the C compiler that bundled SQLite, libpq and ring need; OpenSSL
# (libpq's TLS, also built from source) takes perl and make as well.
RUN apt-get update && apt-get install -y --no-install-recommends perl make \
    && rm -rf /var/lib/apt/lists/*
COPY . .
# The cache mounts keep the registry and the build directory between builds, so a change
# to the source recompiles m3shd, not its dependencies. The release profile already drops
# debug info; the image drops the symbol table too (a panic still names file and line).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    CARGO_PROFILE_RELEASE_STRIP=symbols cargo build --release --locked --bin m3shd \
    && install -m 0755 target/release/m3shd /usr/local/bin/m3shd

# Same Debian release as the builder, so the binary finds the glibc it was linked against.
# No CA bundle is needed: outbound TLS (alerts, federation) uses the roots built into m3shd.
FROM debian:bookworm-slim
RUN useradd --system --user-group --uid 10001 --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin m3shd \
    && install -d -o m3shd -g m3shd -m 0700 /data
COPY --from=builder /usr/local/bin/m3shd /usr/local/bin/m3shd

# The database, its WAL and a generated master.token live in the volume. Inside the
# container the hub must listen on every interface for a published port to reach it.
ENV M3SHDUP_DATABASE_URL=/data/m3shd.db \
    M3SHDUP_BIND=0.0.0.0:8333
VOLUME /data
WORKDIR /data
USER m3shd
EXPOSE 8333

# The image has no curl or wget; bash (part of every Debian) speaks enough HTTP through
# /dev/tcp to ask GET /api/health, which answers anyone, on the port M3SHDUP_BIND names.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${M3SHDUP_BIND##*:} && printf 'GET /api/health HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && read -r status <&3 && [[ $status == *' 200 '* ]]"]

# SIGTERM (docker stop) is a graceful stop: see shutdown_grace_seconds. Give `docker stop`
# more than that grace (`--time 20`, or stop_grace_period in compose).
STOPSIGNAL SIGTERM
ENTRYPOINT ["m3shd"]
CMD ["serve"]
