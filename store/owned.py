"""Reads of a key's batches, evaluations and files: one by id — another key's is as absent as a missing one — and a
page of them, newest first, after the id the previous page ended with."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.tables import Batch, Evaluation, File

Owned = TypeVar("Owned", Batch, Evaluation, File)


def own(session: Session, model: type[Owned], api_key_id: str, object_id: str) -> Owned | None:
    return session.scalars(select(model).where(model.id == object_id, model.api_key_id == api_key_id)).one_or_none()


def newest_first(session: Session, model: type[Owned], api_key_id: str, limit: int, after: str | None,
                 *where: Any) -> list[Owned]:
    """`limit` of the key's objects that meet `where`, newest first, after the one named `after`."""
    query = select(model).where(model.api_key_id == api_key_id, *where)
    if after is not None:
        last = session.get(model, after)
        if last is not None:
            query = query.where((model.created_at < last.created_at)
                                | ((model.created_at == last.created_at) & (model.id < last.id)))
    return list(session.scalars(query.order_by(model.created_at.desc(), model.id.desc()).limit(limit)))
