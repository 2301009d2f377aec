# syntax=docker/dockerfile:1
# ofsys-pipeline image: a builder stage turns the source tree into a wheel, its hot
# modules compiled with mypyc (hatch_build.py; python:3.11, not -slim, has the C compiler
# and headers that takes); the final stage is python:3.11-slim with that wheel and its
# dependencies (binary wheels from PyPI at the versions of constraints.txt, no
# compiler), running as a fixed non-root UID.
#
#   docker build -t ofsys-pipeline:0.1.0 .
#   docker run --rm ofsys-pipeline:0.1.0 run --help

FROM python:3.11 AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md hatch_build.py ./
COPY schemas ./schemas
COPY pipeline ./pipeline
RUN python -m pip wheel --no-deps --wheel-dir /dist .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# Dependencies come as binary wheels only (--only-binary): nothing is compiled here. Their
# versions are pinned by constraints.txt (python -m ops.constraints), so every build of a
# release carries the same libraries. The registry extra is in: the chart offers
# kafka.schemaRegistryUrl (Confluent wire format).
RUN --mount=type=bind,from=builder,source=/dist,target=/dist \
    --mount=type=bind,source=constraints.txt,target=/tmp/constraints.txt \
    python -m pip install --only-binary=:all: -c /tmp/constraints.txt \
      "$(echo /dist/ofsys_pipeline-*.whl)[registry]" \
 && groupadd --system --gid 10001 ofsys \
 && useradd --system --uid 10001 --gid ofsys --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin ofsys
USER 10001:10001
# /metrics, /healthz and /readyz (OFSYS_METRICS_PORT).
EXPOSE 9400
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('OFSYS_METRICS_PORT', '9400'), timeout=3)"]
ENTRYPOINT ["ofsys-pipeline"]
CMD ["run"]
