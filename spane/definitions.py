"""Workflow definitions as data, and the graph of a valid one.

A definition is plain data (YAML, JSON, a dict) converted into these frozen Structs, which
fix the shape and the rules local to one Struct. :mod:`spane.validation` checks a definition
first and reports every problem with its path.
"""

from __future__ import annotations

import hashlib
import heapq
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, cast

import jmespath
import msgspec
from jmespath.exceptions import JMESPathError

from . import cron, errors
from .protection import Breaker, RateLimit
from .registry import RetryPolicy

#: What a schedule does with a tick while its previous execution still runs.
OVERLAP = ("skip", "allow", "cancel_previous")
#: Which ticks missed while no worker ran a schedule fires late.
CATCH_UP = ("none", "latest", "all")
#: The most missed ticks ``catch_up: all`` fires at once.
MAX_CATCH_UP = 100
TENANT = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_HOOK_PATH = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# omit_defaults keeps the canonical form (and so ``definition_hash``) unchanged when a later
# release adds an optional field: existing workflows must not all get a new version on upgrade.
#: A concurrency key reads the node's input or config (JMESPath over ``{input, config}``).
_KEY_SOURCE = re.compile(r"(?<![\w.])(input|config)\b")

#: A count of at least one (concurrency limits).
Positive = Annotated[int, msgspec.Meta(ge=1)]


