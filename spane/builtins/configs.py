"""Config structs of the built-in node types, checked when a definition is validated."""

from __future__ import annotations

import jmespath
import msgspec
from jmespath.exceptions import JMESPathError

from ..durations import parse_duration


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
