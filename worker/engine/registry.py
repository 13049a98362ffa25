"""The engines of one worker process, each loaded on first use (so after any fork) and kept for its life."""

from __future__ import annotations

import functools
import logging
import threading
from typing import TYPE_CHECKING

from core.settings import Settings
from core.tasks import TASK_FILL_MASK, TASK_QUESTION_ANSWERING
from worker.engine import Engine

if TYPE_CHECKING:
    from worker.engine.runtime import Runtime

log = logging.getLogger(__name__)


class EngineRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()

    @functools.cached_property
    def runtime(self) -> Runtime:
        """This worker's device and dtype, resolved once. Imported here: a webhook sender never loads torch."""
        from worker.engine.runtime import configure_threads, resolve_runtime

        configure_threads(self.settings.torch_threads)
        return resolve_runtime(self.settings.device, self.settings.dtype)

    def pass_limits(self) -> tuple[int, int]:
        """(rows, padded tokens) per forward pass on this worker's device: the settings', or the device's
        defaults. The batcher claims up to that many inputs per batch."""
        return self.runtime.pass_limits(self.settings.max_batch_size, self.settings.max_batch_tokens)

    def get(self, task: str) -> Engine:
        with self._lock:
            if task not in self._engines:
                self._engines[task] = self._load(task)
            return self._engines[task]

    def _load(self, task: str) -> Engine:
        from worker.engine.fill_mask import FillMaskEngine
        from worker.engine.question_answering import QuestionAnsweringEngine

        runtime = self.runtime
        rows, tokens = self.pass_limits()
        engine: Engine
        if task == TASK_FILL_MASK:
            engine = FillMaskEngine(self.settings.fill_mask_model, runtime, rows, tokens)
        elif task == TASK_QUESTION_ANSWERING:
            engine = QuestionAnsweringEngine(self.settings.qa_model, runtime, rows, tokens)
        else:
            raise ValueError(f"no engine for task {task!r}")
        engine.warm_up()
        log.info("loaded %s engine on %s (%s)", task, runtime.device, runtime.dtype)
        return engine
