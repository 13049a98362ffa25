"""Every Prometheus metric distilq exports. The API runs under gunicorn with several processes: there the
metrics live in PROMETHEUS_MULTIPROC_DIR (set by `distilq api`) and `/metrics` merges them; each worker serves
its own on a port (`distilq worker --metrics-port`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

#: Latency buckets in seconds, from a fast fill-mask job to a long QA batch on a CPU.
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

JOBS_SUBMITTED = Counter("distilq_jobs_submitted_total", "Jobs accepted by the API", ["task"])
JOBS_FINISHED = Counter("distilq_jobs_finished_total", "Jobs that reached a terminal status", ["task", "status"])
BATCH_INPUTS = Histogram("distilq_batch_inputs", "Inputs (strings or QA pairs) per batch", ["task"],
                         buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
BATCH_TOKENS = Histogram("distilq_batch_tokens", "Real tokens per batch (no padding)", ["task"],
                         buckets=tuple(2**i for i in range(4, 18)))
INFERENCE_SECONDS = Histogram("distilq_inference_seconds", "Wall time of one batch in the engine", ["task"],
                              buckets=SECONDS)
QUEUE_WAIT_SECONDS = Histogram("distilq_queue_wait_seconds", "From submission to the claim that ran the job",
                               ["task"], buckets=SECONDS)
JOB_LATENCY_SECONDS = Histogram("distilq_job_latency_seconds", "From submission to a terminal status", ["task"],
                                buckets=SECONDS)
WEBHOOK_ATTEMPTS = Counter("distilq_webhook_attempts_total", "Webhook delivery attempts by outcome", ["outcome"])
WORKER_READY = Gauge("distilq_worker_ready", "1 once this worker's models are loaded and warmed",
                     multiprocess_mode="livemax")
