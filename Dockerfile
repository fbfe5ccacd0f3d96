# The prediction service image. Build it with `make image` (which first refuses a bundle the gate did not
# VALIDATE) and test it with `make image-test`. The model bundle is copied in at build time: no `dvc pull`,
# no training inside the image or at start-up. Runtime settings come from the environment (12-factor):
# PORT (8000), WEB_CONCURRENCY (1 worker), HOST (0.0.0.0), MODEL_DIR (the bundle copied below).
ARG PYTHON_IMAGE=python:3.11-slim

# ---- builder: a venv with the runtime dependencies only (requirements.txt: no DVC, no dev tools) ----
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
# The libraries' own test suites and the installer are dead weight at run time (and pip in a serving image is
# an attack tool): drop them in this stage, so they never reach the final image's layers.
RUN /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt \
 && find /opt/venv/lib -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} + \
 && /opt/venv/bin/pip uninstall --yes --quiet pip setuptools
# The gated bundle (its path inside the build context; `make image` passes the one params.yaml names).
# Copied here first so it is world-readable in the final image whatever the mode of the source directory.
ARG BUNDLE_DIR=artifacts/model
COPY ${BUNDLE_DIR} /opt/model
RUN chmod -R a+rX,go-w /opt/model

# ---- the web front end (`--target ui`, `make image-test` builds and runs it too): Streamlit, an HTTP client of
# the service at API_URL; requirements-ui.txt only (no model libraries), its own small image ----
FROM ${PYTHON_IMAGE} AS ui-builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
COPY requirements.txt requirements-ui.txt /tmp/
RUN /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements-ui.txt \
 && find /opt/venv/lib -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} + \
 && /opt/venv/bin/pip uninstall --yes --quiet pip setuptools

FROM ${PYTHON_IMAGE} AS ui
LABEL org.opencontainers.image.title="mlops-template web UI" \
      org.opencontainers.image.description="Streamlit front end of the prediction service (set API_URL)" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app
# HOME: Streamlit keeps a small state directory there; the user has no home of its own
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app/src \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    UI_HOST=0.0.0.0 \
    UI_PORT=8501 \
    API_URL=http://service:8000
WORKDIR /app
COPY --from=ui-builder /opt/venv /opt/venv
COPY params.yaml /app/params.yaml
COPY src /app/src
USER 10001:10001
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/_stcore/health' % os.environ.get('UI_PORT', '8501'), timeout=4)"]
CMD ["python", "-m", "mlops_template", "ui"]

# ---- the MLflow tracking server + web UI of the compose stack (`--target mlflow`; `docker compose --profile mlflow
# up -d mlflow`): the full mlflow (the UI is not in mlflow-skinny) at the version of the client pin in
# requirements-mlflow.txt, so that pin is the only one to bump; the model libraries at requirements.txt's pins ----
FROM ${PYTHON_IMAGE} AS mlflow
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY requirements.txt requirements-mlflow.txt /tmp/
RUN version=$(sed -n 's/^mlflow-skinny==\([^ ]*\).*/\1/p' /tmp/requirements-mlflow.txt) \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir -c /tmp/requirements.txt -r /tmp/requirements-mlflow.txt "mlflow==${version}" \
 && groupadd --system --gid 10001 mlflow \
 && useradd --system --uid 10001 --gid mlflow --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin mlflow \
 && mkdir /mlflow && chown mlflow:mlflow /mlflow
# HOME: MLflow keeps a little state there; the user has no home of its own
# MLFLOW_SERVER_ENABLE_JOB_EXECUTION: no background job runner (GenAI jobs, unused here: seven busy processes)
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp \
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
# /mlflow: the SQLite store and the artifacts (a volume in the compose stack)
WORKDIR /mlflow
USER 10001:10001
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"]
CMD ["mlflow", "server", "--host=0.0.0.0", "--port=5000", "--backend-store-uri=sqlite:////mlflow/mlflow.db", "--artifacts-destination=/mlflow/artifacts"]

# ---- runtime ----
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="mlops-template model service" \
      org.opencontainers.image.description="FastAPI prediction service for the gated model bundle" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app/src \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    WEB_CONCURRENCY=1 \
    MODEL_DIR=/app/model
WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/model /app/model
COPY params.yaml /app/params.yaml
COPY src /app/src
# Root owns the code and the model; the service runs as an unprivileged user and cannot change them.
USER 10001:10001
EXPOSE 8000
# The commit the image is built from (CD: the commit CI checked; `make image`: HEAD), reported by GET /model,
# and the bundle's model_version (metadata.json; `make image` and CD pass it) as a label. Last, so another
# commit or model reuses every layer above. The bundle records no commit: it is reproducible. MODEL_COMMITTED_AT:
# when a commit first recorded the bundle in dvc.lock (`make bundle-check`), the time GET /model reports (the image
# has no git history to read it from); empty: unknown.
ARG GIT_COMMIT=""
ARG MODEL_VERSION=unknown
ARG MODEL_COMMITTED_AT=""
LABEL org.opencontainers.image.revision="${GIT_COMMIT}" model_version="${MODEL_VERSION}"
ENV GIT_COMMIT="${GIT_COMMIT}" MODEL_COMMITTED_AT="${MODEL_COMMITTED_AT}"
# Liveness through the service's own /health (slim images have no curl).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=4)"]
# Exec form: the server is PID 1 and gets SIGTERM directly, so in-flight requests finish on `docker stop`.
CMD ["python", "-m", "mlops_template", "serve"]
