"""JSON encoding of values at rest and in messages (msgspec, one encoder and decoder)."""

from __future__ import annotations

import math
from typing import Any

import msgspec

from .errors import InputError

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def encode(value: Any) -> bytes:
    """Encode ``value`` as JSON bytes."""
    return _encoder.encode(value)


def dumps(value: Any) -> str:
    """Encode ``value`` as JSON text."""
    return _encoder.encode(value).decode()


def loads(text: str | bytes) -> Any:
    """Decode JSON text."""
    return _decoder.decode(text)


def check_json(value: Any, path: str = "input") -> None:
    """Refuse values that do not survive a JSON round trip, naming the first bad path.

    Raises:
        InputError: For NaN/infinity, bytes, NUL characters, non-string keys and other
            values that are not plain JSON.
    """
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if item is None or isinstance(item, bool | int):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise InputError(f"{where}: {item!r} is not valid JSON; use a finite number")
        elif isinstance(item, str):
            if "\x00" in item:
                raise InputError(f"{where}: strings may not contain NUL (\\x00) characters")
        elif isinstance(item, dict):
            for key, sub in item.items():
                if not isinstance(key, str):
                    raise InputError(f"{where}: object keys must be strings, got {key!r}")
                if "\x00" in key:
                    raise InputError(f"{where}: object keys may not contain NUL characters")
                stack.append((f"{where}.{key}", sub))
        elif isinstance(item, list | tuple):
            stack.extend((f"{where}[{i}]", sub) for i, sub in enumerate(item))
        else:
            raise InputError(
                f"{where}: {type(item).__name__} is not JSON-serialisable; "
                "use strings, numbers, booleans, null, lists and objects"
            )
