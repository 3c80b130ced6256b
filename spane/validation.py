"""Load workflow definitions and check them, reporting every problem at once with its path.

Two passes run over the raw data. The shape pass checks each Struct field by field (msgspec
alone stops at the first error), so one bad node or field does not hide the others. The
meaning pass then checks ids, references, cycles, node types and configs of every piece it
can read.
"""

from __future__ import annotations

import difflib
import functools
import os
import pathlib
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jsonschema
import msgspec
import regex
import yaml
from jsonschema.validators import validator_for

from . import errors, registry
from .definitions import Workflow, find_cycles, to_dict, topological_order
from .durations import parse_duration
from .errors import Problem

if typing.TYPE_CHECKING:
    from .builtins.configs import BranchConfig, SubworkflowConfig

_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")
_BACKOFFS = ("exponential", "fixed", "linear")
_SUFFIXES = (".yaml", ".yml", ".json")
_TOO_DEEP = "nested too deeply (over Python's recursion limit); flatten the definition"
#: Expanded YAML nodes allowed beyond ten times the document's own.
_ALIAS_ALLOWANCE = 100_000
#: Missing node references that get a "did you mean" (each one scans every node id).
_MAX_SUGGESTIONS = 20
#: Longest time one ``pattern`` of an input schema may take on one value.
_REGEX_SECONDS = 0.5
_MSGSPEC_PATH = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>.*)`)?$", re.DOTALL)


def load_definition(
    source: Mapping[str, Any] | Workflow | str | os.PathLike[str],
    *,
    workflow_exists: Callable[[str], bool] | None = None,
) -> Workflow:
    """Return the validated workflow described by ``source``.

    Args:
        source: A mapping, a Workflow (checked again), a path to a ``.yaml``/``.yml``/``.json``
            file, or YAML/JSON text (a string that is not an existing path and contains a
            newline or starts with ``{``).
        workflow_exists: Tells whether a sub-workflow target is registered; without it
            targets are not looked up.

    Raises:
        DefinitionError: Listing every problem found, each with its path.
    """
    origin = ""
    try:
        data, origin = _read(source)
        try:
            # Converted once up front: when that succeeds there is no shape problem,
            # and only a failure is taken apart field by field.
            workflow: Workflow | None = msgspec.convert(data, Workflow)
            problems = []
        except msgspec.ValidationError:
            workflow, problems = None, list(_shape(data, Workflow, ""))
        if isinstance(data, Mapping):
            problems += _meaning(data, workflow_exists)
            if not origin and isinstance(data.get("id"), str):
                origin = data["id"]
        if not problems and workflow is not None:
            return workflow
    except RecursionError:
        problems = [Problem("", _TOO_DEEP)]
    # Sorted by path (numbers as numbers), so each node's problems read together.
    problems.sort(key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.path)])
    raise errors.DefinitionError(problems, origin)


def validate_input(workflow: Workflow, value: Any) -> None:
    """Check an execution input against the workflow's ``input_schema``, if it has one.

    Raises:
        InputError: Naming the path of every failing part, e.g. ``input.order_id``.
    """
    if workflow.input_schema is None:
        return
    validator = _bounded(validator_for(workflow.input_schema))(workflow.input_schema)
    lines = []
    try:
        found = sorted(validator.iter_errors(value), key=lambda e: e.json_path)
    except RecursionError:
        raise errors.InputError(
            f"input of workflow {workflow.id!r} is nested too deeply to check; flatten it"
        ) from None
    for error in found:
        path = list(error.absolute_path)
        if error.validator == "required" and isinstance(error.validator_value, list):
            # Name the missing property itself: that is what the caller has to add.
            names = error.validator_value
            path += [p for p in names if error.message == f"{p!r} is a required property"][:1]
        lines.append(Problem(_path("input", *path), error.message))
    if lines:
        listed = "\n".join(f"  - {line}" for line in lines)
        raise errors.InputError(
            f"input of workflow {workflow.id!r} is invalid:\n{listed}", problems=lines
        )


def _read(source: object) -> tuple[object, str]:
    """Return the raw data of ``source`` and where it came from."""
    if isinstance(source, Workflow):
        return to_dict(source), source.id
    if isinstance(source, Mapping):
        return dict(source), ""
    if (
        isinstance(source, str)
        and ("\n" in source or source.lstrip().startswith("{"))
        and not os.path.isfile(source)
    ):
        return _parse(source, "JSON" if source.lstrip().startswith("{") else "YAML", "")
    if not isinstance(source, str | os.PathLike):
        return source, ""
    path = pathlib.Path(source)
    try:
        if path.suffix not in _SUFFIXES:
            raise ValueError("expected a .yaml, .yml or .json file, or YAML/JSON text")
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        problem = Problem("", f"cannot read {str(path)!r}: {exc}")
        raise errors.DefinitionError([problem], str(path)) from None
    return _parse(text, "JSON" if path.suffix == ".json" else "YAML", str(path))


def _parse(text: str, kind: str, origin: str) -> tuple[object, str]:
    try:
        if kind == "JSON":
            return msgspec.json.decode(text), origin
        return yaml.load(text, Loader=_BoundedLoader), origin  # a SafeLoader
    except (msgspec.DecodeError, yaml.YAMLError, _AliasBomb) as exc:
        problem = Problem("", f"invalid {kind}: {exc}")
        raise errors.DefinitionError([problem], origin) from None


class _AliasBomb(ValueError):
    """YAML aliases would expand the document far beyond its own size."""


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.safe_load``, refusing documents whose aliases expand out of proportion:
    a few hundred bytes of nested aliases would otherwise become gigabytes."""

    def construct_document(self, node: yaml.Node) -> Any:
        distinct: set[int] = set()
        sizes: dict[int, int] = {}
        # Post-order walk, iterative and memoised per node: an alias is the same node
        # object again, so its size is counted without expanding it.
        stack: list[tuple[yaml.Node, bool]] = [(node, False)]
        while stack:
            current, ready = stack.pop()
            if id(current) in sizes:
                continue
            kids = _kids(current)
            if not ready:
                distinct.add(id(current))
                stack.append((current, True))
                stack.extend((kid, False) for kid in kids if id(kid) not in sizes)
                continue
            sizes[id(current)] = 1 + sum(sizes.get(id(kid), 1) for kid in kids)
        expanded, limit = sizes[id(node)], 10 * len(distinct) + _ALIAS_ALLOWANCE
        if expanded > limit:
            raise _AliasBomb(
                f"aliases expand {len(distinct)} YAML nodes to {expanded}, over the limit of "
                f"{limit}; write the repeated parts out or use fewer nested aliases"
            )
        return super().construct_document(node)


def _kids(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


@functools.cache
def _bounded(cls: Any) -> Any:
    """A JSON Schema validator class whose ``pattern`` and ``patternProperties`` stop after
    ``_REGEX_SECONDS``, so a pattern with catastrophic backtracking (``^(a+)+$``) cannot
    hang an enqueue."""

    def pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Iterator[Any]:
        if validator.is_type(instance, "string") and not _search(patrn, instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {patrn!r}")

    def pattern_properties(
        validator: Any, patterns: dict[str, Any], instance: Any, schema: Any
    ) -> Iterator[Any]:
        if not validator.is_type(instance, "object"):
            return
        for patrn, subschema in patterns.items():
            for key, value in instance.items():
                if _search(patrn, key):
                    yield from validator.descend(value, subschema, path=key, schema_path=patrn)

    return jsonschema.validators.extend(  # type: ignore[no-untyped-call]
        cls, {"pattern": pattern, "patternProperties": pattern_properties}
    )


def _search(pattern: str, text: str) -> bool:
    try:
        return regex.search(pattern, text, timeout=_REGEX_SECONDS) is not None
    except TimeoutError:
        raise errors.InputError(
            f"input_schema pattern {pattern!r} took over {_REGEX_SECONDS:g}s on a "
            f"{len(text)}-character value; simplify the pattern (avoid nested quantifiers "
            "such as (a+)+)"
        ) from None


def _shape(data: object, cls: type[msgspec.Struct], path: str) -> Iterator[Problem]:
    """Yield every shape problem of ``data`` as a ``cls``: unknown, missing and mistyped fields."""
    if not isinstance(data, Mapping):
        yield Problem(path, f"expected a mapping, got {_kind(data)}")
        return
    try:
        msgspec.convert(data, cls)
        return  # the common case, in one call: only a failure is taken apart field by field
    except msgspec.ValidationError:
        pass
    fields, allowed = _fields(cls)
    for key in data:
        if key not in fields:
            message = f"unknown field{_suggest(str(key), fields)}; allowed: {allowed}"
            yield Problem(_path(path, key), message)
    found = False
    for name, field in fields.items():
        where = _path(path, name)
        if name not in data:
            if field.required:
                found = True
                yield Problem(where, "required field is missing")
            continue
        value, nested = data[name], _struct_in(field.type)  # cached: called per field
        if nested is not None and isinstance(value, Mapping):
            problems = list(_shape(value, nested, where))
        elif (
            nested is not None and isinstance(value, list) and typing.get_origin(field.type) is list
        ):
            problems = [
                p for i, item in enumerate(value) for p in _shape(item, nested, _path(where, i))
            ]
        else:
            problems = list(_convert(value, field.type, where))
        found = found or bool(problems)
        yield from problems
    if not found:
        # Every field is fine on its own; what remains are checks across fields (__post_init__).
        yield from _convert({k: v for k, v in data.items() if k in fields}, cls, path)


@functools.cache
def _fields(cls: type[msgspec.Struct]) -> tuple[dict[str, Any], str]:
    """The fields of ``cls`` by encoded name, and their list for messages (computed once
    per Struct: msgspec resolves annotations on every call, which a 100k-node workflow
    would otherwise pay per node)."""
    fields = {f.encode_name: f for f in msgspec.structs.fields(cls)}
    return fields, ", ".join(fields) or "none"


@functools.cache
def _rule_configs() -> tuple[type[BranchConfig], type[SubworkflowConfig]]:
    """The configs checked across nodes. Imported late: importing spane.builtins registers
    the built-in node types, whose modules may import the engine, and so this module."""
    from .builtins.configs import BranchConfig, SubworkflowConfig

    return BranchConfig, SubworkflowConfig


@functools.cache
def _empty(cls: type[msgspec.Struct]) -> msgspec.Struct:
    """``cls`` made from an empty config (raises ``msgspec.ValidationError`` if it needs more)."""
    return msgspec.convert({}, cls)


@functools.cache
def _struct_in(tp: Any) -> type[msgspec.Struct] | None:
    """Return the Struct inside ``S``, ``S | None`` or ``list[S]``, if any."""
    args = (
        typing.get_args(tp)
        if isinstance(tp, types.UnionType) or typing.get_origin(tp) is list
        else (tp,)
    )
    structs = [a for a in args if isinstance(a, type) and issubclass(a, msgspec.Struct)]
    return structs[0] if structs else None


def _convert(value: object, tp: Any, path: str) -> Iterator[Problem]:
    try:
        msgspec.convert(value, tp)
    except msgspec.ValidationError as exc:
        match = _MSGSPEC_PATH.match(str(exc))
        assert match is not None  # the pattern matches any text
        rest = match["path"] or ""
        message = match["message"]
        if typing.get_origin(tp) is typing.Literal and not rest:
            message += f"; allowed: {', '.join(map(str, typing.get_args(tp)))}"
        yield Problem(path + rest if path else rest.lstrip("."), message)


def _meaning(
    data: Mapping[str, Any], workflow_exists: Callable[[str], bool] | None
) -> Iterator[Problem]:
    """Yield the problems of a definition's content, skipping values of the wrong shape."""
    workflow_id = data.get("id")
    if isinstance(workflow_id, str) and not _ID.fullmatch(workflow_id):
        yield Problem("id", _bad_id(workflow_id))
    lane = data.get("lane", "default")
    if isinstance(lane, str) and lane not in registry.LANES:
        yield Problem("lane", f"unknown lane {lane!r}; allowed: {', '.join(registry.LANES)}")
    schema = data.get("input_schema")
    if isinstance(schema, dict):
        try:
            validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as exc:
            where = f" (at {_path('', *exc.path)})" if exc.path else ""
            yield Problem("input_schema", f"not a valid JSON Schema: {exc.message}{where}")
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, list):
        return
    if not raw_nodes:
        yield Problem("nodes", "a workflow needs at least one node")
    skeleton = _skeleton(raw_nodes)
    yield from _graph(raw_nodes, skeleton)
    successors: dict[str, list[str]] = {}
    for _, node_id, after in skeleton:
        for parent in after:
            successors.setdefault(str(parent), []).append(node_id)
    for i, raw in enumerate(raw_nodes):
        if isinstance(raw, Mapping):
            yield from _node(raw, f"nodes[{i}]")
            kids = successors.get(str(raw.get("id")), [])
            yield from _config(raw, f"nodes[{i}].config", workflow_id, kids, workflow_exists)


def _skeleton(raw_nodes: Sequence[object]) -> list[tuple[int, str, list[object]]]:
    """Return index, id and ``after`` of each node that has a string id."""
    return [
        (i, raw["id"], raw["after"] if isinstance(raw.get("after"), list) else [])
        for i, raw in enumerate(raw_nodes)
        if isinstance(raw, Mapping) and isinstance(raw.get("id"), str)
    ]


def _graph(
    raw_nodes: Sequence[object], nodes: list[tuple[int, str, list[object]]]
) -> Iterator[Problem]:
    """Yield id, reference, cycle and reachability problems (``nodes``: the skeleton)."""
    ids = {node_id for _, node_id, _ in nodes}
    first: dict[str, int] = {}
    parents: dict[str, list[str]] = {}
    edges: dict[tuple[str, str], str] = {}  # (parent, child) -> path of the `after` entry
    suggestions = _MAX_SUGGESTIONS
    for i, node_id, after in nodes:
        if not _ID.fullmatch(node_id):
            yield Problem(f"nodes[{i}].id", _bad_id(node_id))
        if node_id in first:
            where = f"first at nodes[{first[node_id]}]"
            yield Problem(f"nodes[{i}].id", f"duplicate node id {node_id!r} ({where})")
        seen: dict[str, None] = {}  # ordered, and linear to test for a 100k-parent join
        for k, parent in enumerate(after):
            where = f"nodes[{i}].after[{k}]"
            if not isinstance(parent, str):
                continue  # reported by the shape pass
            if parent == node_id:
                yield Problem(where, f"node {node_id!r} lists itself")
            elif parent in seen:
                yield Problem(where, f"{parent!r} is listed twice")
            elif parent not in ids:
                # A suggestion scans every id: only the first few typos get one.
                hint = _suggest(parent, ids) if suggestions > 0 else ""
                suggestions -= 1
                yield Problem(where, f"no node {parent!r}{hint}")
            else:
                seen[parent] = None
                edges.setdefault((parent, node_id), where)
        if node_id not in first:
            first[node_id], parents[node_id] = i, list(seen)
    if raw_nodes and all(isinstance(raw, Mapping) and raw.get("after") for raw in raw_nodes):
        yield Problem("nodes", "no entry node: every node has `after`")
    # Nodes left out of a topological order can never become ready: they are on a cycle or
    # run after one. A cycle is reported at the `after` entry that closes it.
    stuck = set(parents) - set(topological_order(parents))
    on_cycle: set[str] = set()
    for cycle in find_cycles({name: parents[name] for name in parents if name in stuck}):
        on_cycle.update(cycle)
        yield Problem(edges[cycle[-2], cycle[-1]], f"cycle: {' -> '.join(cycle)}")
    for name in sorted(stuck - on_cycle, key=first.__getitem__):
        blocked = next(p for p in parents[name] if p in stuck)
        message = f"unreachable: runs after {blocked!r}, which is on or after a cycle"
        yield Problem(f"nodes[{first[name]}]", message)


def _node(raw: Mapping[str, Any], path: str) -> Iterator[Problem]:
    """Yield the problems of a node's type, durations and retry policy."""
    node_type = raw.get("type")
    if isinstance(node_type, str) and registry.get(node_type) is None:
        known = registry.names()
        listed = f"known types: {', '.join(known)}" if known else "no node types are registered"
        message = f"unknown node type {node_type!r}{_suggest(node_type, known)}; {listed}"
        yield Problem(f"{path}.type", message)
    if "retry" not in raw and "timeout" not in raw:
        return  # most nodes of a wide graph: nothing more to check
    retry = raw.get("retry")
    retry = retry if isinstance(retry, Mapping) else {}
    durations = {"timeout": raw.get("timeout")}
    durations |= {f"retry.{key}": retry.get(key) for key in ("delay", "max_delay")}
    for name, value in durations.items():
        try:
            # Values of the wrong type (None, bool, lists...) are left to the shape pass.
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                parse_duration(value)
        except ValueError as exc:
            yield Problem(f"{path}.{name}", str(exc))
    attempts, backoff = retry.get("max_attempts"), retry.get("backoff")
    if type(attempts) is int and attempts < 1:
        yield Problem(f"{path}.retry.max_attempts", "must be at least 1")
    if isinstance(backoff, str) and backoff not in _BACKOFFS:
        message = f"unknown backoff {backoff!r}; allowed: {', '.join(_BACKOFFS)}"
        yield Problem(f"{path}.retry.backoff", message)


def _config(
    raw: Mapping[str, Any],
    path: str,
    workflow_id: object,
    successors: Sequence[str],
    workflow_exists: Callable[[str], bool] | None,
) -> Iterator[Problem]:
    """Yield the problems of a node's config: its shape, then branch and sub-workflow rules."""
    node_type = registry.get(raw["type"]) if isinstance(raw.get("type"), str) else None
    data = raw.get("config", {})
    if node_type is None or node_type.config is None or not isinstance(data, Mapping):
        return  # a type without a config struct takes any mapping
    try:
        # Most nodes of a wide fan-out have no config: that conversion is made once.
        config = msgspec.convert(data, node_type.config) if data else _empty(node_type.config)
    except msgspec.ValidationError:
        yield from _shape(data, node_type.config, path)
        return
    branch, subworkflow = _rule_configs()
    node_id = raw.get("id")
    if isinstance(config, branch):
        chosen = [
            (f"cases[{i}].next[{k}]", target)
            for i, case in enumerate(config.cases)
            for k, target in enumerate(case.next)
        ]
        chosen += [(f"default[{k}]", target) for k, target in enumerate(config.default)]
        listed = f"(successors: {', '.join(successors) or 'none'})"
        for where, target in chosen:
            if target not in successors:
                message = f"{target!r} is not a direct successor of {node_id!r} {listed}"
                yield Problem(f"{path}.{where}", message)
    if isinstance(config, subworkflow):
        if config.workflow == workflow_id:
            message = f"recursive sub-workflow: {node_id!r} runs its own workflow"
            yield Problem(f"{path}.workflow", message)
        elif workflow_exists is not None and not workflow_exists(config.workflow):
            message = f"unknown sub-workflow target {config.workflow!r}"
            yield Problem(f"{path}.workflow", message)


def _bad_id(value: str) -> str:
    return (
        f"invalid id {value!r}: use lowercase letters, digits, '-' and '_', "
        "starting with a letter or digit, at most 100 characters"
    )


def _suggest(word: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _path(base: str, *keys: object) -> str:
    for key in keys:
        base = f"{base}[{key}]" if isinstance(key, int) else f"{base}.{key}" if base else str(key)
    return base
