# syntax=docker/dockerfile:1
#
# graphgate as a container: `docker build -t graphgate .`
#
# The image runs `graphgate serve` as uid 10001, configured entirely by
# GRAPHGATE_* variables (or a TOML file mounted and named by
# GRAPHGATE_CONFIG), with its state in the /data volume. It works with a
# read-only root file system (`docker run --read-only`): /data is the only
# place it writes. examples/docker.md shows the first sign-in, the secrets
# to mount and a docker-compose.yml; tests/container_entrypoint.rs runs the
# binary exactly as this file says (ENV, USER, ENTRYPOINT, CMD, HEALTHCHECK
# are read from here), because no Docker engine runs where the tests run.

ARG RUST_VERSION=1.95

# ---- build ----------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin graphgate \
 && install -D -m 0755 target/release/graphgate /out/graphgate

# ---- run ------------------------------------------------------------------
FROM debian:bookworm-slim
# ca-certificates: Entra ID and Microsoft Graph are reached over HTTPS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 graphgate \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent \
        --no-create-home --shell /usr/sbin/nologin graphgate \
 && install -d -m 0700 -o 10001 -g 10001 /data
COPY --from=build /out/graphgate /usr/local/bin/graphgate

# Listen on every interface of the container: other containers reach
# graphgate by its service name. Clients that are not on loopback must use
# STARTTLS or implicit TLS before AUTH/LOGIN (graphgate refuses plaintext
# credentials from the network); mount a certificate whose names include
# the service name (GRAPHGATE_TLS_CERTIFICATE_FILE and
# GRAPHGATE_TLS_PRIVATE_KEY_FILE), else a self-signed one for localhost is
# generated in /data/tls. The admin endpoint stays on the container's
# loopback, for the health check only.
ENV GRAPHGATE_DATA_DIR=/data \
    GRAPHGATE_SMTP_LISTEN=0.0.0.0:2525 \
    GRAPHGATE_SMTP_IMPLICIT_TLS_LISTEN=0.0.0.0:2465 \
    GRAPHGATE_IMAP_LISTEN=0.0.0.0:1143 \
    GRAPHGATE_IMAP_IMPLICIT_TLS_LISTEN=0.0.0.0:1993 \
    GRAPHGATE_POP3_LISTEN=0.0.0.0:1110 \
    GRAPHGATE_POP3_IMPLICIT_TLS_LISTEN=0.0.0.0:1995 \
    GRAPHGATE_ADMIN_LISTEN=127.0.0.1:8025

VOLUME /data
USER 10001:10001
EXPOSE 2525 2465 1143 1993 1110 1995

# Healthy once every account is signed in (the admin endpoint's /readyz);
# `graphgate health --live` only checks that the process answers.
HEALTHCHECK --interval=30s --timeout=10s --start-period=15s --retries=3 \
    CMD ["graphgate", "health"]

ENTRYPOINT ["graphgate"]
CMD ["serve"]
