"""Random state shapes through the whole sharing pipeline (issue 11): the handler's captures, the writer's
converter, the store's packer and the reader's ``references`` / ``unpack`` each walk inputs by the same bounds
(``MIN_SHARED``, ``MIN_SHARED_MAP``, ``MIN_SHARED_TEXT``, ``NEST_DEPTH``) and must agree on them, or a value
reads back as something else. Here a seeded generator makes states that evolve step by step as LangGraph states
do (new containers, items shared with the step before), on both sides of every bound: short and long lists,
dicts and texts at every depth, lists of dicts holding lists, and a user's dicts holding the store's reference
keys. A real LangGraph loop runs through them with the real handler, writer and SQLite store, cut into parts as
a long run is; every step's input and output must read back (as values, and as the export reads them: JSON text)
exactly as the graph saw it. The Python API's spans take the same states through the SDK's path.
"""

from __future__ import annotations

import random
from typing import Any, TypedDict

import orjson
import pytest
from langgraph.graph import END, START, StateGraph

from lftrace import client as client_module
from lftrace import langchain as langchain_module
from lftrace.langchain import CallbackHandler
from lftrace.sharing import ESCAPED, MAP_REF, MIN_SHARED, MIN_SHARED_MAP, MIN_SHARED_TEXT, NEST_DEPTH, REF, TEXT_REF
from test_long_runs import pages_read_as_text

STEPS = 80
MAX_DEPTH = NEST_DEPTH + 3  # deeper than the store looks for references


