"""HMAC-SHA256 request signatures, one scheme for webhooks received and callbacks sent.

``Spane-Signature: t=<unix seconds>,v1=<hex>``, the hex being HMAC-SHA256 over
``<t>.<raw body>`` keyed with a shared secret. The timestamp lets a receiver refuse a
captured request replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "Spane-Signature"


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """Return the ``Spane-Signature`` header value for ``body``.

    Args:
        secret: The shared secret.
        body: The exact request body.
        timestamp: Unix seconds; now when None.
    """
    at = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


def check(secret: str, header: str, body: bytes, *, tolerance: float) -> str | None:
    """Check a signature header against ``body``; return what is wrong, or None.

    Every ``v1=`` entry is tried (a sender rotating its secret sends one per secret), each
    compared in constant time.
    """
    if not header:
        return f"missing {HEADER} header (t=<unix seconds>,v1=<hex hmac>)"
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        at = int(parts["t"][0])
    except (KeyError, ValueError):
        return f"{HEADER} needs t=<unix seconds>"
    if abs(time.time() - at) > tolerance:
        return f"{HEADER} timestamp is more than {tolerance:g}s from the server's clock"
    expected = sign(secret, body, at).partition(",v1=")[2]
    if not any(hmac.compare_digest(expected, given) for given in parts.get("v1", [])):
        return f"{HEADER} does not match the body"
    return None
