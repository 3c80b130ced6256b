"""Schema migrations (Alembic), run by ``spane db upgrade`` and on embedded start."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

_HERE = Path(__file__).parent


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database schema up to ``revision``."""
    # Alembic's per-plugin INFO lines would flood every worker's start-up log.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    config = Config()
    config.set_main_option("script_location", str(_HERE))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Workers start together; one migrates while the others wait on this lock.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(74172301)")
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


@functools.cache
def _heads() -> frozenset[str]:
    """The latest revisions this code knows (read from the migration files once)."""
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(_HERE))
    return frozenset(ScriptDirectory.from_config(config).get_heads())


def is_current(engine: Engine) -> bool:
    """Tell whether the database schema is at the latest revision (for readiness)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    return current == _heads()
