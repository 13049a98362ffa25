"""`models.db.ManyRows`: a statement over many rows on the driver stores exactly what SQLAlchemy's own executemany
stores, converting a value the rows share once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Column, Integer, MetaData, String, Table, bindparam, func, insert, select, update
from sqlalchemy.engine import Dialect

from models.db import ManyRows, UTCDateTime, make_engine


class CountedTime(UTCDateTime):
    """UTCDateTime counting the values it converts for the database."""

    cache_ok = True
    converted = 0

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        CountedTime.converted += 1
        return super().process_bind_param(value, dialect)


def _table(name: str, metadata: MetaData) -> Table:
    return Table(name, metadata, Column("id", Integer, primary_key=True), Column("at", CountedTime()),
                 Column("data", JSON), Column("note", String, nullable=True))


def _rows(at: datetime) -> list[dict[str, Any]]:
    return [{"id": i, "at": at, "data": {"n": i, "text": "é\u2028"} if i % 3 else None, "note": None if i % 2 else "x"}
            for i in range(1, 8)]


def test_many_rows_store_what_sqlalchemy_stores_converting_a_shared_value_once(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'many.db'}")
    metadata = MetaData()
    ours, theirs = _table("ours", metadata), _table("theirs", metadata)
    metadata.create_all(engine)
    at = datetime(2026, 12, 2, 3, 4, 5, 678901, tzinfo=UTC)
    with engine.begin() as connection:
        connection.execute(insert(theirs), _rows(at))
        CountedTime.converted = 0
        writer = ManyRows(insert(ours), connection.dialect, ("id", "at", "data", "note"))
        assert writer.run(connection, iter(_rows(at)), per_call=3) == 7
        assert CountedTime.converted == 1  # the rows share one `at`: converted once
        # an UPDATE naming its own parameters, its rows each their own time
        change = update(ours).where(ours.c.id == bindparam("b_id")).values(at=bindparam("b_at"),
                                                                            note=bindparam("b_note"))
        later = [{"b_id": i, "b_at": datetime(2026, 12, 3, i, tzinfo=UTC), "b_note": f"n{i}"} for i in (2, 5)]
        ManyRows(change, connection.dialect).run(connection, later, per_call=10)
        connection.execute(update(theirs).where(theirs.c.id == bindparam("b_id"))
                           .values(at=bindparam("b_at"), note=bindparam("b_note")), later)
    with engine.connect() as connection:
        # The text each table holds, column by column: what the driver was given.
        raw = [connection.exec_driver_sql(f"SELECT id, at, data, typeof(data), note FROM {name} ORDER BY id").all()
               for name in ("ours", "theirs")]
        assert raw[0] == raw[1]
        assert connection.execute(select(ours.c.at).where(ours.c.id == 5)).scalar() == datetime(2026, 12, 3, 5,
                                                                                               tzinfo=UTC)


def test_one_row_takes_the_statement_s_own_literals_and_reports_its_rowcount(tmp_path: Path) -> None:
    """`run_one` of an INSERT … SELECT … WHERE (rows noted 'x') < :cap, 'x' a literal of the statement: the row is
    stored as SQLAlchemy's `execute` stores it while the count is under the cap, and not once it is reached."""
    engine = make_engine(f"sqlite:///{tmp_path / 'one.db'}")
    metadata = MetaData()
    table = _table("capped", metadata)
    metadata.create_all(engine)
    noted = select(func.count()).select_from(table).where(table.c.note == "x").scalar_subquery()
    row = select(*[bindparam(f"v_{column.name}", type_=column.type).label(column.name) for column in table.c])
    statement = insert(table).from_select(list(table.c), row.where(noted < bindparam("v_cap", type_=Integer())))
    at = datetime(2026, 12, 2, 3, 4, 5, tzinfo=UTC)
    with engine.begin() as connection:
        one = ManyRows(statement, connection.dialect)
        stored = [one.run_one(connection, {"v_id": i, "v_at": at, "v_data": {"n": i}, "v_note": "x", "v_cap": 2})
                  .rowcount for i in (1, 2, 3)]
        assert stored == [1, 1, 0]  # the literal 'x' was bound: the third found two rows noted 'x'
        connection.execute(statement, {"v_id": 9, "v_at": at, "v_data": {"n": 1}, "v_note": "y", "v_cap": 3})
        raw = connection.exec_driver_sql("SELECT id, at, data, typeof(data), note FROM capped ORDER BY id").all()
    assert raw[0][1:4] == raw[2][1:4] and raw[2][0] == 9  # one of ours as SQLAlchemy's own stores its twin
