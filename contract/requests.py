"""Request bodies of the two POST routes (the Azure ML online-endpoint format), validated with pydantic.

Only structure, types and ranges live here; what needs the model's tokenizer (the mask token, token counts)
is checked by the API against the model it serves.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, model_validator

from contract.tokens import stride_problem

#: Largest `top_k` accepted: more candidates than anyone reads, and output rows grow with it.
MAX_TOP_K = 100
MAX_TARGETS = 100
#: DistilBERT's position embeddings: no sequence may be longer.
MAX_MODEL_TOKENS = 512

EventName = Literal["start", "completed"]
DEFAULT_EVENTS: list[EventName] = ["start", "completed"]


class _Body(BaseModel):
    # Unknown fields are an error, not ignored: a typo in a parameter name must not silently fall back.
    model_config = ConfigDict(extra="forbid", strict=True)


class _JobEnvelope(_Body):
    webhook: StrictStr | None = Field(default=None, max_length=2048)
    webhook_events_filter: list[EventName] = Field(default_factory=lambda: list(DEFAULT_EVENTS), min_length=1)
    metadata: dict[str, Any] = Field(default_factory=dict)


class FillMaskInputs(_Body):
    input_string: list[StrictStr] = Field(min_length=1)


class FillMaskParameters(_Body):
    top_k: StrictInt = Field(default=5, ge=1, le=MAX_TOP_K)
    targets: (
        Annotated[list[Annotated[StrictStr, Field(min_length=1)]], Field(min_length=1, max_length=MAX_TARGETS)]
        | None
    ) = None


class FillMaskRequest(_JobEnvelope):
    inputs: FillMaskInputs
    parameters: FillMaskParameters = Field(default_factory=FillMaskParameters)

    def n_inputs(self) -> int:
        """Sequences the job puts through the model: one per string."""
        return len(self.inputs.input_string)


class QuestionAnsweringInputs(_Body):
    question: list[StrictStr] = Field(min_length=1)
    context: list[StrictStr] = Field(min_length=1)

    @model_validator(mode="after")
    def _paired(self) -> QuestionAnsweringInputs:
        if len(self.question) != len(self.context):
            raise ValueError(
                f"inputs.question has {len(self.question)} entries and inputs.context has "
                f"{len(self.context)}: they are read as pairs and must have the same length"
            )
        return self


class QuestionAnsweringParameters(_Body):
    """Defaults as transformers 4.x's QuestionAnsweringPipeline."""

    top_k: StrictInt = Field(default=1, ge=1, le=MAX_TOP_K)
    #: Absent means the pipeline's default: min(max_seq_len // 2, 128).
    doc_stride: StrictInt | None = Field(default=None, ge=0, le=MAX_MODEL_TOKENS)
    max_answer_len: StrictInt = Field(default=15, ge=1, le=MAX_MODEL_TOKENS)
    max_seq_len: StrictInt = Field(default=384, ge=8, le=MAX_MODEL_TOKENS)
    #: Accepted for compatibility; the 4.x pipeline's fast-tokenizer path does not use it either.
    max_question_len: StrictInt = Field(default=64, ge=1, le=MAX_MODEL_TOKENS)
    handle_impossible_answer: StrictBool = False
    align_to_words: StrictBool = True

    @model_validator(mode="after")
    def _stride_fits(self) -> QuestionAnsweringParameters:
        if self.doc_stride is None:
            self.doc_stride = min(self.max_seq_len // 2, 128)
        problem = stride_problem(self.max_seq_len, self.doc_stride)
        if problem is not None:
            raise ValueError(problem)
        return self


class QuestionAnsweringRequest(_JobEnvelope):
    inputs: QuestionAnsweringInputs
    parameters: QuestionAnsweringParameters = Field(default_factory=QuestionAnsweringParameters)

    def n_inputs(self) -> int:
        """Sequences the job puts through the model: one per question/context pair (before chunking)."""
        return len(self.inputs.question)


JobRequest = FillMaskRequest | QuestionAnsweringRequest


def stored_inputs(body: JobRequest) -> tuple[dict[str, Any], dict[str, Any]]:
    """A body's inputs and parameters as a job row stores them (parameters left unset are left out): one way for a
    submitted job and a batch's line alike."""
    return body.inputs.model_dump(), body.parameters.model_dump(exclude_none=True)


#: The routes a batch's line may name (`url`), and the `endpoint` a batch may fix for all its lines.
BATCH_ROUTES = ("/v1/fill-mask", "/v1/question-answering")


class BatchRequest(_Body):
    """POST /v1/batches (the OpenAI Batch API's body, with distilq's `webhook`)."""

    input_file_id: StrictStr = Field(min_length=1, max_length=64)
    endpoint: Literal["/v1/fill-mask", "/v1/question-answering"] | None = None
    completion_window: Literal["24h"] = "24h"
    webhook: StrictStr | None = Field(default=None, max_length=2048)
    metadata: dict[str, StrictStr] | None = None
