"""Liveness and readiness."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from api.state import app_state
from core.presence import unserved_tasks
from core.tasks import TASKS

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    """Ready when the database and Redis answer right now, and an inference worker for each task has loaded and
    warmed its model (its presence key in Redis)."""
    state = app_state()
    checks: dict[str, str] = {}
    try:
        with state.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as error:
        checks["database"] = f"unreachable: {error.__class__.__name__}"
    try:
        state.redis.ping()
        checks["redis"] = "ok"
        unserved = unserved_tasks(state.redis, TASKS)
        checks["workers"] = f"no worker has loaded a model for {', '.join(unserved)}" if unserved else "ok"
    except Exception as error:
        checks["redis"] = f"unreachable: {error.__class__.__name__}"
    ready = all(value == "ok" for value in checks.values())
    response = jsonify({"status": "ready" if ready else "unavailable", "checks": checks})
    response.status_code = 200 if ready else 503
    return response
