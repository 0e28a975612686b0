# wsfan: a slim, non-root image of the server. Build: docker build -t wsfan .
# Untested by the suite beyond tests/test_deploy_files.py, which checks that its
# port, probes, signal and timeouts agree with the server's settings.

FROM python:3.12-slim AS build
WORKDIR /src
COPY setup.py setup.cfg pyproject.toml README.md LICENSE ./
COPY server server
COPY static static
COPY config config
# The package and its dependencies as wheels (uvloop from the `fast` extra).
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[fast]'

FROM python:3.12-slim
RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent wsfan
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels
# Redis and MongoDB come from outside (REDIS_URL, MONGO_URL): no embedded servers.
ENV WSFAN_SERVER__HOST=0.0.0.0 \
    WSFAN_SERVER__PORT=8888 \
    WSFAN_EMBEDDED__ENABLED=false \
    PYTHONUNBUFFERED=1
WORKDIR /tmp
USER 10001
EXPOSE 8888
# SIGTERM drains: /readyz answers 503 for server.drain_delay, then clients are
# closed with a reconnect code, within server.shutdown_timeout.
STOPSIGNAL SIGTERM
# Liveness only: readiness (/readyz) belongs to the load balancer or orchestrator.
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8888/healthz', timeout=2)"]
ENTRYPOINT ["wsfan", "serve"]
