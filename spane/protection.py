"""What protects the services nodes call: circuit breakers and rate limits, as declared.

A ``Breaker`` or ``RateLimit`` is declared on a node type (``@spane.node_type(...,
breaker=spane.Breaker(...))``) or on a node in a definition (``breaker: {fail_max: 3}``);
the node's own declaration wins. Both are keyed by node type and, optionally, by a JMESPath
``key`` over ``{config, tenant, workflow_id, node_id}``, which may call ``host(url)``, so
one breaker per target host is ``key: "host(config.url)"``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import jmespath
import msgspec
from jmespath import functions
from jmespath.exceptions import JMESPathError

from .durations import parse_duration
from .errors import NodeFailed, SpaneError
from .inflight import NodeTimeout


class _Functions(functions.Functions):  # type: ignore[misc]
    @functions.signature({"types": ["string"]})  # type: ignore[untyped-decorator]
    def _func_host(self, url: str) -> str:
        """``host(url)``: the host (and port, if any) of a URL, lower-cased."""
        return urlsplit(url).netloc.rpartition("@")[2].lower()


_OPTIONS = jmespath.Options(custom_functions=_Functions())


def _check_key(key: str | None) -> None:
    if key is None:
        return
    try:
        jmespath.compile(key)
    except JMESPathError as exc:
        raise ValueError(f"invalid JMESPath key {key!r}: {exc}") from None


class Breaker(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """A circuit breaker, shared by every worker, in front of what a node type calls.

    After ``fail_max`` consecutive counted failures the breaker opens: its nodes are
    deferred (not failed, no attempt spent) until ``reset_timeout`` has passed; then one
    trial attempt runs, and its success closes the breaker for everyone.

    Attributes:
        fail_max: Consecutive counted failures that open the breaker.
        reset_timeout: How long it stays open before a trial, e.g. ``"30s"``.
        key: JMESPath over ``{config, tenant, workflow_id, node_id}`` naming one breaker
            per value (e.g. ``"host(config.url)"``); unset: one breaker per node type.
        exclude: Exception class names (``"KeyError"``, ``"myapp.errors.NotFound"``) that do
            not count; like every failure that does not count, they count as a success.
        count_non_retryable: Count ``NodeFailed(retryable=False)`` too (by default it
            does not: the service answered, the request was wrong). Timeouts always count.
    """

    fail_max: int = 5
    reset_timeout: str | float = "30s"
    key: str | None = None
    exclude: list[str] = []
    count_non_retryable: bool = False

    def __post_init__(self) -> None:
        if self.fail_max < 1:
            raise ValueError(f"fail_max must be at least 1, got {self.fail_max}")
        parse_duration(self.reset_timeout)
        _check_key(self.key)

    @property
    def reset_seconds(self) -> float:
        """``reset_timeout`` in seconds."""
        return parse_duration(self.reset_timeout)

    def counts(self, exc: BaseException) -> bool:
        """True if ``exc``, raised by an attempt, counts as a failure of the service."""
        names = {c.__name__ for c in type(exc).__mro__}
        names |= {f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__}
        if names & set(self.exclude):
            return False
        if isinstance(exc, NodeTimeout):
            return True
        if isinstance(exc, NodeFailed):
            return exc.retryable or self.count_non_retryable
        # Spane's own refusals (an output that is not JSON, too large) say nothing about
        # the service the node called.
        return not isinstance(exc, SpaneError)


class RateLimit(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """At most ``limit`` attempts per ``per``, across every worker.

    An attempt over the limit is deferred to the next window, without spending an attempt
    or holding a thread.

    Attributes:
        limit: Attempts allowed per window.
        per: The window, whole seconds from 1s to 1h, e.g. ``"1s"``, ``"1m"``.
        key: JMESPath as for ``Breaker.key``; unset: one limit per node type.
    """

    limit: int
    per: str | float = "1s"
    key: str | None = None

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"limit must be at least 1, got {self.limit}")
        seconds = parse_duration(self.per)
        if seconds != int(seconds) or not 1 <= seconds <= 3600:
            raise ValueError(f"per must be whole seconds from 1s to 1h, got {self.per!r}")
        _check_key(self.key)

    @property
    def window(self) -> int:
        """``per`` in whole seconds."""
        return int(parse_duration(self.per))


def protected_name(node_type: str, key: str | None, subject: dict[str, Any]) -> str:
    """The name of the breaker or limit of one attempt: ``type`` or ``type:key-value``.

    Args:
        node_type: The attempt's node type.
        key: The declaration's JMESPath key, if any.
        subject: ``{config, tenant, workflow_id, node_id}`` of the attempt.
    """
    if key is None:
        return node_type
    value = jmespath.search(key, subject, options=_OPTIONS)
    return f"{node_type}:{value if isinstance(value, str) else msgspec.json.encode(value).decode()}"
