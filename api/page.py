"""The web page at `/`: try a model and watch your jobs in a browser. Static files (`api/web/`: HTML, CSS, one
script; no build step, nothing fetched from elsewhere) that call the same `/v1` routes with the key the user
types, kept in the browser's storage. `GET /v1/stats` gives the page its live chart: the key's jobs queued and
running now, and those finished in the last STATS_WINDOW_S."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from flask import Blueprint, Response, jsonify, send_from_directory

from api.deps import authenticate, close_db, current_key, read_db
from core.clock import utcnow
from store import job_reads

WEB = Path(__file__).with_name("web")
#: The chart's "finished per second" is the mean over this window, in seconds.
STATS_WINDOW_S = 10

bp = Blueprint("page", __name__)
stats_bp = Blueprint("stats", __name__, url_prefix="/v1")
stats_bp.before_request(authenticate)
stats_bp.teardown_request(close_db)


@bp.get("/")
def index() -> Response:
    response = send_from_directory(WEB, "index.html", max_age=0)
    # The page runs only its own script and style, and talks only to this origin.
    response.headers["Content-Security-Policy"] = ("default-src 'none'; script-src 'self'; style-src 'self'; "
                                                   "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
                                                   "form-action 'none'; frame-ancestors 'none'")
    return response


@bp.get("/web/<path:name>")
def asset(name: str) -> Response:
    return send_from_directory(WEB, name, max_age=300)


@stats_bp.get("/stats")
def stats() -> Response:
    now = utcnow()
    queued, running, finished = job_reads.key_activity(read_db(), current_key().id, now - timedelta(
        seconds=STATS_WINDOW_S))
    return jsonify({"queued": queued, "running": running, "finished_per_s": finished / STATS_WINDOW_S,
                    "window_s": STATS_WINDOW_S})
