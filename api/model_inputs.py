"""Checks that need the served model's tokenizer: the mask token, token counts, QA chunking, targets.

The API loads only `tokenizer.json` and two small JSON files with the `tokenizers` library — never torch or
transformers — from a local directory or the model hub, so it can answer 422 before a job is stored.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tokenizers import Tokenizer

from api.errors import ApiError, detail
from contract.requests import FillMaskRequest, QuestionAnsweringRequest
from contract.tokens import (
    MAX_QA_TOKENS_PER_INPUT,
    fill_mask_output_bytes,
    pack_qa_pairs,
    pack_token_ids,
    qa_chunk_count,
    target_ids,
    tokenizer_fingerprint,
)
from core.settings import Settings
from core.tasks import ModelUnavailable

#: A model that failed to load is tried again after this long, in seconds.
MODEL_RETRY_AFTER_S = 30


def model_unavailable(task: str, error: object) -> ApiError:
    """The 503 (with Retry-After) of a request that needs `task`'s model while it cannot be loaded."""
    return ApiError(503, "model_unavailable", f"the {task} model's tokenizer could not be loaded: {error}",
                    headers={"Retry-After": str(MODEL_RETRY_AFTER_S)})


@dataclass
class ServedModel:
    tokenizer: Tokenizer
    mask_token: str | None
    mask_id: int | None
    max_tokens: int
    #: `contract.tokens.tokenizer_fingerprint` of `tokenizer`, stamped on the token ids handed to the worker.
    fingerprint: bytes


@dataclass
class Checked:
    """What the model's checks found of one body, and — when they found no problem — what the worker needs of its
    inputs, packed by `contract.tokens.pack_token_ids` (fill-mask's token ids; QA's `pack_qa_pairs`)."""

    problems: list[dict[str, Any]]
    token_ids: bytes | None = None


#: How long the hub gets to accept a connection before it counts as unreachable, in seconds.
HUB_CONNECT_TIMEOUT_S = 2.0


