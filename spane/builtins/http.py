"""The ``http`` node type: one HTTP call, behind a circuit breaker keyed by host.

``{expr}`` in the URL, header and query values is a JMESPath expression over the node's
input; ``${env:NAME}`` is a secret read from the worker's environment when the request is
made. Secrets are never stored (the definition holds only the variable's name) and never
reach the history, errors or logs: every message this module writes is scrubbed of them.

Which responses do what: an expected status (any 2xx unless ``expect`` is set) completes
the node; a status in ``retry_on`` that carries ``Retry-After`` defers the node by that
much (no attempt spent); without it, and on connection errors and timeouts, the attempt
fails and is retried; any other status fails the node for good.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx
import jmespath
import msgspec

from .. import settings
from ..context import Defer, NodeContext
from ..durations import parse_duration
from ..errors import NodeFailed
from ..protection import Breaker
from ..registry import NodeType, register
from .configs import check_expression

_PART = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}|\{([^{}]+)\}")
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# Headers whose value is a credential: the definition must name a variable, not hold it.
_CREDENTIALS = ("authorization", "proxy-authorization", "cookie", "x-api-key")


class HttpConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``http``: call a URL and output ``{status, headers, body}``.

    Attributes:
        url: ``http://`` or ``https://`` URL; ``{expr}`` parts are filled from the input
            (percent-encoded).
        method: HTTP method.
        headers: Header values may hold ``{expr}`` and ``${env:NAME}``.
        query: Query parameters; values as for headers.
        body: JMESPath over the input whose value is sent as the JSON body.
        timeout: Of the whole request.
        expect: Statuses that complete the node (default: any 2xx).
        retry_on: Statuses that retry (or defer, with ``Retry-After``).
        response: ``auto`` (JSON if the response says so, else text), ``json`` or ``text``.
        response_headers: Response headers copied into the output.
        idempotency_key: Send ``Idempotency-Key: ctx.idempotency_key`` (stable per
            execution and node, across retries).
        max_retry_after: A longer ``Retry-After`` is treated as a plain retryable failure.
    """

    url: str
    method: str = "GET"
    headers: dict[str, str] = {}
    query: dict[str, str] = {}
    body: str | None = None
    timeout: str | float = "30s"
    expect: list[int] = []
    retry_on: list[int] = msgspec.field(default_factory=lambda: [429, 502, 503, 504])
    response: str = "auto"
    response_headers: list[str] = []
    idempotency_key: bool = False
    max_retry_after: str | float = "10m"

    def __post_init__(self) -> None:
        if self.method.upper() not in _METHODS:
            raise ValueError(f"unknown method {self.method!r}; allowed: {', '.join(_METHODS)}")
        if not self.url.lower().startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {self.url!r}")
        if self.response not in ("auto", "json", "text"):
            raise ValueError(f"response must be auto, json or text, got {self.response!r}")
        parse_duration(self.timeout)
        parse_duration(self.max_retry_after)
        if self.body is not None:
            check_expression(self.body)
        for text in (self.url, *self.headers.values(), *self.query.values()):
            for match in _PART.finditer(text):
                if match[2] is not None:
                    check_expression(match[2])
        for name, value in self.headers.items():
            if name.lower() in _CREDENTIALS and "${env:" not in value:
                raise ValueError(
                    f"header {name!r} carries a credential: write it as ${{env:NAME}} so it is "
                    "read from the worker's environment and never stored"
                )


class _Policy:
    """Which hosts the node type may call (``SPANE_HTTP_ALLOWED_HOSTS``)."""

    allowed: tuple[str, ...] = ()


_policy = _Policy()
_client_lock = threading.Lock()
_client: httpx.Client | None = None


def configure(allowed_hosts: tuple[str, ...]) -> None:
    """Set the hosts ``http`` nodes may call (empty: any host); done by the runtime."""
    _policy.allowed = tuple(h.lower() for h in allowed_hosts)


def _allowed(url: httpx.URL) -> bool:
    if not _policy.allowed:
        return True
    host = url.host.lower()
    with_port = f"{host}:{url.port}" if url.port else host
    return any(
        entry in (host, with_port) or (entry.startswith("*.") and host.endswith(entry[1:]))
        for entry in _policy.allowed
    )