class Concurrency(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """At most ``max`` attempts of this node at once per value of ``key`` (per tenant).

    Attributes:
        key: A JMESPath expression over ``{input, config}`` of the node, e.g.
            ``input.customer_id``; attempts with equal values share the limit.
        max: How many may be in flight at once for one value.
        strategy: Over the limit, ``queue`` (wait in order), ``cancel_newest`` (cancel the
            arriving execution) or ``cancel_oldest`` (cancel the oldest ones in the way).
    """

    key: str
    max: Positive = 1
    strategy: Literal["queue", "cancel_newest", "cancel_oldest"] = "queue"

    def __post_init__(self) -> None:
        try:
            jmespath.compile(self.key)
        except JMESPathError as exc:
            raise ValueError(f"key is not a valid JMESPath expression: {exc}") from None
        if not _KEY_SOURCE.search(self.key):
            raise ValueError(
                f"key {self.key!r} reads neither input nor config; write e.g. input.customer_id"
            )


class Schedule(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """Start an execution on each tick of a cron expression or a fixed interval.

    Attributes:
        cron: ``minute hour day month weekday``, in ``timezone``.
        every: A fixed interval (``30s``, ``5m``...), instead of ``cron``.
        timezone: IANA name the cron expression is read in.
        input: The input of every execution the schedule starts.
        tenant: The tenant those executions run for.
        overlap: When the previous execution is still running: ``skip`` this tick,
            ``allow`` both, or ``cancel_previous``.
        catch_up: Ticks missed while no worker ran: ``none``, the ``latest`` one, or
            ``all`` (at most ``MAX_CATCH_UP``).
    """

    cron: str | None = None
    every: str | float | None = None
    timezone: str = "UTC"
    input: Any = None
    tenant: str = "default"
    overlap: str = "skip"
    catch_up: str = "latest"

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every is None):
            raise ValueError("set exactly one of: cron, every")
        if self.cron is not None:
            cron.check_cron(self.cron)
        if self.every is not None:
            cron.check_every(self.every)
        cron.check_timezone(self.timezone)
        if self.overlap not in OVERLAP:
            raise ValueError(f"overlap {self.overlap!r}: use one of {', '.join(OVERLAP)}")
        if self.catch_up not in CATCH_UP:
            raise ValueError(f"catch_up {self.catch_up!r}: use one of {', '.join(CATCH_UP)}")
        if not TENANT.fullmatch(self.tenant) or self.tenant in (".", ".."):
            raise ValueError(f"tenant {self.tenant!r}: use 1-64 characters of A-Z a-z 0-9 _ . -")


class Webhook(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """Start an execution when a request arrives at ``POST /hooks/<path>`` (``spane web``).

    Attributes:
        path: The hook's path under ``/hooks/``: letters, digits, ``-``, ``_``, ``.``, ``/``.
        secret_env: The environment variable holding the HMAC-SHA256 signing secret; without
            it, callers authenticate with an API token of ``tenant`` (or an admin token).
        input: A JMESPath expression over the request body giving the execution input;
            empty passes the whole body.
        tenant: The tenant the started executions belong to.
    """

    path: str
    secret_env: str = ""
    input: str = ""
    tenant: str = "default"

    def __post_init__(self) -> None:
        if not self.path.strip():
            raise ValueError("a webhook path must not be empty")
        if not _HOOK_PATH.fullmatch(self.path):
            raise ValueError(
                f"webhook path {self.path!r} may hold only letters, digits and - _ . / "
                "(no leading or trailing /, no //)"
            )
        if self.secret_env and not _ENV_NAME.fullmatch(self.secret_env):
            raise ValueError(f"secret_env {self.secret_env!r} is not an environment variable name")
        if not TENANT.fullmatch(self.tenant):
            raise ValueError(f"tenant {self.tenant!r}: use 1-64 characters of A-Z a-z 0-9 _ . -")
        if self.input:
            try:
                jmespath.compile(self.input)
            except JMESPathError as exc:
                raise ValueError(f"input is not a valid JMESPath expression: {exc}") from None


class Trigger(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """What starts the workflow besides an explicit call; exactly one field is set."""

    schedule: Schedule | None = None
    webhook: Webhook | None = None

    def __post_init__(self) -> None:
        if (self.schedule is None) == (self.webhook is None):
            raise ValueError("set exactly one of: schedule, webhook")


class Callback(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """POST the execution's outcome to ``url`` when it ends (at least once per end).

    Attributes:
        url: An ``http://`` or ``https://`` URL.
        secret_env: The environment variable (of the workers) holding the HMAC-SHA256 key
            that signs each post; unset posts unsigned.
    """

    url: str
    secret_env: str = ""

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")) or len(self.url) > 2000:
            raise ValueError(f"on_finish url must be an http:// or https:// URL, got {self.url!r}")
        if self.secret_env and not _ENV_NAME.fullmatch(self.secret_env):
            raise ValueError(f"secret_env {self.secret_env!r} is not an environment variable name")


class Node(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """One step: a registered node type run after the nodes listed in ``after``.

    ``max_concurrency`` caps this node's attempts in flight across all executions and
    workers; ``concurrency`` caps them per key (see ``Concurrency``).
    """

    id: str
    type: str
    after: list[str] = []
    config: dict[str, Any] = {}
    retry: RetryPolicy | None = None
    timeout: str | float | None = None
    continue_on_fail: bool = False
    description: str = ""
    breaker: Breaker | None = None
    rate_limit: RateLimit | None = None
    max_concurrency: Positive | None = None
    concurrency: Concurrency | None = None


class Workflow(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """A named DAG of nodes, with the lane it runs on and an optional input schema.

    ``max_parallel`` caps the nodes of one execution in flight at once (wide fan-outs).
    """

    id: str
    nodes: list[Node]
    lane: str = "default"
    input_schema: dict[str, Any] | None = None
    triggers: list[Trigger] = []
    on_finish: Callback | None = None
    description: str = ""
    max_parallel: Positive | None = None


@dataclass(frozen=True)
class Graph:
    """The shape of a valid workflow, computed once by :func:`build_graph`.

    All tuples list node ids in definition order, except ``order``, which is topological.
    """

    nodes: dict[str, Node]
    parents: dict[str, tuple[str, ...]]
    children: dict[str, tuple[str, ...]]
    sinks: tuple[str, ...]
    order: tuple[str, ...]
    workflow_id: str = ""
    max_parallel: int | None = None


def topological_order(parents: Mapping[str, Sequence[str]]) -> list[str]:
    """Return the nodes so that each comes after all its parents.

    Among nodes ready at the same time the earlier key comes first, so a definition already
    written in order keeps it.

    Args:
        parents: Each node's parents; every parent must itself be a key.

    Returns:
        The ordered nodes. Nodes on a cycle, or after one, can never be ready and are left out.
    """
    names = list(parents)
    index = {name: i for i, name in enumerate(names)}
    waiting = {name: len(set(ps)) for name, ps in parents.items()}
    children: dict[str, list[str]] = {name: [] for name in names}
    for name, ps in parents.items():
        for parent in set(ps):
            children[parent].append(name)
    ready = [index[name] for name, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        name = names[heapq.heappop(ready)]
        order.append(name)
        for child in children[name]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, index[child])
    return order


def find_cycles(parents: Mapping[str, Sequence[str]]) -> Iterator[list[str]]:
    """Yield one cycle per back edge of a depth-first walk, as ``[a, b, ..., a]``.

    Each cycle is reported once, in run order (``b`` lists ``a`` in its ``after``), and ends
    with the edge that closed it. Parents that are not keys are ignored.
    """
    children: dict[str, list[str]] = {name: [] for name in parents}
    for name, ps in parents.items():
        for parent in ps:
            if parent in children:
                children[parent].append(name)
    done: set[str] = set()
    for root in parents:
        if root in done:
            continue
        # Iterative, so a long chain of nodes cannot hit the recursion limit.
        path, on_path, stack = [root], {root}, [iter(children[root])]
        while stack:
            child = next(stack[-1], None)
            if child is None:
                done.add(path[-1])
                on_path.discard(path.pop())
                stack.pop()
            elif child in on_path:
                yield [*path[path.index(child) :], child]
            elif child not in done:
                path.append(child)
                on_path.add(child)
                stack.append(iter(children[child]))


def build_graph(workflow: Workflow) -> Graph:
    """Return the graph of ``workflow``, which must have passed validation.

    Raises:
        DefinitionError: If some nodes can never run because of a cycle.
    """
    nodes = {node.id: node for node in workflow.nodes}
    parents = {node.id: tuple(node.after) for node in workflow.nodes}
    children: dict[str, list[str]] = {name: [] for name in nodes}
    for node in workflow.nodes:
        for parent in node.after:
            children[parent].append(node.id)
    order = topological_order(parents)
    if len(order) != len(nodes):
        ordered = set(order)
        stuck = ", ".join(name for name in nodes if name not in ordered)
        problem = errors.Problem("nodes", f"nodes on or after a cycle: {stuck}")
        raise errors.DefinitionError([problem], workflow.id)
    return Graph(
        nodes=nodes,
        parents=parents,
        children={name: tuple(kids) for name, kids in children.items()},
        sinks=tuple(name for name, kids in children.items() if not kids),
        order=tuple(order),
        workflow_id=workflow.id,
        max_parallel=workflow.max_parallel,
    )


def to_dict(workflow: Workflow) -> dict[str, Any]:
    """Return the workflow as plain data, fields at their default left out."""
    return cast(dict[str, Any], msgspec.to_builtins(workflow))


def definition_hash(workflow: Workflow) -> str:
    """Return a sha256 hex digest of the workflow that ignores key order and spelt-out defaults."""
    canonical = msgspec.json.encode(to_dict(workflow), order="sorted")
    return hashlib.sha256(canonical).hexdigest()
