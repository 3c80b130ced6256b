"""Workflow definitions: loading, validation (every problem, with its path) and graphs."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from spane import errors, registry
from spane.builtins import configs
from spane.definitions import (
    Node,
    Schedule,
    Trigger,
    Webhook,
    Workflow,
    build_graph,
    definition_hash,
    find_cycles,
    to_dict,
    topological_order,
)
from spane.registry import NodeType, RetryPolicy
from spane.validation import load_definition, validate_input

SPEC_EXAMPLE = """\
id: order-fulfilment            # lowercase letters, digits, '-', '_'
lane: default                   # high | default | low
input_schema: {type: object, required: [order_id]}   # optional JSON Schema
triggers: [{schedule: {cron: "0 * * * *"}}, {webhook: {path: orders}}]   # optional
nodes:
  - id: fetch
    type: fetch_order           # a registered node type
    config: {source: shop}      # checked against the node type's config struct
    retry: {max_attempts: 5, backoff: exponential, delay: 1s, max_delay: 1m}
    timeout: 30s
  - id: route
    type: branch
    after: [fetch]
    config: {cases: [{when: "total > `100`", next: [review]}], default: [ship]}
  - {id: review, type: subworkflow, after: [route],
     config: {workflow: manual-review, input: "{order: order_id}"}}
  - {id: ship, type: delay, after: [route], config: {duration: 10m}}
  - {id: notify, type: transform, after: [review, ship], config: {expression: "{done: `true`}"}}
