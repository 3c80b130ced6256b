"""API tokens of the HTTP API: ``spane_<id>_<secret>``, stored as a hash of the secret.

The id part finds the record; the secret is 256 random bits, so one SHA-256 is enough
to store it (a slow password hash protects guessable secrets, not random ones).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from . import runtime
from .errors import InputError
from .store.tokens import ApiToken

_FORMAT = re.compile(r"spane_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_TENANT = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(tenant: str | None, *, label: str = "") -> tuple[ApiToken, str]:
    """Create a token for ``tenant`` (None: an admin token that sees every tenant).

    Returns:
        The record and the token itself, which is shown once and never stored.
    """
    if tenant is not None and (not _TENANT.fullmatch(tenant) or tenant in (".", "..")):
        raise InputError(
            f"tenant {tenant!r} is not valid: use 1-64 characters of A-Z a-z 0-9 _ . -"
        )
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    record = runtime.get().store.tokens.add(token_id, tenant, _digest(secret), label[:200])
    return record, f"spane_{token_id}_{secret}"


def authenticate(token: str) -> ApiToken | None:
    """Return the live token record that ``token`` proves, or None."""
    match = _FORMAT.fullmatch(token)
    if match is None:
        return None
    found = runtime.get().store.tokens.live(match.group(1))
    if found is None:
        return None
    record, digest = found
    return record if hmac.compare_digest(digest, _digest(match.group(2))) else None


def list_tokens() -> list[ApiToken]:
    """Every token record, newest first (the secrets are not kept)."""
    return runtime.get().store.tokens.all()


def revoke_token(token_id: str) -> bool:
    """Revoke a token by its id; False if no live token has that id."""
    return runtime.get().store.tokens.revoke(token_id)
