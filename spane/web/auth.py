"""Who is calling: an API token from ``Authorization: Bearer`` or the dashboard's cookie.

A tenant token sees and controls only its tenant's executions; an admin token (created
without a tenant) sees every tenant and may register workflows.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection

from .. import tokens
from .errors import HttpError

#: The dashboard keeps the token in this cookie (HttpOnly, SameSite=Strict) so that pages
#: and event streams, which cannot set headers, are authenticated too.
COOKIE = "spane_token"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    token_id: str
    tenant: str | None

    @property
    def admin(self) -> bool:
        """True for an admin token, which sees every tenant."""
        return self.tenant is None

    def sees(self, tenant: str) -> bool:
        """Tell whether this caller may see and control ``tenant``'s executions."""
        return self.tenant is None or self.tenant == tenant


def presented(conn: HTTPConnection) -> str | None:
    """Return the token a request carries, if any."""
    header = conn.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return conn.cookies.get(COOKIE) or None


def identify(conn: HTTPConnection) -> Principal | None:
    """Return the caller a request's token proves, or None (reads the database)."""
    token = presented(conn)
    record = tokens.authenticate(token) if token else None
    return None if record is None else Principal(record.id, record.tenant)


def require(conn: HTTPConnection) -> Principal:
    """Return the authenticated caller.

    Raises:
        HttpError: 401 when the request has no valid token.
    """
    principal = identify(conn)
    if principal is None:
        raise HttpError(
            401,
            "missing or invalid API token: send 'Authorization: Bearer <token>' "
            "(create one with `spane tokens create --tenant NAME`)",
        )
    return principal