def _hub_reachable() -> str | None:
    """None when the hub accepts connections; else why not. One quick look, where huggingface_hub itself retries
    for over 20 s before it gives up."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "the model hub is unreachable: HF_HUB_OFFLINE is set"
    endpoint = urlsplit(constants.ENDPOINT)
    try:
        socket.create_connection((endpoint.hostname or "", endpoint.port or 443), HUB_CONNECT_TIMEOUT_S).close()
    except OSError as error:
        return f"the model hub {endpoint.hostname} is unreachable ({error})"
    return None


def _read(model_id: str, filename: str) -> str | None:
    local = Path(model_id)
    if local.is_dir():
        path = local / filename
        return path.read_text("utf-8") if path.exists() else None
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError

    cached = try_to_load_from_cache(model_id, filename)
    if isinstance(cached, str):
        return Path(cached).read_text("utf-8")
    if cached is not None:  # the cache knows the hub has no such file
        return None
    unreachable = _hub_reachable()
    if unreachable:
        raise ModelUnavailable(f"{model_id} is neither a local directory nor in the cache, and {unreachable}")
    try:
        return Path(hf_hub_download(model_id, filename)).read_text("utf-8")
    except EntryNotFoundError:
        return None


def load_served_model(model_id: str) -> ServedModel:
    tokenizer_json = _read(model_id, "tokenizer.json")
    if tokenizer_json is None:
        raise ModelUnavailable(f"model {model_id} has no tokenizer.json")
    tokenizer = Tokenizer.from_str(tokenizer_json)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    config: dict[str, Any] = json.loads(_read(model_id, "config.json") or "{}")
    tokenizer_config: dict[str, Any] = json.loads(_read(model_id, "tokenizer_config.json") or "{}")
    mask_token = tokenizer_config.get("mask_token", "[MASK]")
    if isinstance(mask_token, dict):  # older files store an AddedToken
        mask_token = mask_token.get("content")
    mask_id = tokenizer.token_to_id(mask_token) if mask_token else None
    return ServedModel(tokenizer, mask_token, mask_id, int(config.get("max_position_embeddings", 512)),
                       tokenizer_fingerprint(tokenizer))


def _too_many(count: int, limit: int, loc: list[str | int]) -> list[dict[str, Any]]:
    return [detail(loc, f"has {count} entries; at most {limit} per job")] if count > limit else []


def _chars(texts: list[str], limit: int, loc: list[str | int]) -> list[dict[str, Any]]:
    return [
        detail([*loc, i], f"has {len(text)} characters; at most {limit}")
        for i, text in enumerate(texts)
        if len(text) > limit
    ]


def check_fill_mask(body: FillMaskRequest, model: ServedModel, settings: Settings) -> Checked:
    return check_fill_masks([body], model, settings)[0]


def check_fill_masks(bodies: list[FillMaskRequest], model: ServedModel, settings: Settings) -> list[Checked]:
    """The problems of each body, and the token ids of those without; the texts of all of them tokenized in one
    call (a batch's lines come many at a time: a call per line would cost its thread pool's start-up each
    time)."""
    loc: list[str | int] = ["inputs", "input_string"]
    problems = [_too_many(len(body.inputs.input_string), settings.max_inputs_per_job, loc)
                + _chars(body.inputs.input_string, settings.max_chars_per_input, loc) for body in bodies]
    checked = [i for i, found in enumerate(problems) if not found]
    token_ids: dict[int, bytes] = {}
    encodings = iter(model.tokenizer.encode_batch_fast([text for i in checked
                                                        for text in bodies[i].inputs.input_string]))
    for i in checked:
        body, found = bodies[i], problems[i]
        texts, targets = body.inputs.input_string, body.parameters.targets
        target_count = len(target_ids(model.tokenizer, targets)) if targets is not None else None
        if target_count == 0:
            found.append(detail(["parameters", "targets"], "no target is a token of the model's vocabulary"))
        # As the engine does: with targets, an input gets at most as many predictions per mask as there are targets.
        top_k = min(body.parameters.top_k, target_count or body.parameters.top_k)
        output_bytes = 0
        job_ids: list[list[int]] = []
        for index, text in enumerate(texts):
            ids = next(encodings).ids
            job_ids.append(ids)
            masks = ids.count(model.mask_id) if model.mask_id is not None else 0
            if masks == 0:
                found.append(detail([*loc, index], f"has no mask token; put {model.mask_token} where a word goes"))
            elif masks > settings.max_masks_per_input:
                found.append(detail([*loc, index], f"has {masks} mask tokens; at most {settings.max_masks_per_input}"))
            elif len(ids) > model.max_tokens:
                found.append(
                    detail([*loc, index], f"has {len(ids)} tokens; the model takes at most {model.max_tokens}"))
            output_bytes += fill_mask_output_bytes(len(text), masks, top_k)
        if not found and output_bytes > settings.max_output_bytes:
            found.append(detail(["parameters", "top_k"], (
                f"asks for about {output_bytes:,} bytes of output (masks × top_k × the input's length, over every "
                f"input); at most {settings.max_output_bytes:,} per job: lower top_k, or send fewer inputs per job")))
        if not found:
            token_ids[i] = pack_token_ids(model.fingerprint, job_ids)
    return [Checked(found, token_ids.get(i)) for i, found in enumerate(problems)]


def check_question_answering(body: QuestionAnsweringRequest, model: ServedModel, settings: Settings) -> Checked:
    return check_question_answerings([body], model, settings)[0]


def _qa_bounds(body: QuestionAnsweringRequest, model: ServedModel, settings: Settings) -> list[dict[str, Any]]:
    questions, contexts, params = body.inputs.question, body.inputs.context, body.parameters
    problems = _too_many(len(questions), settings.max_inputs_per_job, ["inputs", "question"])
    problems += _chars(questions, settings.max_chars_per_input, ["inputs", "question"])
    problems += _chars(contexts, settings.max_chars_per_input, ["inputs", "context"])
    if params.max_seq_len > model.max_tokens:
        message = f"is {params.max_seq_len}; the model takes at most {model.max_tokens}"
        problems.append(detail(["parameters", "max_seq_len"], message))
    return problems


def check_question_answerings(bodies: list[QuestionAnsweringRequest], model: ServedModel,
                              settings: Settings) -> list[Checked]:
    """The problems of each body, and what the worker needs of the pairs of those without
    (`contract.tokens.pack_qa_pairs`); every question and context of all of them tokenized in one call."""
    problems = [_qa_bounds(body, model, settings) for body in bodies]
    checked = [i for i, found in enumerate(problems) if not found]
    token_ids: dict[int, bytes] = {}
    # With offsets (not `encode_batch_fast`): the worker cuts the chunks and reads the answers from these.
    encoded = iter(model.tokenizer.encode_batch(
        [text for i in checked for text in (*bodies[i].inputs.question, *bodies[i].inputs.context)],
        add_special_tokens=False))
    for i in checked:
        body, found = bodies[i], problems[i]
        params, pairs = body.parameters, len(body.inputs.question)
        encodings = [next(encoded) for _ in range(2 * pairs)]
        lengths = [len(encoding.ids) for encoding in encodings]
        assert params.doc_stride is not None  # filled in by the schema
        for index in range(pairs):
            q_len, c_len = lengths[index], lengths[pairs + index]
            if q_len == 0:
                found.append(detail(["inputs", "question", index], "has no tokens"))
                continue
            if c_len == 0:
                found.append(detail(["inputs", "context", index], "has no tokens"))
                continue
            try:
                chunks = qa_chunk_count(q_len, c_len, params.max_seq_len, params.doc_stride)
            except ValueError as error:
                found.append(detail(["inputs", "question", index], str(error)))
                continue
            if chunks * params.max_seq_len > MAX_QA_TOKENS_PER_INPUT:
                found.append(detail(
                    ["inputs", "context", index],
                    f"splits into {chunks} chunks of {params.max_seq_len} tokens (doc_stride={params.doc_stride}), "
                    f"{chunks * params.max_seq_len:,} tokens; at most {MAX_QA_TOKENS_PER_INPUT:,} per pair"))
        if not found:
            token_ids[i] = pack_qa_pairs(model.fingerprint, encodings[:pairs], encodings[pairs:])
    return [Checked(found, token_ids.get(i)) for i, found in enumerate(problems)]
