"""The evaluation resource's bodies: the request (POST /v1/evaluations) and the lines of an evaluation file, one
schema per task, and the metrics each task reports. Structure and ranges only; what needs the model's tokenizer
(the mask, the label's token, token counts) is checked by the API against the model it serves."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from contract.requests import MAX_TOP_K

#: What each task can report: fill-mask's ranking metrics come from labelled lines, its language-model metrics
#: from plain-text lines; a file may hold both kinds.
METRICS: dict[str, tuple[str, ...]] = {
    "fill-mask": ("accuracy", "top_k_accuracy", "mrr", "pseudo_perplexity", "mlm_loss"),
    "question-answering": ("exact_match", "f1"),
}
#: A fill-mask line with a label is scored by rank; one without by its pseudo-log-likelihood.
LABELLED_METRICS = ("accuracy", "top_k_accuracy", "mrr")
#: `parameters.score` of a plain-text fill-mask example's job: the worker's engine scores the text rather than
#: filling a mask (set by an evaluation's creation only; the POST routes refuse the field).
SCORE_PSEUDO_LOG_LIKELIHOOD = "pseudo_log_likelihood"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class EvaluationConfig(_Strict):
    #: Predictions ranked per masked example: `top_k_accuracy` and `mrr` look this deep.
    top_k: StrictInt = Field(default=5, ge=1, le=MAX_TOP_K)
    #: Evaluate a seeded random sample of this many lines (all when None or more than there are).
    max_samples: StrictInt | None = Field(default=None, ge=1)
    #: Seeds the sample and the masking of the MLM loss.
    seed: StrictInt = Field(default=0, ge=0, le=2**31 - 1)


class EvaluationRequest(_Strict):
    """POST /v1/evaluations."""

    task: Literal["fill-mask", "question-answering"]
    #: The served model of the task (the default); another is refused, naming the one served.
    model: StrictStr | None = Field(default=None, max_length=255)
    input_file_id: StrictStr = Field(min_length=1, max_length=64)
    #: Which of the task's metrics to report; all of them by default.
    metrics: list[StrictStr] | None = Field(default=None, min_length=1)
    config: EvaluationConfig = Field(default_factory=EvaluationConfig)
    webhook: StrictStr | None = Field(default=None, max_length=2048)
    metadata: dict[str, Any] | None = None

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, metrics: list[str] | None, info: ValidationInfo) -> list[str] | None:
        task = str(info.data.get("task"))  # absent when it failed its own check: then no metric is known
        unknown = [name for name in metrics or [] if task in METRICS and name not in METRICS[task]]
        if unknown:
            raise ValueError(f"unknown metric {unknown[0]!r} for {task}; one of {', '.join(METRICS[task])}")
        return metrics


class FillMaskExample(_Strict):
    """`{"text": "... [MASK] ...", "label": "word"}` (ranked), or `{"text": "..."}` (pseudo-perplexity)."""

    text: StrictStr = Field(min_length=1)
    label: StrictStr | None = Field(default=None, min_length=1)


class SquadAnswers(_Strict):
    text: list[StrictStr] = Field(min_length=1)
    answer_start: list[StrictInt]

    @model_validator(mode="after")
    def _paired(self) -> SquadAnswers:
        if len(self.answer_start) != len(self.text):
            raise ValueError("answers.text and answers.answer_start must have the same length")
        return self


class QuestionAnsweringExample(BaseModel):
    """A SQuAD line: `{"question", "context", "answers": {"text": [...], "answer_start": [...]}}`; the `id` and
    `title` of a SQuAD export are kept (the `id` is echoed in the output file), nothing else is allowed."""

    model_config = ConfigDict(extra="forbid", strict=True)

    question: StrictStr = Field(min_length=1)
    context: StrictStr = Field(min_length=1)
    answers: SquadAnswers
    id: StrictStr | None = None
    title: StrictStr | None = None

    @field_validator("question", "context")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


EXAMPLES: dict[str, type[BaseModel]] = {"fill-mask": FillMaskExample, "question-answering": QuestionAnsweringExample}
