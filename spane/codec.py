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


#: Deepest nesting of lists and objects accepted: the encoder and decoder recurse, and
#: a value nested past the interpreter's recursion limit could be stored but never read.
MAX_NESTING = 500
#: Longest integer accepted (digits): Python refuses to print longer ones as text.
MAX_INT_DIGITS = 4000
_MAX_INT_BITS = int(MAX_INT_DIGITS * 3.3219)  # log2(10) bits per decimal digit


def check_json(value: Any, path: str = "input") -> None:
    """Refuse values that do not survive a JSON round trip, naming the first bad path.

    Raises:
        InputError: For NaN/infinity, bytes, NUL characters, lone surrogates, integers
            over ``MAX_INT_DIGITS`` digits, nesting deeper than ``MAX_NESTING``, a value
            that contains itself, non-string keys and other values that are not plain JSON.
    """
    # The containers enclosing the item at hand: a value that contains itself is named
    # as such instead of walked forever. ``_LEAVE`` entries pop a container when its
    # items are done, so the set is exactly the current path.
    enclosing: set[int] = set()
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if where is _LEAVE:
            enclosing.discard(item)
        elif item is None or isinstance(item, bool):
            continue
        elif isinstance(item, int):
            if item.bit_length() > _MAX_INT_BITS:
                raise InputError(
                    f"{where}: integers longer than {MAX_INT_DIGITS} digits are not "
                    "supported; pass the number as a string"
                )
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InputError(f"{where}: {item!r} is not valid JSON; use a finite number")
        elif isinstance(item, str):
            _check_text(where, item, "strings")
        elif isinstance(item, dict | list | tuple):
            if id(item) in enclosing:
                raise InputError(f"{where}: the value contains itself (a reference cycle)")
            if len(enclosing) >= MAX_NESTING:
                raise InputError(
                    f"{path}: nested too deeply (deeper than {MAX_NESTING} levels); flatten it"
                )
            enclosing.add(id(item))
            stack.append((_LEAVE, id(item)))
            if isinstance(item, dict):
                for key, sub in item.items():
                    if not isinstance(key, str):
                        raise InputError(f"{where}: object keys must be strings, got {key!r}")
                    _check_text(where, key, "object keys")
                    stack.append((f"{where}.{key}", sub))
            else:
                stack.extend((f"{where}[{i}]", sub) for i, sub in enumerate(item))
        else:
            raise InputError(
                f"{where}: {type(item).__name__} is not JSON-serialisable; "
                "use strings, numbers, booleans, null, lists and objects"
            )


_LEAVE: Any = object()


def _check_text(where: str, text: str, what: str) -> None:
    if "\x00" in text:
        raise InputError(f"{where}: {what} may not contain NUL (\\x00) characters")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InputError(
                f"{where}: {what} may not contain lone surrogates "
                f"({text[exc.start]!r} at position {exc.start}); use valid Unicode text"
            ) from None
