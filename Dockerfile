# Two images from one file: `--target api` (no torch) and `--target worker` (CUDA build of torch).
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 HF_HOME=/var/cache/huggingface
RUN useradd --create-home --uid 10001 distilq && mkdir -p /var/cache/huggingface && chown distilq /var/cache/huggingface
WORKDIR /app
COPY pyproject.toml README.md ./
COPY api api
COPY worker worker
COPY models models
COPY migrations migrations
COPY distilq distilq

FROM base AS api
RUN pip install '.[api]'
USER distilq
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz').status != 200)"
CMD ["distilq", "api", "--host", "0.0.0.0", "--port", "8000"]

FROM base AS worker
# On PyPI, torch==2.13.0 for Linux x86_64 is the CUDA build.
RUN pip install '.[api,worker]'
USER distilq
CMD ["distilq", "worker"]
