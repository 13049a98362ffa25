"""The API's access log: one line per request, its parts as fields of the JSON line (`method`, `path`, `status`,
`duration_ms`, `bytes`, `remote_addr`, `user_agent`) rather than an Apache-format string in `message`, so that a log
query filters on them. gunicorn's own logger builds a dict of every request header, response header and environ
entry for each line whatever its format uses: ~7 % of an API process's interpreter time per one-input job in a
profile (BENCHMARKS.md, session 20). Keys are never logged: the Authorization header is not read."""

from __future__ import annotations

import traceback
from datetime import timedelta
from typing import Any

from gunicorn import glogging


class AccessLogger(glogging.Logger):
    """gunicorn's logger (its error log unchanged) with the access line as fields."""

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> None:
        if not self.access_log_enabled:
            return
        try:
            # "202 ACCEPTED" (or 202); None when the response was cut off before its status was set.
            code = int(str(resp.status).split(None, 1)[0]) if resp.status else None
            method, path = environ.get("REQUEST_METHOD"), environ.get("RAW_URI")
            duration_ms = round(request_time.total_seconds() * 1000, 1)
            self.access_log.info("%s %s %s %.1f ms", method, path, code, duration_ms, extra={
                "method": method, "path": path, "status": code, "duration_ms": duration_ms,
                "bytes": getattr(resp, "sent", None), "remote_addr": environ.get("REMOTE_ADDR"),
                "user_agent": environ.get("HTTP_USER_AGENT"),
            })
        except Exception:  # a log line never fails a request
            self.error(traceback.format_exc())
