"""Migrations go up and down cleanly on both backends, and match the models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from migrations.models import metadata
from storage.engine import make_engine
from storage.migrate import downgrade, upgrade
from tests.conftest import POSTGRES_URL
from tests.servers import fresh_postgres


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_upgrade_downgrade_and_no_drift(backend: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    def check(url: str) -> None:
        upgrade(url)
        engine = make_engine(url)
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        downgrade(url, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        upgrade(url)
        assert "tickets" in inspect(engine).get_table_names()
        engine.dispose()

    if backend == "sqlite":
        check(f"sqlite:///{tmp_path / 'm.db'}")
    else:
        with fresh_postgres(POSTGRES_URL) as url:
            check(url)
