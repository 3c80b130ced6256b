"""Who the caller is: its tenant, or an admin token."""

from __future__ import annotations

import msgspec

from ..routing import Call, Operation


class Me(msgspec.Struct):
    """The caller's token: its id and tenant (None for an admin token)."""

    token_id: str
    tenant: str | None
    admin: bool


def me(call: Call) -> Me:
    return Me(call.principal.token_id, call.principal.tenant, call.principal.admin)


OPERATIONS = [Operation("GET", "/me", "getMe", "The caller's token", me, "tokens", response=Me)]
