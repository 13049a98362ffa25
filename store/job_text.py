"""A job row read for its public JSON without parsing the JSON it stores: its JSON columns read as the text the
database holds and embedded in the answer as they are (`orjson.Fragment`). No parse and no
re-serialisation of a job's output, which a fill-mask job's top-k lists make most of its JSON: a poll of one job
(`store.job_reads.own_job_json`) is written this way. (A batch's rows are read the same way, but their lines are
parsed out of them: `store/batch_rows.py`.)"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Text, cast
from sqlalchemy import inspect as sa_inspect

from models.tables import Job

#: The job's JSON columns, by attribute name (`meta` is the `metadata` column), read as text.
JSON_COLUMNS = ("input", "parameters", "output", "error", "webhook_events_filter", "meta")
#: The other columns `contract.job_json.job_to_public` reads.
PLAIN_COLUMNS = ("id", "task", "model", "status", "created_at", "started_at", "completed_at", "queue_ms",
                 "inference_ms", "batch_size", "attempts", "webhook")


def public_columns(*extra: str) -> list[Any]:
    """The columns of a job's public JSON, and `extra` ones, labelled with their attribute names; the JSON columns
    as their stored text."""
    table = sa_inspect(Job).columns  # the table's columns by attribute name
    return ([table[name].label(name) for name in (*PLAIN_COLUMNS, *extra)]
            + [cast(table[name], Text).label(name) for name in JSON_COLUMNS])


def embed_json(row: dict[str, Any]) -> dict[str, Any]:
    """`row` (read with `public_columns`, its own: changed in place) with its JSON columns' text as fragments that
    `orjson.dumps` writes as they are; SQL NULL stays null."""
    row.update({name: None if row[name] is None else orjson.Fragment(row[name]) for name in JSON_COLUMNS})
    return row
