"""`api.gunicorn_conf`: what each API process does once gunicorn has loaded the app into it."""

from __future__ import annotations

import gc
from pathlib import Path
from types import SimpleNamespace

from api import create_app, gunicorn_conf
from core.settings import Settings


def test_an_api_process_takes_its_loaded_objects_out_of_full_collections(tmp_path: Path) -> None:
    gc.unfreeze()
    app = create_app(Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'distilq.db'}",
                              redis_url="redis://127.0.0.1:1/0", check_processes=0))
    try:
        assert gc.get_freeze_count() == 0
        gunicorn_conf.post_worker_init(SimpleNamespace(wsgi=app))
        assert gc.get_freeze_count() > 10_000  # every object alive then: Flask's, SQLAlchemy's, the app's
    finally:
        gc.unfreeze()
        app.extensions["distilq"].check_pool.close()
