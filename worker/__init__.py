"""The worker side: Celery tasks, the batcher that claims jobs, the inference engines and the sweeper."""
