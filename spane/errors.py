"""Errors raised to callers of Spane.

Every error derives from one root, and each says what to fix::

    SpaneError
    ├── ConfigurationError        a setting or backend is wrong or missing
    ├── DefinitionError           a workflow definition is invalid (every problem, with paths)
    ├── UnknownWorkflow           no workflow is registered under that id/version
    ├── UnknownExecution          no execution has that id
    ├── UnknownSchedule           no schedule has that id
    ├── InputError                an execution input is refused (schema, JSON, size)
    ├── PayloadTooLarge           a value exceeds SPANE_MAX_PAYLOAD_BYTES
    │   └── ArgumentTooLarge      ... a message argument (middleware/claim_check.py)
    ├── BlobError                 a stored payload is missing or corrupted
    │   └── ArgumentUnreadable    ... an offloaded message argument
    ├── InvalidTransition         a control (cancel, pause, ...) does not apply to that state
    ├── WaitTimeout               ``wait`` gave up before the execution ended
    ├── UnknownBreaker            no circuit breaker has that name
    └── NodeFailed                raised by node code to fail the current attempt

Control flow (park, skip, retry later, ``Defer``) is not part of this tree.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec


class SpaneError(Exception):
    """Spane could not do what was asked."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (type(self).__doc__ or "").strip())


class ConfigurationError(SpaneError):
    """A setting or backend is wrong or missing."""


class Problem(msgspec.Struct, frozen=True):
    """One thing wrong with a definition, at a path such as ``nodes[2].after[0]``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class DefinitionError(SpaneError):
    """The workflow definition is invalid."""

    def __init__(self, problems: Sequence[Problem], source: str = "") -> None:
        self.problems = list(problems)
        where = f" ({source})" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"workflow definition{where} has {len(self.problems)} problem(s):\n{lines}"
        )


class UnknownWorkflow(SpaneError):
    """No workflow is registered under that id; register it first."""


class UnknownExecution(SpaneError):
    """No execution has that id."""


class UnknownSchedule(SpaneError):
    """No schedule has that id."""


class InputError(SpaneError):
    """The execution input was refused.

    Args:
        message: What is wrong and what to fix.
        problems: Each failing part of the input with its path (schema checks).
    """

    def __init__(self, message: str | None = None, *, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


class PayloadTooLarge(InputError):
    """The value exceeds SPANE_MAX_PAYLOAD_BYTES; make it smaller or raise the limit."""


class BlobError(SpaneError):
    """A stored payload is missing or corrupted."""


class InvalidTransition(SpaneError):
    """That control does not apply to the execution in its current state."""


class WaitTimeout(SpaneError):
    """The execution did not end before the timeout."""


class UnknownBreaker(SpaneError):
    """No circuit breaker has that name; `spane breakers` lists them."""


class NodeFailed(SpaneError):
    """Raised by node code to fail the current attempt.

    Args:
        message: Why the attempt failed; recorded as the node's error.
        retryable: False to fail the node at once, without further attempts.
    """

    def __init__(self, message: str = "node failed", *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable
