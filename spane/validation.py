"""Load workflow definitions and check them, reporting every problem at once with its path.

Two passes run over the raw data. The shape pass checks each Struct field by field (msgspec
alone stops at the first error), so one bad node or field does not hide the others. The
meaning pass then checks ids, references, cycles, node types and configs of every piece it
can read.
"""

from __future__ import annotations

import difflib
import os
import pathlib
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jsonschema
import msgspec
import yaml
from jsonschema.validators import validator_for

from . import errors, registry
from .definitions import Workflow, find_cycles, to_dict, topological_order
from .durations import parse_duration
from .errors import Problem

_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")
_BACKOFFS = ("exponential", "fixed", "linear")
_SUFFIXES = (".yaml", ".yml", ".json")
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
    data, origin = _read(source)
    problems = list(_shape(data, Workflow, ""))
    if isinstance(data, Mapping):
        problems += _meaning(data, workflow_exists)
        if not origin and isinstance(data.get("id"), str):
            origin = data["id"]
    if problems:
        # Sorted by path (numbers as numbers), so each node's problems read together.
        problems.sort(
            key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.path)]
        )
        raise errors.DefinitionError(problems, origin)
    return msgspec.convert(data, Workflow)


def validate_input(workflow: Workflow, value: Any) -> None:
    """Check an execution input against the workflow's ``input_schema``, if it has one.

    Raises:
        InputError: Naming the path of every failing part, e.g. ``input.order_id``.
    """
    if workflow.input_schema is None:
        return
    validator = validator_for(workflow.input_schema)(workflow.input_schema)
    lines = []
    for error in sorted(validator.iter_errors(value), key=lambda e: e.json_path):
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
        return (msgspec.json.decode(text) if kind == "JSON" else yaml.safe_load(text)), origin
    except (msgspec.DecodeError, yaml.YAMLError) as exc:
        problem = Problem("", f"invalid {kind}: {exc}")
        raise errors.DefinitionError([problem], origin) from None


def _shape(data: object, cls: type[msgspec.Struct], path: str) -> Iterator[Problem]:
    """Yield every shape problem of ``data`` as a ``cls``: unknown, missing and mistyped fields."""
    if not isinstance(data, Mapping):
        yield Problem(path, f"expected a mapping, got {_kind(data)}")
        return
    fields = {f.encode_name: f for f in msgspec.structs.fields(cls)}
    allowed = ", ".join(fields) or "none"
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
        value, nested = data[name], _struct_in(field.type)
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
        yield Problem(path + rest if path else rest.lstrip("."), match["message"])


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
    yield from _graph(raw_nodes)
    successors: dict[str, list[str]] = {}
    for _, node_id, after in _skeleton(raw_nodes):
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


def _graph(raw_nodes: Sequence[object]) -> Iterator[Problem]:
    """Yield id, reference, cycle and reachability problems."""
    nodes = _skeleton(raw_nodes)
    ids = {node_id for _, node_id, _ in nodes}
    first: dict[str, int] = {}
    parents: dict[str, list[str]] = {}
    edges: dict[tuple[str, str], str] = {}  # (parent, child) -> path of the `after` entry
    for i, node_id, after in nodes:
        if not _ID.fullmatch(node_id):
            yield Problem(f"nodes[{i}].id", _bad_id(node_id))
        if node_id in first:
            where = f"first at nodes[{first[node_id]}]"
            yield Problem(f"nodes[{i}].id", f"duplicate node id {node_id!r} ({where})")
        seen: list[str] = []
        for k, parent in enumerate(after):
            where = f"nodes[{i}].after[{k}]"
            if not isinstance(parent, str):
                continue  # reported by the shape pass
            if parent == node_id:
                yield Problem(where, f"node {node_id!r} lists itself")
            elif parent in seen:
                yield Problem(where, f"{parent!r} is listed twice")
            elif parent not in ids:
                yield Problem(where, f"no node {parent!r}{_suggest(parent, ids)}")
            else:
                seen.append(parent)
                edges.setdefault((parent, node_id), where)
        if node_id not in first:
            first[node_id], parents[node_id] = i, seen
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
    node_type = raw.get("type")
    if isinstance(node_type, str) and registry.get(node_type) is None:
        known = registry.names()
        listed = f"known types: {', '.join(known)}" if known else "no node types are registered"
        message = f"unknown node type {node_type!r}{_suggest(node_type, known)}; {listed}"
        yield Problem(f"{path}.type", message)


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
    problems = list(_shape(data, node_type.config, path))
    yield from problems
    if problems:
        return
    # Imported here: importing spane.builtins registers the built-in node types, whose
    # modules may import the engine, and so this module.
    from .builtins.configs import BranchConfig, SubworkflowConfig

    config, node_id = msgspec.convert(data, node_type.config), raw.get("id")
    if isinstance(config, BranchConfig):
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
    if isinstance(config, SubworkflowConfig):
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