"""


class FetchConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    source: str
    limit: int = 10


@pytest.fixture(autouse=True, scope="module")
def node_types() -> Iterator[None]:
    """Register the node types the definitions below use; put back what they replaced
    (the registry is process-wide, and other tests use the real ``fetch_order``)."""
    saved = {name: registry.get(name) for name in ("fetch_order", "anything")}
    stand_ins = {
        "transform": configs.TransformConfig,
        "branch": configs.BranchConfig,
        "delay": configs.DelayConfig,
        "noop": configs.NoopConfig,
        "subworkflow": configs.SubworkflowConfig,
    }
    # spane.builtins may register the real ones; stand-ins only fill the gaps.
    for name, config in stand_ins.items():
        if registry.get(name) is None:
            registry.register(NodeType(name=name, fn=lambda ctx: None, config=config))
    registry.register(NodeType(name="fetch_order", fn=lambda ctx: None, config=FetchConfig))
    registry.register(NodeType(name="anything", fn=lambda ctx: None))
    yield
    for previous in saved.values():
        if previous is not None:
            registry.register(previous)


def workflow(*nodes: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"id": "wf", "nodes": list(nodes), **top}


def node(node_id: str, *after: str, type: str = "anything", **fields: Any) -> dict[str, Any]:
    return {"id": node_id, "type": type, "after": list(after), **fields}


def problems(source: Any, **kwargs: Any) -> list[tuple[str, str]]:
    with pytest.raises(errors.DefinitionError) as info:
        load_definition(source, **kwargs)
    return [(p.path, p.message) for p in info.value.problems]


def problem_at(source: Any, path: str, **kwargs: Any) -> str:
    """Return the one message reported at ``path``."""
    found = [message for where, message in problems(source, **kwargs) if where == path]
    assert len(found) == 1, problems(source, **kwargs)
    return found[0]


# Loading from each kind of source


def test_the_spec_example_loads() -> None:
    wf = load_definition(SPEC_EXAMPLE)
    assert wf.id == "order-fulfilment"
    assert [n.id for n in wf.nodes] == ["fetch", "route", "review", "ship", "notify"]
    assert wf.nodes[0].retry == RetryPolicy(
        max_attempts=5, backoff="exponential", delay="1s", max_delay="1m"
    )
    assert wf.nodes[0].timeout == "30s"
    assert wf.nodes[1].config == {
        "cases": [{"when": "total > `100`", "next": ["review"]}],
        "default": ["ship"],
    }
    assert wf.triggers == [
        Trigger(schedule=Schedule(cron="0 * * * *")),
        Trigger(webhook=Webhook(path="orders")),
    ]
    assert wf.input_schema == {"type": "object", "required": ["order_id"]}


def test_dict_json_text_files_and_workflows_load_alike(tmp_path: pathlib.Path) -> None:
    expected = load_definition(SPEC_EXAMPLE)
    data = to_dict(expected)
    (tmp_path / "wf.json").write_text(json.dumps(data))
    (tmp_path / "wf.yaml").write_text(SPEC_EXAMPLE)
    (tmp_path / "wf.yml").write_text(SPEC_EXAMPLE)
    sources: list[Any] = [
        data,
        json.dumps(data),
        json.dumps(data, indent=2),
        expected,
        tmp_path / "wf.json",
        str(tmp_path / "wf.yaml"),
        tmp_path / "wf.yml",
    ]
    for source in sources:
        assert load_definition(source) == expected, source


def test_a_workflow_instance_is_checked_again() -> None:
    wf = Workflow(id="wf", nodes=[Node(id="a", type="nope")])
    assert problems(wf)[0][0] == "nodes[0].type"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id: [unclosed\n", "invalid YAML"),
        ('{"id": ', "invalid JSON"),
        ("- a list\n- not a mapping\n", "expected a mapping, got list"),
        ("no-such-file.yaml", "cannot read 'no-such-file.yaml'"),
        ("workflow.txt", "expected a .yaml, .yml or .json file"),
    ],
)
def test_unreadable_sources_are_reported(text: str, message: str) -> None:
    [(path, reported)] = problems(text)
    assert path == ""
    assert message in reported


def test_the_error_names_the_file(tmp_path: pathlib.Path) -> None:
    source = tmp_path / "broken.yaml"
    source.write_text("id: wf\nnodes: []\n")
    with pytest.raises(errors.DefinitionError, match=r"broken\.yaml"):
        load_definition(source)


def test_falsy_config_values_survive() -> None:
    config = {"zero": 0, "no": False, "empty": "", "none": None, "list": [], "map": {}}
    wf = load_definition(workflow(node("a", config=config)))
    assert wf.nodes[0].config == config
    assert load_definition(to_dict(wf)).nodes[0].config == config


def test_to_dict_leaves_defaults_out_and_round_trips() -> None:
    wf = load_definition(workflow(node("a"), node("b", "a", timeout=0)))
    assert to_dict(wf) == {
        "id": "wf",
        "nodes": [
            {"id": "a", "type": "anything"},
            {"id": "b", "type": "anything", "after": ["a"], "timeout": 0},
        ],
    }
    assert load_definition(to_dict(wf)) == wf


# Shape: unknown, missing and mistyped fields


def test_unknown_fields_are_named_with_the_allowed_ones() -> None:
    source = workflow(
        node("a", retry={"max_atempts": 2}, colour="red"),
        triggers=[{"schedule": {"cron": "* * * * *", "tz": "UTC"}}, {"web_hook": {}}],
        lanes="high",
    )
    found = dict(problems(source))
    assert found["lanes"].startswith("unknown field (did you mean 'lane'?); allowed: id, nodes")
    assert "allowed: id, type, after, config, retry" in found["nodes[0].colour"]
    assert "(did you mean 'max_attempts'?)" in found["nodes[0].retry.max_atempts"]
    assert "allowed: max_attempts, backoff, delay, max_delay" in found["nodes[0].retry.max_atempts"]
    allowed = "cron, every, timezone, input, tenant, overlap, catch_up"
    assert found["triggers[0].schedule.tz"] == f"unknown field; allowed: {allowed}"
    assert "(did you mean 'webhook'?); allowed: schedule, webhook" in found["triggers[1].web_hook"]


def test_missing_required_fields() -> None:
    found = problems({"nodes": [{"id": "a"}, {"type": "anything"}]})
    assert ("id", "required field is missing") in found
    assert ("nodes[0].type", "required field is missing") in found
    assert ("nodes[1].id", "required field is missing") in found


def test_wrong_types_are_reported_for_every_node() -> None:
    source = workflow(
        node("a", timeout=True),
        {"id": "b", "type": "anything", "after": "a"},
        "not a node",
        node("d", continue_on_fail="yes", description=3),
    )
    found = problems(source)
    assert ("nodes[0].timeout", "Expected `float | str | null`, got `bool`") in found
    assert ("nodes[1].after", "Expected `array`, got `str`") in found
    assert ("nodes[2]", "expected a mapping, got str") in found
    assert ("nodes[3].continue_on_fail", "Expected `bool`, got `str`") in found
    assert ("nodes[3].description", "Expected `str`, got `int`") in found


def test_a_nested_type_error_has_its_full_path() -> None:
    source = workflow(
        node("a"),
        node(
            "b",
            "a",
            type="branch",
            config={"cases": [{"when": "x", "next": ["c"]}, {"when": 5, "next": ["c"]}]},
        ),
        node("c", "b"),
    )
    assert problem_at(source, "nodes[1].config.cases[1].when") == "Expected `str`, got `int`"


def test_a_definition_must_be_a_mapping() -> None:
    assert problems(["id", "wf"]) == [("", "expected a mapping, got list")]


# Ids, lane and nodes


@pytest.mark.parametrize(
    "bad", ["Upper", "-dash-first", "_under", "has space", "dot.ted", "", "a" * 101]
)
def test_invalid_ids_are_reported(bad: str) -> None:
    found = dict(problems(workflow(node("ok"), node(bad), id=bad)))
    assert found["id"].startswith(f"invalid id {bad!r}")
    assert found["nodes[1].id"].startswith(f"invalid id {bad!r}")


@pytest.mark.parametrize("good", ["a", "0-start", "snake_and-kebab-9", "a" * 100])
def test_valid_ids_load(good: str) -> None:
    assert load_definition(workflow(node(good), id=good)).id == good


def test_lane_must_be_known() -> None:
    message = problem_at(workflow(node("a"), lane="fast"), "lane")
    assert message == "unknown lane 'fast'; allowed: high, default, low"


def test_a_workflow_needs_a_node() -> None:
    assert problems(workflow()) == [("nodes", "a workflow needs at least one node")]


# References between nodes


def test_duplicate_ids_point_at_the_first() -> None:
    found = problems(workflow(node("a"), node("b", "a"), node("a", "b")))
    assert found == [("nodes[2].id", "duplicate node id 'a' (first at nodes[0])")]


def test_missing_parent_suggests_a_close_name() -> None:
    source = workflow(node("fetch"), node("ship", "fecth"), node("done", "ship", "zzz"))
    found = problems(source)
    assert found == [
        ("nodes[1].after[0]", "no node 'fecth' (did you mean 'fetch'?)"),
        ("nodes[2].after[1]", "no node 'zzz'"),
    ]


def test_self_and_repeated_parents() -> None:
    found = problems(workflow(node("a"), node("b", "a", "b", "a")))
    assert found == [
        ("nodes[1].after[1]", "node 'b' lists itself"),
        ("nodes[1].after[2]", "'a' is listed twice"),
    ]


def test_a_cycle_is_reported_once_with_its_path() -> None:
    source = workflow(node("start"), node("a", "start", "c"), node("b", "a"), node("c", "b"))
    assert problems(source) == [("nodes[1].after[1]", "cycle: a -> b -> c -> a")]


def test_each_cycle_is_reported() -> None:
    source = workflow(
        node("start"),
        node("a", "start", "b"),
        node("b", "a"),
        node("x", "start", "z"),
        node("y", "x"),
        node("z", "y"),
    )
    assert problems(source) == [
        ("nodes[1].after[1]", "cycle: a -> b -> a"),
        ("nodes[3].after[1]", "cycle: x -> y -> z -> x"),
    ]


def test_nodes_after_a_cycle_are_unreachable() -> None:
    source = workflow(
        node("start"), node("a", "start", "b"), node("b", "a"), node("late", "b", "start")
    )
    found = problems(source)
    assert ("nodes[3]", "unreachable: runs after 'b', which is on or after a cycle") in found
    assert len(found) == 2  # the cycle, and the one node stuck behind it


def test_no_entry_node() -> None:
    found = problems(workflow(node("a", "b"), node("b", "a")))
    assert ("nodes", "no entry node: every node has `after`") in found
    assert ("nodes[0].after[0]", "cycle: a -> b -> a") in found


# Node types, configs, durations and retry


def test_unknown_node_type_lists_the_known_ones() -> None:
    message = problem_at(workflow(node("a", type="fetch_ordr")), "nodes[0].type")
    assert message.startswith("unknown node type 'fetch_ordr' (did you mean 'fetch_order'?)")
    assert f"known types: {', '.join(registry.names())}" in message


def test_unknown_node_type_with_an_empty_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "get", lambda name: None)
    monkeypatch.setattr(registry, "names", lambda: [])
    message = problem_at(workflow(node("a")), "nodes[0].type")
    assert message == "unknown node type 'anything'; no node types are registered"


def test_config_is_checked_against_the_node_type() -> None:
    source = workflow(
        node("a", type="fetch_order", config={"limit": "ten", "sorce": "shop"}),
        node("b", "a", type="delay", config={"duration": "soon"}),
        node("c", "b", type="transform", config={"expression": "(("}),
        node("d", "c", type="noop", config={"x": 1}),
    )
    found = problems(source)
    assert ("nodes[0].config.source", "required field is missing") in found
    assert ("nodes[0].config.limit", "Expected `int`, got `str`") in found
    assert (
        "(did you mean 'source'?); allowed: source, limit" in dict(found)["nodes[0].config.sorce"]
    )
    assert "expected a duration like" in dict(found)["nodes[1].config"]
    assert "invalid JMESPath expression '(('" in dict(found)["nodes[2].config"]
    assert dict(found)["nodes[3].config.x"] == "unknown field; allowed: none"
    assert len(found) == 6


def test_a_type_without_config_struct_takes_any_config() -> None:
    wf = load_definition(workflow(node("a", config={"anything": {"goes": [1, 2]}})))
    assert wf.nodes[0].config == {"anything": {"goes": [1, 2]}}


def test_config_must_be_a_mapping() -> None:
    message = problem_at(workflow(node("a", config=[1])), "nodes[0].config")
    assert message == "Expected `object`, got `array`"


def test_bad_durations_and_retry() -> None:
    retry = {"max_attempts": 0, "backoff": "random", "delay": "1 sec", "max_delay": -5}
    found = dict(problems(workflow(node("a", timeout="forever", retry=retry))))
    assert "expected a duration like '500ms'" in found["nodes[0].timeout"]
    assert "got 'forever'" in found["nodes[0].timeout"]
    assert "got '1 sec'" in found["nodes[0].retry.delay"]
    assert found["nodes[0].retry.max_delay"] == "a duration cannot be negative, got -5"
    assert found["nodes[0].retry.max_attempts"] == "must be at least 1"
    assert found["nodes[0].retry.backoff"] == (
        "unknown backoff 'random'; allowed: exponential, fixed, linear"
    )
    assert len(found) == 5


def test_meaning_is_checked_beside_shape_problems() -> None:
    # An unknown retry field must not hide the node's other problems.
    retry = {"max_attempts": 0, "jitter": True}
    found = dict(problems(workflow(node("a", type="nope", retry=retry, timeout="x"))))
    assert set(found) == {
        "nodes[0].retry.jitter",
        "nodes[0].retry.max_attempts",
        "nodes[0].timeout",
        "nodes[0].type",
    }


@pytest.mark.parametrize("timeout", ["500ms", "1h30m", 2, 2.5, 0])
def test_good_durations_load(timeout: str | float) -> None:
    retry = {"delay": timeout, "max_delay": "1d", "backoff": "linear", "max_attempts": 1}
    wf = load_definition(workflow(node("a", timeout=timeout, retry=retry)))
    assert wf.nodes[0].timeout == timeout


# Branch and sub-workflow rules


def branching(cases: list[dict[str, Any]], default: list[str]) -> dict[str, Any]:
    config = {"cases": cases, "default": default}
    return workflow(
        node("start"),
        node("route", "start", type="branch", config=config),
        node("left", "route"),
        node("right", "route"),
        node("after-left", "left"),
    )


def test_branch_targets_are_direct_successors() -> None:
    wf = load_definition(branching([{"when": "x", "next": ["left"]}], ["right"]))
    assert build_graph(wf).children["route"] == ("left", "right")


def test_branch_targets_that_are_not_successors_are_reported() -> None:
    source = branching(
        [{"when": "x", "next": ["left", "after-left"]}, {"when": "y", "next": ["start"]}],
        ["right", "ghost"],
    )
    found = problems(source)
    listed = "(successors: left, right)"
    assert found == [
        (
            "nodes[1].config.cases[0].next[1]",
            f"'after-left' is not a direct successor of 'route' {listed}",
        ),
        (
            "nodes[1].config.cases[1].next[0]",
            f"'start' is not a direct successor of 'route' {listed}",
        ),
        ("nodes[1].config.default[1]", f"'ghost' is not a direct successor of 'route' {listed}"),
    ]


def test_branch_with_invalid_condition() -> None:
    message = problem_at(
        branching([{"when": "((", "next": ["left"]}], []), "nodes[1].config.cases[0]"
    )
    assert message.startswith("invalid JMESPath expression '(('")


def sub(target: str) -> dict[str, Any]:
    return workflow(node("a"), node("child", "a", type="subworkflow", config={"workflow": target}))


def test_subworkflow_targets_are_looked_up() -> None:
    asked: list[str] = []

    def exists(workflow_id: str) -> bool:
        asked.append(workflow_id)
        return workflow_id == "known"

    assert load_definition(sub("known"), workflow_exists=exists).nodes[1].config == {
        "workflow": "known"
    }
    message = problem_at(sub("other"), "nodes[1].config.workflow", workflow_exists=exists)
    assert message == "unknown sub-workflow target 'other'"
    assert asked == ["known", "other"]


def test_subworkflow_targets_are_not_looked_up_without_a_lookup() -> None:
    assert load_definition(sub("whatever")).nodes[1].type == "subworkflow"


def test_a_workflow_cannot_run_itself() -> None:
    message = problem_at(sub("wf"), "nodes[1].config.workflow")
    assert message == "recursive sub-workflow: 'child' runs its own workflow"
    assert (
        problem_at(sub("wf"), "nodes[1].config.workflow", workflow_exists=lambda w: True) == message
    )


# Input schema and triggers


def test_input_schema_must_be_a_json_schema() -> None:
    message = problem_at(workflow(node("a"), input_schema={"type": "thing"}), "input_schema")
    assert message.startswith("not a valid JSON Schema: 'thing' is not valid")


def test_validate_input_names_every_failing_path() -> None:
    schema = {
        "type": "object",
        "required": ["order_id", "total"],
        "properties": {"items": {"type": "array", "items": {"type": "integer"}}},
    }
    wf = load_definition(workflow(node("a"), input_schema=schema))
    validate_input(wf, {"order_id": "o-1", "total": 3, "items": [1, 2]})
    with pytest.raises(errors.InputError) as info:
        validate_input(wf, {"items": [1, "two"]})
    lines = str(info.value).splitlines()[1:]
    assert lines == [
        "  - input.order_id: 'order_id' is a required property",
        "  - input.total: 'total' is a required property",
        "  - input.items[1]: 'two' is not of type 'integer'",
    ]


def test_validate_input_without_schema_accepts_anything() -> None:
    validate_input(load_definition(workflow(node("a"))), ["any", {"thing": None}])


@pytest.mark.parametrize(
    ("trigger", "path", "message"),
    [
        ({}, "triggers[0]", "set exactly one of: schedule, webhook"),
        (
            {"schedule": {"cron": "* * * * *"}, "webhook": {"path": "x"}},
            "triggers[0]",
            "set exactly one of: schedule, webhook",
        ),
        (
            {"schedule": {"cron": "0 * * *"}},
            "triggers[0].schedule",
            "expected 5 cron fields (minute hour day month weekday): '0 * * *'",
        ),
        ({"webhook": {"path": "  "}}, "triggers[0].webhook", "a webhook path must not be empty"),
        ({"webhook": {}}, "triggers[0].webhook.path", "required field is missing"),
    ],
)
def test_bad_triggers(trigger: dict[str, Any], path: str, message: str) -> None:
    assert problems(workflow(node("a"), triggers=[trigger])) == [(path, message)]


# Every problem at once


def test_every_problem_is_reported_at_once_in_path_order() -> None:
    source = {
        "id": "Bad",
        "lane": "fast",
        "extra": 1,
        "nodes": [
            node("a", timeout="never"),
            node("b", "a", "ghost", type="nope"),
            node("c", "d"),
            node("d", "c"),
            node("a"),
        ]
        + [node(f"n{i}", "a") for i in range(6)]
        + [node("late", "a", type="delay", config={})],
    }
    with pytest.raises(errors.DefinitionError) as info:
        load_definition(source)
    paths = [p.path for p in info.value.problems]
    assert paths == [
        "extra",
        "id",
        "lane",
        "nodes[0].timeout",
        "nodes[1].after[1]",
        "nodes[1].type",
        "nodes[2].after[0]",
        "nodes[4].id",
        "nodes[11].config.duration",
    ]
    assert "(Bad) has 9 problem(s)" in str(info.value)


# Graph, order and hash


def test_graph_of_the_spec_example() -> None:
    graph = build_graph(load_definition(SPEC_EXAMPLE))
    assert graph.parents == {
        "fetch": (),
        "route": ("fetch",),
        "review": ("route",),
        "ship": ("route",),
        "notify": ("review", "ship"),
    }
    assert graph.children == {
        "fetch": ("route",),
        "route": ("review", "ship"),
        "review": ("notify",),
        "ship": ("notify",),
        "notify": (),
    }
    assert {n for n, ps in graph.parents.items() if not ps} == {"fetch"}
    assert graph.sinks == ("notify",)
    assert graph.order == ("fetch", "route", "review", "ship", "notify")
    assert graph.nodes["ship"].config == {"duration": "10m"}


def test_order_follows_dependencies_not_definition_order() -> None:
    wf = load_definition(
        workflow(node("last", "mid", "b"), node("mid", "a"), node("b"), node("a"), node("lone"))
    )
    graph = build_graph(wf)
    assert {n for n, ps in graph.parents.items() if not ps} == {"b", "a", "lone"}
    assert graph.sinks == ("last", "lone")
    assert graph.order == ("b", "a", "mid", "last", "lone")


def test_build_graph_refuses_a_cycle() -> None:
    wf = Workflow(
        id="wf",
        nodes=[
            Node(id="a", type="x"),
            Node(id="b", type="x", after=["a", "c"]),
            Node(id="c", type="x", after=["b"]),
        ],
    )
    with pytest.raises(errors.DefinitionError, match="nodes on or after a cycle: b, c"):
        build_graph(wf)


def test_topological_order_and_cycles() -> None:
    parents = {"a": ["c"], "b": [], "c": ["b", "a"], "d": ["b"]}
    assert topological_order(parents) == ["b", "d"]
    assert list(find_cycles(parents)) == [["a", "c", "a"]]


def test_find_cycles_handles_long_chains() -> None:
    parents = {f"n{i}": [f"n{i - 1}"] for i in range(1, 5000)} | {"n0": ["n4999"]}
    [cycle] = find_cycles(parents)
    assert len(cycle) == 5001


def test_definition_hash_ignores_key_order_and_spelt_out_defaults() -> None:
    one = load_definition(SPEC_EXAMPLE)
    data = to_dict(one)
    shuffled = dict(reversed(list(data.items())))
    shuffled["nodes"] = [dict(reversed(list(n.items()))) for n in data["nodes"]]
    shuffled["nodes"][1]["config"] = dict(reversed(list(data["nodes"][1]["config"].items())))
    shuffled["description"] = ""
    shuffled["nodes"][0]["continue_on_fail"] = False
    assert definition_hash(load_definition(shuffled)) == definition_hash(one)
    assert len(definition_hash(one)) == 64


def test_definition_hash_changes_with_content() -> None:
    base = workflow(node("a", config={"x": 0}))
    changed = workflow(node("a", config={"x": False}))
    hashes = {definition_hash(load_definition(d)) for d in (base, changed, {**base, "lane": "low"})}
    assert len(hashes) == 3
