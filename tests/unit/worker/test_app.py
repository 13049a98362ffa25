"""`worker.app`: what a worker does once it is ready to consume."""

from __future__ import annotations

import gc

from core.settings import Settings
from distilq.stack import EmbeddedRedis
from worker.app import create_worker_app


def test_a_ready_worker_takes_its_loaded_objects_out_of_full_collections(redis_server: EmbeddedRedis) -> None:
    gc.unfreeze()
    _, context = create_worker_app(Settings(redis_url=redis_server.url), [], metrics_port=0)
    try:
        assert gc.get_freeze_count() == 0
        context.ready()
        assert gc.get_freeze_count() > 10_000  # every object alive then: this process's modules among them
    finally:
        context.presence_stop.set()
        gc.unfreeze()
