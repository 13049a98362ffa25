"""Reads of a key's batches and evaluations (the file-based resources): one by id — another key's is as absent as
a missing one — and a page of them, newest first, after the id the previous page ended with."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.tables import Batch, Evaluation

Owned = TypeVar("Owned", Batch, Evaluation)


def own(session: Session, model: type[Owned], api_key_id: str, object_id: str) -> Owned | None:
    return session.scalars(select(model).where(model.id == object_id, model.api_key_id == api_key_id)).one_or_none()


def newest_first(session: Session, model: type[Owned], api_key_id: str, limit: int, after: str | None) -> list[Owned]:
    query = select(model).where(model.api_key_id == api_key_id)
    if after is not None:
        last = session.get(model, after)
        if last is not None:
            query = query.where((model.created_at < last.created_at)
                                | ((model.created_at == last.created_at) & (model.id < last.id)))
    return list(session.scalars(query.order_by(model.created_at.desc(), model.id.desc()).limit(limit)))
