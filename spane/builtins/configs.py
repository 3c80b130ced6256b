"""Config structs of the built-in node types, checked when a definition is validated."""

from __future__ import annotations

import re
from typing import Any

import jmespath
import msgspec
from jmespath.exceptions import JMESPathError

from ..durations import parse_duration

#: What a signal may be called.
SIGNAL_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


def check_expression(expression: str) -> None:
    try:
        jmespath.compile(expression)
    except JMESPathError as exc:
        raise ValueError(f"invalid JMESPath expression {expression!r}: {exc}") from None


class TransformConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``transform``: the node's output is ``expression`` (JMESPath) applied to its input."""

    expression: str

    def __post_init__(self) -> None:
        check_expression(self.expression)


class BranchCase(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One case of a ``branch``: when ``when`` is truthy on the input, run ``next``."""

    when: str
    next: list[str]

    def __post_init__(self) -> None:
        check_expression(self.when)


class BranchConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``branch``: the first matching case chooses the successors; else ``default``."""

    cases: list[BranchCase] = []
    default: list[str] = []


class DelayConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``delay``: park the node on a durable timer, then pass the input on."""

    duration: str | float

    def __post_init__(self) -> None:
        parse_duration(self.duration)


class NoopConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``noop``: pass the input on unchanged."""


class SubworkflowConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``subworkflow``: run ``workflow`` as a child execution and wait for it, parked."""

    workflow: str
    version: int | None = None
    input: str | None = None
    output: str | None = None

    def __post_init__(self) -> None:
        for expression in (self.input, self.output):
            if expression is not None:
                check_expression(expression)


class WaitForConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``wait_for``: park until the signal ``signal`` arrives; its payload is the output.

    Without a signal within ``timeout``, ``on_timeout: fail`` fails the node and
    ``continue`` completes it with ``default``.
    """

    signal: str
    timeout: str | float | None = None
    on_timeout: str = "fail"
    default: Any = None

    def __post_init__(self) -> None:
        if not SIGNAL_NAME.fullmatch(self.signal):
            raise ValueError(f"signal {self.signal!r}: use 1-100 characters of A-Z a-z 0-9 _ . : -")
        if self.timeout is not None:
            parse_duration(self.timeout)
        if self.on_timeout not in ("fail", "continue"):
            raise ValueError(f"on_timeout {self.on_timeout!r}: use fail or continue")
