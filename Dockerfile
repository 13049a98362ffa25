# Two images from one file:
#   docker build --target api .      slim: Flask, gunicorn, tokenizers; no torch
#   docker build --target worker .   CUDA build of torch (PyPI's torch==2.13.0 for Linux x86_64)
# --build-arg BAKE_MODELS=true puts the two models' weights into the worker image (else they are fetched into
# the HF_HOME volume on first start).

FROM python:3.11-slim AS source
WORKDIR /src
COPY pyproject.toml README.md ./
COPY api api
COPY worker worker
COPY models models
COPY migrations migrations
COPY distilq distilq
COPY core core
COPY contract contract
COPY store store
COPY webhooks webhooks
COPY evaluations evaluations
# The Python client, for the `submit`, `jobs`, `batch` and `eval` commands inside the images.
COPY client client

FROM source AS api-wheels
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[api]' ./client

FROM source AS worker-wheels
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[api,worker]' ./client

FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HOME=/var/cache/huggingface DISTILQ_HOME=/var/lib/distilq
RUN useradd --create-home --uid 10001 distilq \
 && mkdir -p /var/cache/huggingface /var/lib/distilq && chown distilq /var/cache/huggingface /var/lib/distilq

FROM runtime AS api
COPY --from=api-wheels /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels 'distilq[api]' distilq-client && rm -rf /wheels
USER distilq
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz').status != 200)"
CMD ["distilq", "api", "--host", "0.0.0.0", "--port", "8000"]

FROM runtime AS worker
ARG BAKE_MODELS=false
COPY --from=worker-wheels /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels 'distilq[api,worker]' distilq-client \
 && rm -rf /wheels
USER distilq
RUN if [ "$BAKE_MODELS" = "true" ]; then python -c "from transformers import AutoModelForMaskedLM, \
AutoModelForQuestionAnswering, AutoTokenizer as T; [T.from_pretrained(m) for m in ('distilbert-base-cased', \
'distilbert-base-cased-distilled-squad')]; AutoModelForMaskedLM.from_pretrained('distilbert-base-cased'); \
AutoModelForQuestionAnswering.from_pretrained('distilbert-base-cased-distilled-squad')"; fi
EXPOSE 9101 9102
# Healthy once the models are loaded and warmed: the metrics port opens only then.
HEALTHCHECK --interval=15s --timeout=3s --start-period=300s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9101/metrics')"
CMD ["distilq", "worker"]
