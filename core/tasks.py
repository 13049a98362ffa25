"""The inference tasks distilq serves. Each is also the name of its queue and of its route."""

from __future__ import annotations

TASK_FILL_MASK = "fill-mask"
TASK_QUESTION_ANSWERING = "question-answering"
TASKS = (TASK_FILL_MASK, TASK_QUESTION_ANSWERING)


class ModelUnavailable(RuntimeError):
    """The model (or, in the API, the tokenizer) serving a task cannot be loaded; the message says why."""
