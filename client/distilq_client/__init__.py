"""distilq's Python client: `Client(url, key)` for jobs, batches and evaluations; `verify_webhook` for deliveries;
`DistilqError` for every error answer."""

from distilq_client.client import Client
from distilq_client.errors import DistilqError
from distilq_client.results import Batch, Evaluation, FileObject, Job
from distilq_client.webhooks import verify_webhook

__all__ = ["Batch", "Client", "DistilqError", "Evaluation", "FileObject", "Job", "verify_webhook"]
