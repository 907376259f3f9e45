# watcher: multi-stage build; the runtime image holds a virtualenv, tini as PID 1 and a non-root numeric user.
# No "# syntax=" line: it would make BuildKit fetch a frontend image from a registry; the built-in one suffices.
# Build with Docker, or with podman/buildah using --format docker (the OCI format drops HEALTHCHECK); where no Docker
# daemon exists, tools/container-check builds and checks this image.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"
# pinned dependencies change less often than the code: they get their own layer
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock
COPY pyproject.toml README.md ./
COPY watcher/ watcher/
RUN pip install --no-cache-dir --no-deps .

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini=0.19.* \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 watcher \
 && useradd --system --uid 10001 --gid watcher --home-dir /app --shell /usr/sbin/nologin watcher
COPY --from=build /opt/venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    WATCHER_CONFIG=/app/config/sources.toml WATCHER_STATE_DIR=/app/state
WORKDIR /app
# The config lives in a directory so that operators mount a directory there (read-only), not a single file: a
# single-file bind mount pins the file's inode, and an edit that replaces the file (editors, sed -i, git checkout)
# would never be seen by the running daemon. The default is owned by root and readable by uid 10001.
COPY sources.toml /app/config/sources.toml
RUN chmod 0755 /app/config && chmod 0644 /app/config/sources.toml \
 && mkdir -p /app/state && chown watcher:watcher /app/state
VOLUME ["/app/state"]
USER 10001:10001
HEALTHCHECK --interval=60s --timeout=10s --start-period=60s --retries=3 CMD ["watcher", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "watcher"]
CMD ["run"]
