"""The engines of one worker process, each loaded on first use (so after any fork) and kept for its life: in this
process, or with their device stage in the worker's device process (`worker/engine/device_process.py`)."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from core.settings import Settings
from core.tasks import TASK_FILL_MASK, TASK_QUESTION_ANSWERING
from worker.engine import Engine

if TYPE_CHECKING:
    from worker.engine.device_process import DeviceProcess
    from worker.engine.runtime import Runtime

log = logging.getLogger(__name__)


class EngineRegistry:
    def __init__(self, settings: Settings, tasks: Sequence[str] = ()) -> None:
        self.settings = settings
        #: The tasks this worker serves: a device process loads all of their models at once.
        self.tasks = list(tasks)
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()

    @functools.cached_property
    def runtime(self) -> Runtime:
        """This worker's device and dtype, resolved once. Imported here: a webhook sender never loads torch."""
        from worker.engine.runtime import configure_threads, resolve_runtime

        runtime = resolve_runtime(self.settings.device, self.settings.dtype, self.settings.attention)
        configure_threads(self.settings.torch_threads, runtime)
        return runtime

    def pass_limits(self) -> tuple[int, int]:
        """(rows, padded tokens) per forward pass on this worker's device: the settings', or the device's
        defaults. The batcher claims up to that many inputs per batch."""
        return self.runtime.pass_limits(self.settings.max_batch_size, self.settings.max_batch_tokens)

    @property
    def in_device_process(self) -> bool:
        """Whether the engines' device stage runs in a device process: as `DISTILQ_DEVICE_PROCESS` says, else on
        CUDA (whose kernels are launched one Python call at a time, behind the worker's other threads)."""
        chosen = self.settings.device_process
        return self.runtime.is_cuda if chosen is None else chosen

    @functools.cached_property
    def device_process(self) -> DeviceProcess:
        from worker.engine.device_process import DeviceProcess

        return DeviceProcess(self.settings, self.tasks or [TASK_FILL_MASK, TASK_QUESTION_ANSWERING])

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
        engine: FillMaskEngine | QuestionAnsweringEngine
        if task == TASK_FILL_MASK:
            engine = FillMaskEngine(self.settings.fill_mask_model, runtime, rows, tokens)
        elif task == TASK_QUESTION_ANSWERING:
            engine = QuestionAnsweringEngine(self.settings.qa_model, runtime, rows, tokens)
        else:
            raise ValueError(f"no engine for task {task!r}")
        if self.in_device_process:
            from worker.engine.device_process import RemoteEngine

            # This engine prepares and finishes batches here with its tokenizer; its weights load there only.
            remote = RemoteEngine(engine, self.device_process)
            log.info("%s engine's device stage in the device process (pid %d)", task,
                     self.device_process.process.pid or 0)
            return remote
        engine.warm_up()
        log.info("loaded %s engine on %s (%s)", task, runtime.device, runtime.dtype)
        return engine
