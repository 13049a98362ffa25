"""Routes of the file resource (the OpenAI Files API's shape): upload a batch's input, read a file's bytes, delete
a file."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request, stream_with_context
from werkzeug.exceptions import RequestEntityTooLarge

from api.deps import authenticate, close_db, current_key, db, read_db
from api.errors import ApiError, detail, drain_body, invalid
from api.pages import page
from api.state import app_state
from api.validation import query_choice
from contract.responses import FILE_PURPOSES
from core.clock import utcnow
from models.tables import File
from store import files

bp = Blueprint("files", __name__, url_prefix="/v1")
bp.before_request(authenticate)
bp.teardown_request(close_db)

#: Room for the multipart envelope (boundaries, the purpose field) around the file itself.
MULTIPART_SLACK = 64 * 1024


def own_file(file_id: str) -> File:
    file = files.own_file(read_db(), current_key().id, file_id)
    if file is None:
        raise ApiError(404, "not_found", f"no file {file_id}")
    return file


@bp.post("/files")
def upload() -> Response:
    """multipart/form-data with `file` and `purpose` (`batch` or `evaluation`). Werkzeug spools the upload to a
    temporary file past 500 KB; it is copied into the database a part at a time."""
    limit = app_state().settings.max_file_bytes
    request.max_content_length = limit + MULTIPART_SLACK
    try:
        form, uploads = request.form, request.files
    except RequestEntityTooLarge:
        drain_body()
        raise ApiError(413, "file_too_large", f"the file is larger than {limit} bytes") from None
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "send the file as multipart/form-data, in the field 'file'")
    problems = []
    purpose = form.get("purpose")
    if purpose not in files.UPLOAD_PURPOSES:
        problems.append(detail(["purpose"], f"must be one of {', '.join(files.UPLOAD_PURPOSES)}"))
    upload = uploads.get("file")
    if upload is None:
        problems.append(detail(["file"], "is required: the file's bytes, as a multipart file field"))
    if problems:
        raise invalid(problems)
    assert upload is not None
    session = db()
    try:
        file = files.store_file(session, api_key_id=current_key().id, purpose=str(purpose),
                                filename=(upload.filename or "upload.jsonl")[:255], stream=upload.stream,
                                max_bytes=limit, now=utcnow())
    except files.FileTooLarge:
        session.rollback()
        raise ApiError(413, "file_too_large", f"the file is larger than {limit} bytes") from None
    session.commit()
    return jsonify(files.file_to_public(file))


@bp.get("/files")
def list_files() -> Response:
    purpose = query_choice("purpose", FILE_PURPOSES)
    return page(lambda limit, after: files.list_files(read_db(), current_key().id, limit, after, purpose),
                files.file_to_public)


@bp.get("/files/<id:file_id>")
def get_file(file_id: str) -> Response:
    return jsonify(files.file_to_public(own_file(file_id)))


@bp.delete("/files/<id:file_id>")
def delete(file_id: str) -> Response:
    """The file's bytes deleted at once; it shows no more. A batch or evaluation that has read it keeps what it read
    (its lines are its jobs); one still checking it fails, naming where its bytes ended."""
    session = db()
    deleted = files.delete_file(session, current_key().id, file_id, utcnow())
    session.commit()
    if not deleted:
        raise ApiError(404, "not_found", f"no file {file_id}")
    return jsonify({"id": file_id, "object": "file", "deleted": True})


@bp.get("/files/<id:file_id>/content")
def content(file_id: str) -> Response:
    """The bytes, streamed a part at a time (each part read in a short session of its own)."""
    file = own_file(file_id)
    return Response(stream_with_context(files.read_parts(app_state().read_sessions, file.id)),
                    mimetype="application/jsonl" if file.filename.endswith(".jsonl") else "application/octet-stream",
                    headers={"Content-Length": str(file.bytes)})