class Shapes:
    """Random JSON values around the sharing bounds, from one seed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.count = 0
        self._root: Any = None

    def scalar(self) -> Any:
        self.count += 1
        pick = self.rng.randrange(7)
        if pick == 0:
            return self.count
        if pick == 1:
            return self.rng.choice([None, True, False, 2.5, -1])
        if pick == 2 and self.rng.random() < 0.3:
            return "t" * self.rng.choice([MIN_SHARED_TEXT - 1, MIN_SHARED_TEXT, MIN_SHARED_TEXT + 7])
        return f"value {self.count}"

    def reserved(self, depth: int) -> dict[str, Any]:
        """A user's dict that holds one of the keys the store's references use."""
        key = self.rng.choice([REF, MAP_REF, TEXT_REF, ESCAPED])
        inner = self.rng.choice([f"not a reference {self.count}"] * 3 + [5, {REF: "x"}, [1, 2]])
        out: dict[str, Any] = {key: inner}
        if self.rng.random() < 0.25:
            out["other"] = self.value(depth + 1)
        return out

    def value(self, depth: int = 0) -> Any:
        if depth >= MAX_DEPTH:
            return self.scalar()
        pick = self.rng.random()
        if pick < 0.35:
            return self.scalar()
        if pick < 0.45:
            return self.reserved(depth)
        if pick < 0.5 and depth < 3:
            return self.tasks()
        # long containers mostly near the top (a state's fields), short ones further down: states of ~100 KB
        long = self.rng.random() < (0.5 if depth < 3 else 0.15)
        if pick < 0.75:
            size = self.rng.choice([MIN_SHARED - 1, MIN_SHARED, MIN_SHARED + 3] if long else [0, 1, 3])
            return [self.value(depth + 1) for _ in range(size)]
        size = self.rng.choice([MIN_SHARED_MAP - 1, MIN_SHARED_MAP, MIN_SHARED_MAP + 2] if long else [1, 2, 4])
        return {self.key(): self.value(depth + (2 if long else 1)) for _ in range(size)}

    def key(self) -> Any:
        """A dict key: mostly text, now and then a number (JSON makes it text: ``"7"``)."""
        number = self.rng.randrange(10**6)
        return number if self.rng.random() < 0.1 else f"k{number}"

    def tasks(self) -> list[dict[str, Any]]:
        """A plan's tasks: a long list of dicts, each with its own list (walked where it sits: ``WALKED_LIST``)."""
        size = self.rng.choice([MIN_SHARED, MIN_SHARED + 3])
        logs = [MIN_SHARED - 1, MIN_SHARED + 1]
        return [
            {"id": self.scalar(), "log": [self.scalar() for _ in range(self.rng.choice(logs))]} for _ in range(size)
        ]

    def paths(self, value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Every container and text in ``value`` (the places a step may change)."""
        found: list[tuple[Any, ...]] = [path] if isinstance(value, (dict, list, str)) else []
        if isinstance(value, dict):
            for key, item in value.items():
                found += self.paths(item, (*path, key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                found += self.paths(item, (*path, index))
        return found

    def step(self, state: dict[str, Any]) -> dict[str, Any]:
        """The next state: one to three changes made as a node makes them (new containers on the way to each
        change, everything else shared with the state before)."""
        for _ in range(self.rng.randint(1, 3)):
            self._root = state["shape"]
            path = self.rng.choice(self.paths(self._root))  # the shape is a dict (never replaced): never empty
            state = {**state, "shape": self._changed(self._root, path)}
        grown = [*state["log"], {"step": self.count, "notes": [*state["log"][-1]["notes"], self.scalar()]}]
        return {**state, "n": state["n"] + 1, "log": grown}

    def _changed(self, value: Any, path: tuple[Any, ...]) -> Any:
        if path:
            head, rest = path[0], path[1:]
            if isinstance(value, dict):
                return {**value, head: self._changed(value[head], rest)}
            return [*value[:head], self._changed(value[head], rest), *value[head + 1 :]]
        kind = self.rng.random()
        if isinstance(value, list):
            return [*value, self.value(NEST_DEPTH)] if kind < 0.8 else value[:-1]
        if isinstance(value, dict):
            replaced = kind >= 0.8 and value is not self._root
            return self.value(2) if replaced else {**value, f"new{self.count}": self.value(NEST_DEPTH)}
        return value + "more text " * self.rng.choice([1, 60]) if kind < 0.8 else self.scalar()


class State(TypedDict):
    n: int
    limit: int
    shape: Any  # the random part
    log: list[dict[str, Any]]  # a long list of dicts, each with a list that grows: shared or copied, never lost


def states(seed: int, steps: int) -> list[dict[str, Any]]:
    shapes = Shapes(seed)
    shape = {"a": shapes.value(1), "b": shapes.value(1), "c": shapes.value(2), "d": {"tasks": shapes.tasks()}}
    state = {"n": 0, "limit": steps, "shape": shape, "log": [{"step": 0, "notes": []}]}
    out = [state]
    for _ in range(steps):
        state = shapes.step(state)
        out.append(state)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_random_state_shapes_read_back_exactly_through_handler_writer_and_store(seed, tmp_path, monkeypatch):
    expected = states(seed, STEPS)
    # the states as JSON now: a failure below is the pipeline's, not a state changed by the run
    frozen = [orjson.loads(orjson.dumps(s, option=orjson.OPT_NON_STR_KEYS)) for s in expected]

    def evolve(state: State) -> dict[str, Any]:
        return expected[state["n"] + 1]

    builder = StateGraph(State)
    builder.add_node("evolve", evolve)
    builder.add_edge(START, "evolve")
    builder.add_conditional_edges("evolve", lambda s: "evolve" if s["n"] < s["limit"] else END, ["evolve", END])
    monkeypatch.setattr(langchain_module, "FRAGMENT_SIZE", 16)  # parts of a long run (shared across parts)
    monkeypatch.setenv("LFTRACE_STORE", str(tmp_path / "shapes.db"))
    client_module.reset_clients()
    handler = CallbackHandler()
    builder.compile().invoke(expected[0], {"callbacks": [handler], "recursion_limit": 10 * STEPS})
    client = client_module.get_client()
    client.flush()
    trace = client.get_trace(handler.last_trace_id)
    steps = [o for o in trace.observations if o.name == "evolve"]
    assert len(steps) == STEPS
    for index, obs in enumerate(steps):
        assert obs.input == frozen[index], f"seed {seed}, step {index}: input"
        assert obs.output == frozen[index + 1], f"seed {seed}, step {index}: output"
    assert trace.output == frozen[-1]
    assert b"<missing shared" not in orjson.dumps(trace.to_dict())
    assert pages_read_as_text(client.store, trace.id, 25) == len(trace.observations)  # the export's reading

    # the Python API (the SDK's path: no handler captures), the same states as spans of one trace
    lf = client_module.get_client()
    with lf.start_as_current_span(name="states") as root:
        for index in range(0, STEPS, 4):
            with lf.start_as_current_span(name=f"s{index}", input=expected[index]) as span:
                span.update(output=expected[index + 1])
    lf.flush()
    spans = {o.name: o for o in lf.get_trace(root.trace_id).observations}
    for index in range(0, STEPS, 4):
        assert spans[f"s{index}"].input == frozen[index] and spans[f"s{index}"].output == frozen[index + 1]
