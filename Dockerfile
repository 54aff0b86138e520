# syntax=docker/dockerfile:1
# One image per service, from one Dockerfile (targets: scheduler, worker, api, migrate):
#
#   docker build --target scheduler -t sundial-scheduler .
#   docker build --target worker    -t sundial-worker .
#   docker build --target api       -t sundial-api .
#   docker build --target migrate   -t sundial-migrate .
#
# Alpine, multi-stage: the builder stage turns the project and its dependencies into
# wheels (with a compiler at hand for any dependency without a musl wheel); the final
# stages install those wheels only, so no build tool ships. They run as uid 1000, with
# exec-form commands and healthchecks (no shell is needed at run time). Configuration is
# the environment (docs/operations.md).

ARG PYTHON_VERSION=3.12

# --- builder: wheels for sundial and every dependency ------------------------------------
FROM python:${PYTHON_VERSION}-alpine AS builder
RUN apk add --no-cache build-base libffi-dev linux-headers
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
COPY sql ./sql
# The sundial wheel carries its SQL (the package sundial.sql): nothing else is copied later.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# --- runtime: what every service image shares ----------------------------------------------
FROM python:${PYTHON_VERSION}-alpine AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HEALTH_DIR=/tmp
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels sundial \
 && addgroup -S -g 1000 sundial \
 && adduser -S -D -H -u 1000 -G sundial -h /app sundial
WORKDIR /app
USER 1000:1000
# SIGTERM is the clean stop of every service: the scheduler finishes its current pass,
# the worker drains in-flight runs for up to WORKER_SHUTDOWN_GRACE (30 s by default), the
# API finishes open requests. Give the container that long before the SIGKILL:
# stop_grace_period in docker-compose.yml (or terminationGracePeriodSeconds on
# Kubernetes) must exceed WORKER_SHUTDOWN_GRACE for the worker.
STOPSIGNAL SIGTERM
ENTRYPOINT ["sundial"]

# --- one-shot: apply pending migrations (safe to repeat, and from several at once) --------
FROM runtime AS migrate
CMD ["migrate"]

# --- the services: `sundial healthcheck <service>` exits 0 while its heartbeat is fresh ---
FROM runtime AS scheduler
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["sundial", "healthcheck", "scheduler"]
CMD ["scheduler"]

FROM runtime AS worker
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["sundial", "healthcheck", "worker"]
CMD ["worker"]

FROM runtime AS api
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["sundial", "healthcheck", "api"]
CMD ["api"]
