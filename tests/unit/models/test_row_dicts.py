"""`models.db.row_dicts`: each row of a result as a dict of its columns' names, renamed where asked."""

from sqlalchemy import create_engine, text

from models.db import row_dicts


def test_each_row_becomes_a_dict_of_its_columns_renamed_where_asked() -> None:
    engine = create_engine("sqlite://")
    with engine.connect() as connection:
        result = connection.execute(text("SELECT 1 AS id, 'a' AS metadata UNION ALL SELECT 2, 'b' ORDER BY id"))
        assert list(row_dicts(result, {"metadata": "meta"})) == [{"id": 1, "meta": "a"}, {"id": 2, "meta": "b"}]
        result = connection.execute(text("SELECT 3 AS id, NULL AS metadata"))
        assert list(row_dicts(result)) == [{"id": 3, "metadata": None}]
