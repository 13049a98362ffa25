"""The HTTP API (Flask). No torch or transformers is imported anywhere under this package."""

from __future__ import annotations

from typing import Any

from flask import Flask

from core.settings import Settings, get_settings


def create_app(settings: Settings | None = None, test_config: dict[str, Any] | None = None) -> Flask:
    settings = settings or get_settings()
    app = Flask(__name__)
    app.debug = settings.debug
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    if test_config:
        app.config.update(test_config)

    from api import batches, errors, evaluations, files, health, jobs, metrics, openapi, page, state, webhooks
    from api.validation import IdConverter

    app.url_map.converters["id"] = IdConverter
    state.init_app(app, settings)
    errors.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(jobs.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(files.bp)
    app.register_blueprint(batches.bp)
    app.register_blueprint(evaluations.bp)
    app.register_blueprint(page.bp)
    app.register_blueprint(page.stats_bp)
    return app
