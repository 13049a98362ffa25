"""`GET /openapi.json` (OpenAPI 3.1), generated from the pydantic models that validate requests
(contract/requests.py) and describe responses (contract/responses.py); `GET /docs`, Swagger UI over it."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import flask_openapi_swagger
from flask import Blueprint, Response, jsonify, send_from_directory
from pydantic import BaseModel

from api.waiting import MAX_WAIT_S
from contract import responses as r
from contract.evaluations import EvaluationRequest
from contract.requests import BatchRequest, FillMaskRequest, QuestionAnsweringRequest

bp = Blueprint("openapi", __name__)

SWAGGER_ASSETS = Path(flask_openapi_swagger.__file__).parent / "templates" / "swagger"
REF = "#/components/schemas/{model}"


class _Components:
    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def ref(self, model: type[BaseModel]) -> dict[str, str]:
        schema = model.model_json_schema(ref_template=REF)
        for name, definition in schema.pop("$defs", {}).items():
            self.schemas[name] = definition
        self.schemas[model.__name__] = schema
        return {"$ref": REF.format(model=model.__name__)}


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        answer["headers"] = headers
    return answer


@functools.cache
def build_spec() -> dict[str, Any]:
    c = _Components()
    error = c.ref(r.Error)
    job = c.ref(r.JobObject)

    def errors(*statuses: int) -> dict[str, Any]:
        described = {400: "Malformed request", 401: "Missing or unknown API key", 404: "No such object for this key",
                     409: "Conflict: an Idempotency-Key reused with another body, or a batch's line cancelled alone",
                     413: "Body too large",
                     414: "Request line too long", 415: "Body not sent as application/json",
                     431: "Request headers too large",
                     422: "Invalid body or parameters; `details` names each field and input index",
                     429: "Rate limit or in-flight cap reached; see Retry-After", 503: "Database or model unavailable"}
        retry_after = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}}
        return {str(s): _json(error, described[s], retry_after if s in (429, 503) else None) for s in statuses}

    location = {"Location": {"schema": {"type": "string"}, "description": "/v1/jobs/{id}"}}
    submit_parameters = [
        {"name": "Prefer", "in": "header", "required": False, "schema": {"type": "string", "examples": ["wait=30"]},
         "description": f"`wait` or `wait=N`: hold the request until the job finishes or N seconds pass "
                        f"(at most {MAX_WAIT_S})"},
        {"name": "Idempotency-Key", "in": "header", "required": False,
         "schema": {"type": "string", "minLength": 1, "maxLength": 255},
         "description": "The same key and body return the same job for 24 h; another body is a 409"},
    ]

    by_id = {"job_id": "$response.body#/id"}
    links = {"GetJob": {"operationId": "get_job", "parameters": by_id},
             "CancelJob": {"operationId": "cancel_job", "parameters": by_id},
             "ListDeliveries": {"operationId": "list_deliveries", "parameters": by_id}}

    def submit(task: str, body: type[BaseModel]) -> dict[str, Any]:
        accepted = _json(job, "Accepted: the job as stored", location)
        finished = _json(job, "Finished within Prefer: wait (or an idempotent replay of a finished job)", location)
        accepted["links"] = finished["links"] = links
        return {"post": {
            "operationId": f"submit_{task.replace('-', '_')}", "summary": f"Submit a {task} job",
            "tags": ["jobs"], "parameters": submit_parameters,
            "requestBody": {"required": True, "content": {"application/json": {"schema": c.ref(body)}}},
            "responses": {"202": accepted, "200": finished, **errors(401, 409, 413, 415, 422, 429, 503)},
        }}

    job_id = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
    event_id = {"name": "event_id", "in": "path", "required": True, "schema": {"type": "string"}}
    paths: dict[str, Any] = {
        "/v1/fill-mask": submit("fill-mask", FillMaskRequest),
        "/v1/question-answering": submit("question-answering", QuestionAnsweringRequest),
        "/v1/jobs/{job_id}": {"get": {
            "operationId": "get_job", "summary": "A job", "tags": ["jobs"], "parameters": [job_id],
            "responses": {"200": _json(job, "The job"), **errors(401, 404, 429, 503)}}},
        "/v1/jobs": {"get": {
            "operationId": "list_jobs", "summary": "The calling key's jobs, newest first", "tags": ["jobs"],
            "parameters": [
                {"name": "status", "in": "query", "schema": {"enum": ["queued", "running", "succeeded", "failed",
                                                                      "canceled"]}},
                {"name": "task", "in": "query", "schema": {"enum": ["fill-mask", "question-answering"]}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                {"name": "include", "in": "query", "schema": {"enum": ["output"]},
                 "description": "`output`: each job with its output (a page then stops at about 8 MB of outputs)"},
                {"name": "cursor", "in": "query", "schema": {"type": "string"},
                 "description": "`next_cursor` of the previous page"},
            ],
            "responses": {"200": _json(c.ref(r.JobList), "A page of jobs"), **errors(401, 422, 429, 503)}}},
        "/v1/jobs/{job_id}/cancel": {"post": {
            "operationId": "cancel_job",
            "summary": "Cancel a job (a finished job stays as it is; a batch's line is cancelled with its batch: 409)",
            "tags": ["jobs"], "parameters": [job_id],
            "responses": {"200": _json(job, "The job"), **errors(401, 404, 409, 429, 503)}}},
        "/v1/jobs/{job_id}/deliveries": {"get": {
            "operationId": "list_deliveries", "summary": "The job's webhook events and every attempt",
            "tags": ["webhooks"], "parameters": [job_id],
            "responses": {"200": _json(c.ref(r.DeliveryList), "Events"), **errors(401, 404, 429, 503)}}},
        "/v1/jobs/{job_id}/deliveries/{event_id}/retry": {"post": {
            "operationId": "retry_delivery", "summary": "Send an event again now, under the same webhook-id",
            "tags": ["webhooks"], "parameters": [job_id, event_id],
            "responses": {"202": _json(c.ref(r.Delivery), "The event, due now"), **errors(401, 404, 429, 503)}}},
        "/v1/webhooks/secret": {"get": {
            "operationId": "get_webhook_secret", "summary": "The calling key's signing secret", "tags": ["webhooks"],
            "responses": {"200": _json(c.ref(r.WebhookSecret), "The secret"), **errors(401, 429, 503)}}},
        "/v1/webhooks/secret/rotate": {"post": {
            "operationId": "rotate_webhook_secret", "tags": ["webhooks"],
            "summary": "A new signing secret; the old one keeps signing beside it for 24 h",
            "responses": {"200": _json(c.ref(r.RotatedSecret), "The new secret"), **errors(401, 429, 503)}}},
        **_file_paths(c, errors),
        "/healthz": {"get": {"operationId": "healthz", "summary": "Liveness", "tags": ["health"], "security": [],
                             "responses": {"200": _json(c.ref(r.Health), "Alive")}}},
        "/readyz": {"get": {"operationId": "readyz", "summary": "Database and Redis reachable now", "tags": ["health"],
                            "security": [],
                            "responses": {"200": _json(c.ref(r.Readiness), "Ready"),
                                          "503": _json(c.ref(r.Readiness), "Not ready")}}},
    }
    # gunicorn answers a malformed request, a request line or headers over its limits itself, before any route (in
    # the error shape: `api/gunicorn_conf.py`), so every operation may answer 400, 414 or 431: a long query on a
    # list's GET came back 414, undocumented (schemathesis, 400 examples an operation).
    refusals = errors(400, 414, 431)
    for operations in paths.values():
        for operation in operations.values():
            operation["responses"] = {**operation["responses"], **refusals}
    return {
        "openapi": "3.1.0",
        "info": {"title": "distilq", "version": "1",
                 "description": "Asynchronous DistilBERT inference: fill-mask and extractive question answering."},
        "paths": paths,
        "components": {"schemas": c.schemas,
                       "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer",
                                                      "description": "`distilq keys create` prints a key"}}},
        "security": [{"apiKey": []}],
    }


def _file_paths(c: _Components, errors: Any) -> dict[str, Any]:
    """Files, batches (the OpenAI Batch API's shape), evaluations, and the key's activity."""
    file, batch, evaluation = c.ref(r.FileObject), c.ref(r.BatchObject), c.ref(r.EvaluationObject)

    def path_id(name: str) -> dict[str, Any]:
        return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}

    def owned(kind: str, article: str, tag: str, schema: dict[str, Any]) -> dict[str, Any]:
        """GET /v1/{tag}/{id} and POST /v1/{tag}/{id}/cancel of one of the key's batches or evaluations."""
        name = f"{kind}_id"
        found = {"200": _json(schema, f"The {kind}"), **errors(401, 404, 429, 503)}
        return {
            f"/v1/{tag}/{{{name}}}": {"get": {
                "operationId": f"get_{kind}", "summary": f"{article.capitalize()} {kind}",
                "tags": [tag], "parameters": [path_id(name)], "responses": found}},
            f"/v1/{tag}/{{{name}}}/cancel": {"post": {
                "operationId": f"cancel_{kind}",
                "summary": f"Cancel {article} {kind}: what has not started does not run", "tags": [tag],
                "parameters": [path_id(name)], "responses": found}},
        }

    page = [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
            {"name": "after", "in": "query", "schema": {"type": "string"},
             "description": "`last_id` of the previous page"}]
    upload = {"type": "object", "required": ["file", "purpose"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "JSONL: one request (batch) or example "
                                                                        "(evaluation) per line"},
        "purpose": {"enum": ["batch", "evaluation"]}}}
    return {
        "/v1/files": {
            "post": {"operationId": "upload_file", "summary": "Upload a batch's or an evaluation's file",
                     "tags": ["files"],
                     "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": upload}}},
                     "responses": {"200": _json(file, "The file"), **errors(401, 413, 415, 422, 429, 503)}},
            "get": {"operationId": "list_files", "summary": "The calling key's files, newest first", "tags": ["files"],
                    "parameters": [*page, {"name": "purpose", "in": "query",
                                           "schema": {"enum": list(r.FILE_PURPOSES)}}],
                    "responses": {"200": _json(c.ref(r.FileList), "Files"), **errors(401, 422, 429, 503)}}},
        "/v1/files/{file_id}": {
            "get": {"operationId": "get_file", "summary": "A file", "tags": ["files"],
                    "parameters": [path_id("file_id")],
                    "responses": {"200": _json(file, "The file"), **errors(401, 404, 429, 503)}},
            "delete": {"operationId": "delete_file", "summary": "Delete a file: its bytes go at once",
                       "tags": ["files"], "parameters": [path_id("file_id")],
                       "responses": {"200": _json(c.ref(r.FileDeleted), "The file is deleted"),
                                     **errors(401, 404, 429, 503)}}},
        "/v1/files/{file_id}/content": {"get": {
            "operationId": "get_file_content", "summary": "A file's bytes", "tags": ["files"],
            "parameters": [path_id("file_id")],
            "responses": {"200": {"description": "The bytes", "content": {
                "application/jsonl": {"schema": {"type": "string"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                **errors(401, 404, 429, 503)}}},
        "/v1/batches": {
            "post": {"operationId": "create_batch", "summary": "Run a file of requests as a batch",
                     "tags": ["batches"], "requestBody": {"required": True, "content": {
                         "application/json": {"schema": c.ref(BatchRequest)}}},
                     "responses": {"200": _json(batch, "The batch: in progress, or failed naming its bad lines"),
                                   **errors(401, 413, 415, 422, 429, 503)}},
            "get": {"operationId": "list_batches", "summary": "The calling key's batches, newest first",
                    "tags": ["batches"], "parameters": page,
                    "responses": {"200": _json(c.ref(r.BatchList), "Batches"), **errors(401, 422, 429, 503)}}},
        **owned("batch", "a", "batches", batch),
        "/v1/evaluations": {
            "post": {"operationId": "create_evaluation", "summary": "Evaluate the served model on a file",
                     "tags": ["evaluations"], "requestBody": {"required": True, "content": {
                         "application/json": {"schema": c.ref(EvaluationRequest)}}},
                     "responses": {"202": _json(evaluation, "The evaluation, queued"),
                                   "200": _json(evaluation, "The evaluation, failed: its file's bad lines"),
                                   **errors(401, 413, 415, 422, 429, 503)}},
            "get": {"operationId": "list_evaluations", "summary": "The calling key's evaluations, newest first",
                    "tags": ["evaluations"], "parameters": page,
                    "responses": {"200": _json(c.ref(r.EvaluationList), "Evaluations"),
                                  **errors(401, 422, 429, 503)}}},
        **owned("evaluation", "an", "evaluations", evaluation),
        "/v1/stats": {"get": {
            "operationId": "get_stats", "summary": "The calling key's jobs queued and running, finished per second",
            "tags": ["jobs"], "responses": {"200": _json(c.ref(r.Stats), "Now"), **errors(401, 429, 503)}}},
    }


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(build_spec())


DOCS_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>distilq API</title>
<link rel="stylesheet" href="/docs/assets/css/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/docs/assets/js/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui", deepLinking: true});</script>
</body></html>"""


@bp.get("/docs")
def docs() -> Response:
    return Response(DOCS_PAGE, mimetype="text/html")


@bp.get("/docs/assets/<path:filename>")
def docs_assets(filename: str) -> Response:
    return send_from_directory(SWAGGER_ASSETS, filename, max_age=86400)