def _check_request(request: httpx.Request) -> None:
    """Every request, redirects included, goes to an http(s) URL on an allowed host."""
    if request.url.scheme not in ("http", "https"):
        raise NodeFailed(f"refused a {request.url.scheme}:// URL: only http(s)", retryable=False)
    if not _allowed(request.url):
        raise NodeFailed(
            f"host {request.url.host!r} is not in SPANE_HTTP_ALLOWED_HOSTS", retryable=False
        )


def _http_client() -> httpx.Client:
    global _client
    with _client_lock:
        if _client is None:
            _client = httpx.Client(follow_redirects=True, event_hooks={"request": [_check_request]})
        return _client


class _Render:
    """Fills templates from one input, remembering the secrets it used (to scrub them)."""

    def __init__(self, value: Any) -> None:
        self.value = value
        self.secrets: list[str] = []

    def __call__(self, text: str, where: str, encode: Callable[[str], str] = str) -> str:
        def fill(match: re.Match[str]) -> str:
            if match[1] is not None:
                found = settings.secret(match[1])
                if found is None:
                    raise NodeFailed(
                        f"{where}: environment variable {match[1]} is not set in this worker",
                        retryable=False,
                    )
                self.secrets.append(found)
                return found
            value = jmespath.search(match[2], self.value)
            if value is None:
                raise NodeFailed(f"{where}: {{{match[2]}}} is null on this input", retryable=False)
            text = value if isinstance(value, str) else msgspec.json.encode(value).decode()
            return encode(text)

        return _PART.sub(fill, text)

    def scrub(self, text: str) -> str:
        """``text`` with every secret used replaced by ``***``."""
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        return text


def _retry_after(header: str | None) -> float | None:
    """Seconds from now that ``Retry-After`` asks for, or None if absent or unreadable."""
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(header).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def http(ctx: NodeContext) -> Any:
    """Make the configured request and output ``{status, headers, body}``."""
    config: HttpConfig = ctx.config
    render = _Render(ctx.input)
    url = render(config.url, "url", lambda text: quote(text, safe=""))
    headers = {name: render(value, f"headers.{name}") for name, value in config.headers.items()}
    if config.idempotency_key:
        headers["Idempotency-Key"] = ctx.idempotency_key
    query = {name: render(value, f"query.{name}") for name, value in config.query.items()}
    body = jmespath.search(config.body, ctx.input) if config.body is not None else None
    method = config.method.upper()
    where = f"{method} {config.url}"
    started = time.monotonic()
    try:
        response = _http_client().request(
            method,
            url,
            headers=headers,
            params=query or None,
            json=body if config.body is not None else None,
            timeout=parse_duration(config.timeout),
        )
    except httpx.TimeoutException as exc:
        raise NodeFailed(render.scrub(f"{where} timed out: {exc}")) from None
    except (httpx.TransportError, httpx.InvalidURL) as exc:
        raise NodeFailed(render.scrub(f"{where} failed: {type(exc).__name__}: {exc}")) from None
    status = response.status_code
    ctx.log.info(
        "http response",
        method=method,
        url=config.url,
        status=status,
        seconds=round(time.monotonic() - started, 3),
    )
    if status in config.retry_on:
        wait = _retry_after(response.headers.get("retry-after"))
        if wait is not None and wait <= parse_duration(config.max_retry_after):
            host = response.request.url.host
            raise Defer(time.time() + wait, f"HTTP {status} from {host}: Retry-After {wait:g}s")
        raise NodeFailed(render.scrub(f"{where} answered {status}: {response.text[:200]}"))
    if not (status in config.expect if config.expect else 200 <= status < 300):
        message = f"{where} answered {status} (not expected): {response.text[:200]}"
        raise NodeFailed(render.scrub(message), retryable=False)
    return {
        "status": status,
        "headers": {
            name.lower(): response.headers[name]
            for name in config.response_headers
            if name in response.headers
        },
        "body": _body(response, config.response, where),
    }


def _body(response: httpx.Response, mode: str, where: str) -> Any:
    wants_json = mode == "json" or (
        mode == "auto" and "json" in response.headers.get("content-type", "") and response.content
    )
    if not wants_json:
        return response.text
    try:
        return response.json()
    except ValueError:
        raise NodeFailed(f"{where}: the response is not JSON", retryable=False) from None


register(NodeType("http", http, config=HttpConfig, breaker=Breaker(key="host(config.url)")))
