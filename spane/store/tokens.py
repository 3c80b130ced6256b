"""API tokens: only a hash of each secret is stored."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Engine, insert, select, update

from .schema import api_tokens as T


@dataclass(frozen=True)
class ApiToken:
    """An API token's record; ``tenant`` is None for an admin token."""

    id: str
    tenant: str | None
    label: str
    created_at: float
    revoked_at: float | None


class Tokens:
    """Persistence of API tokens (a part of the store, built with its engine).

    Args:
        engine: The store's engine.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, token_id: str, tenant: str | None, digest: str, label: str) -> ApiToken:
        """Store a new token under its public id and the hash of its secret."""
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(
                insert(T).values(
                    id=token_id, tenant=tenant, hash=digest, label=label, created_at=now
                )
            )
        return ApiToken(token_id, tenant, label, now, None)

    def live(self, token_id: str) -> tuple[ApiToken, str] | None:
        """Return a token that was not revoked, with its stored hash."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(T).where(T.c.id == token_id, T.c.revoked_at.is_(None))
            ).first()
        if row is None:
            return None
        return _token(row), str(row.hash)

    def all(self) -> list[ApiToken]:
        """Every token, newest first, revoked ones included."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(T).order_by(T.c.created_at.desc())).all()
        return [_token(row) for row in rows]

    def revoke(self, token_id: str) -> bool:
        """Revoke a live token; False if there is none with that id."""
        with self.engine.begin() as conn:
            done = conn.execute(
                update(T)
                .where(T.c.id == token_id, T.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            )
        return bool(done.rowcount)


def _token(row: object) -> ApiToken:
    mapping = row._mapping  # type: ignore[attr-defined]
    return ApiToken(
        id=mapping["id"],
        tenant=mapping["tenant"],
        label=mapping["label"],
        created_at=mapping["created_at"],
        revoked_at=mapping["revoked_at"],
    )
