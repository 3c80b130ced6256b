"""Engine creation: the same code on SQLite (embedded) and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from ..errors import ConfigurationError
from ..settings import mask_url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Autocommit at the driver level, so that SQLAlchemy's "begin" below decides how a
    # transaction starts: BEGIN IMMEDIATE takes the write lock up front, which avoids
    # the SQLITE_BUSY upgrade failures of deferred transactions under many threads.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """Create an engine for ``url`` (``sqlite:///...`` or ``postgresql+psycopg://...``).

    Statement parameters are kept out of error messages and logs (``hide_parameters``):
    they hold node outputs and inputs, which may be secrets.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigurationError(
            f"SPANE_DATABASE_URL is not a database URL: {mask_url(url)!r} "
            "(expected sqlite:///path or postgresql+psycopg://user@host/db)"
        ) from None
    backend = parsed.get_backend_name()
    try:
        if backend == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(
                parsed,
                connect_args={"check_same_thread": False, "timeout": 30},
                hide_parameters=True,
            )
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "begin", _sqlite_begin)
            return engine
        if backend == "postgresql":
            return create_engine(
                parsed, pool_size=12, max_overflow=24, pool_recycle=3600, hide_parameters=True
            )
    except NoSuchModuleError:
        raise ConfigurationError(f"no database driver for {mask_url(url)!r}") from None
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            f"the driver for {backend} is not installed ({exc.name}); "
            "install psycopg[binary] for PostgreSQL"
        ) from None
    raise ConfigurationError(
        f"unsupported database {backend!r} in SPANE_DATABASE_URL; use sqlite or postgresql"
    )
