"""CI assertions on a finished trace: output, nodes, tools, budgets, errors.

Pure functions over ``model.Trace`` (stdlib only), shared by ``lftrace run --expect-*``
and the ``expect`` object of each ``lftrace test`` case.

Decisions worth knowing:

* a budget that cannot be measured fails: ``max_cost`` with a generation whose model has no
  known price fails with ``cost unknown for model X``, ``max_latency`` on an unfinished trace fails;
  a CI gate that silently passes when it cannot check is worse than one that asks for a fix;
* a trace without any generation costs $0 and uses 0 tokens;
* ``no_errors`` looks at every observation, so an error the graph recovered from still fails.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InputError
from .model import Observation, Trace

# key of the dataset's ``expect`` object -> Expectations field
_EXPECT_KEYS = {
    "output": "output_regex",
    "output_regex": "output_regex",
    "nodes": "nodes",
    "tools": "tools",
    "max_latency": "max_latency",
    "max_tokens": "max_tokens",
    "max_cost": "max_cost",
    "max_llm_calls": "max_llm_calls",
    "no_errors": "no_errors",
    "interrupt": "interrupt",
    "complete": "complete",
    "expected_output": "expected_output",
}


@dataclass(frozen=True)
class AssertionFailure:
    """One failed check: what was expected, what the trace shows, and a one-line explanation."""

    name: str
    expected: str
    actual: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "expected": self.expected, "actual": self.actual, "message": self.message}

    def __str__(self) -> str:
        return f"{self.name}: {self.message} (expected {self.expected}, got {self.actual})"


@dataclass(frozen=True)
class Expectations:
    output_regex: str | None = None
    nodes: tuple[str, ...] = field(default=())
    tools: tuple[str, ...] = field(default=())
    max_latency: float | None = None  # seconds
    max_tokens: int | None = None
    max_cost: float | None = None  # USD
    max_llm_calls: int | None = None
    no_errors: bool = False
    interrupt: bool | str | None = None  # the run pauses at interrupt() (a regex: with a value matching it)
    complete: bool | None = None  # True: the run must finish, not pause (`run --expect-complete`)
    # a dataset item's expected output (``test --check-expected``): text the reply contains, or fields of the output
    expected_output: Any = None

    def __post_init__(self) -> None:
        if isinstance(self.interrupt, str):
            try:
                re.compile(self.interrupt)
            except re.error as exc:
                raise InputError(f"interrupt regex {self.interrupt!r} is invalid: {exc}") from None
        if self.output_regex is not None:
            try:
                re.compile(self.output_regex)
            except re.error as exc:
                raise InputError(
                    f"output regex {self.output_regex!r} is invalid: {exc} (escape special characters)"
                ) from None
        for name in ("max_latency", "max_tokens", "max_cost", "max_llm_calls"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise InputError(f"{name} must not be negative (got {value})")

    @property
    def is_empty(self) -> bool:
        return self == Expectations()

    def merged_over(self, defaults: Expectations) -> Expectations:
        """These expectations, with every unset field taken from ``defaults`` (lists are combined)."""
        return Expectations(
            output_regex=self.output_regex if self.output_regex is not None else defaults.output_regex,
            nodes=tuple(dict.fromkeys([*defaults.nodes, *self.nodes])),
            tools=tuple(dict.fromkeys([*defaults.tools, *self.tools])),
            max_latency=self.max_latency if self.max_latency is not None else defaults.max_latency,
            max_tokens=self.max_tokens if self.max_tokens is not None else defaults.max_tokens,
            max_cost=self.max_cost if self.max_cost is not None else defaults.max_cost,
            max_llm_calls=self.max_llm_calls if self.max_llm_calls is not None else defaults.max_llm_calls,
            no_errors=self.no_errors or defaults.no_errors,
            interrupt=self.interrupt if self.interrupt is not None else defaults.interrupt,
            complete=self.complete if self.complete is not None else defaults.complete,
            expected_output=self.expected_output if self.expected_output is not None else defaults.expected_output,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, *, where: str = "expect") -> Expectations:
        """The dataset's ``expect`` object; unknown keys and wrong types raise InputError naming ``where``."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise InputError(
                f'{where}: "expect" must be an object like {{"output": "sunny", "tools": ["get_weather"]}}'
            )
        values: dict[str, Any] = {}
        for key, value in data.items():
            target = _EXPECT_KEYS.get(key)
            if target is None:
                known = ", ".join(sorted(_EXPECT_KEYS))
                raise InputError(f'{where}: unknown expectation "{key}" (known: {known})')
            values[target] = _coerce(target, value, where)
        try:
            return cls(**values)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.output_regex is not None:
            out["output"] = self.output_regex
        if self.nodes:
            out["nodes"] = list(self.nodes)
        if self.tools:
            out["tools"] = list(self.tools)
        for name in ("max_latency", "max_tokens", "max_cost", "max_llm_calls"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.no_errors:
            out["no_errors"] = True
        if self.interrupt is not None:
            out["interrupt"] = self.interrupt
        if self.complete is not None:
            out["complete"] = self.complete
        if self.expected_output is not None:
            out["expected_output"] = self.expected_output
        return out


def _coerce(target: str, value: Any, where: str) -> Any:
    def bad(kind: str) -> InputError:
        return InputError(f'{where}: "{target}" must be {kind} (got {json.dumps(value)})')

    if target == "expected_output":
        return value  # any JSON value
    if target == "output_regex":
        if not isinstance(value, str):
            raise bad("a regular expression string")
        return value
    if target in ("nodes", "tools"):
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("a list of names")
        return tuple(value)
    if target in ("no_errors", "complete"):
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if target == "interrupt":
        if not isinstance(value, bool | str):
            raise bad("true, false or a regular expression on the interrupt's value")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad("a number")
    if target in ("max_tokens", "max_llm_calls"):
        if value != int(value):
            raise bad("a whole number")
        return int(value)
    return float(value)


# -- reading a trace ------------------------------------------------------------------------


def node_names(trace: Trace) -> list[str]:
    """Names of the graph nodes that ran: ``langgraph_node`` metadata, or CHAIN observations."""
    seen: dict[str, None] = {}
    for obs in trace.observations:
        node = (obs.metadata or {}).get("langgraph_node")
        if isinstance(node, str) and node:
            seen.setdefault(node)
        if obs.type == "CHAIN" and obs.name:
            seen.setdefault(obs.name)
    return list(seen)


def tool_names(trace: Trace) -> list[str]:
    return list(dict.fromkeys(o.name for o in trace.observations if o.type == "TOOL"))


def llm_calls(trace: Trace) -> int:
    return sum(1 for o in trace.observations if o.type == "GENERATION")


def error_observations(trace: Trace) -> list[Observation]:
    return [o for o in trace.observations if o.level == "ERROR"]


def unpriced_models(trace: Trace) -> list[str]:
    """Models of generations without a cost (no price known): the trace's total cost is then incomplete."""
    missing = [
        o.model or "(unknown model)"
        for o in trace.observations
        if o.type == "GENERATION" and not (o.cost_details and "total" in o.cost_details)
    ]
    return list(dict.fromkeys(missing))


def output_text(value: Any) -> str:
    """The text a human would call "the reply": last message content of a graph state, or the value as JSON.

    Works on live LangChain objects (``.content``) and on their stored JSON form alike.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    content = getattr(value, "content", None)
    if content is not None:
        return _content_text(content)
    if isinstance(value, Mapping):
        messages = value.get("messages")
        if isinstance(messages, list) and messages:
            return output_text(messages[-1])
        if "content" in value and isinstance(value["content"], str | list):
            return _content_text(value["content"])
        for key in ("output", "answer", "result", "text"):
            if isinstance(value.get(key), str):
                return value[key]
    if (
        isinstance(value, list | tuple)
        and value
        and all(hasattr(v, "content") or isinstance(v, Mapping) for v in value)
    ):
        return output_text(value[-1])
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(value)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks: [{"type": "text", "text": ...}, ...]
        parts = [p if isinstance(p, str) else p.get("text", "") for p in content if isinstance(p, str | Mapping)]
        return "".join(str(p) for p in parts)
    return str(content)


# -- the checks -----------------------------------------------------------------------------


def check(trace: Trace, output: str | None, expectations: Expectations) -> list[AssertionFailure]:
    """Every failed expectation, in a stable order (empty list: all passed).

    ``output`` is the reply text (see ``output_text``); None means "take it from ``trace.output``".
    """
    text = output_text(trace.output) if output is None else output
    failures: list[AssertionFailure] = []
    e = expectations
    if e.output_regex is not None and re.search(e.output_regex, text) is None:
        failures.append(
            AssertionFailure("output", f"/{e.output_regex}/", _short(text), "the output does not match the regex")
        )
    seen_nodes = node_names(trace)
    for node in e.nodes:
        if node not in seen_nodes:
            failures.append(
                AssertionFailure(f"node {node}", "ran", f"ran: {_names(seen_nodes)}", f"node '{node}' did not run")
            )
    seen_tools = tool_names(trace)
    for tool in e.tools:
        if tool not in seen_tools:
            failures.append(
                AssertionFailure(
                    f"tool {tool}", "called", f"called: {_names(seen_tools)}", f"tool '{tool}' was not called"
                )
            )
    if e.expected_output is not None:
        failures.extend(_expected_output(trace, text, e.expected_output))
    failures.extend(_budgets(trace, e))
    failures.extend(_pause(trace, e))
    if e.no_errors:
        errors = error_observations(trace)
        if errors:
            detail = "; ".join(f"{o.name}: {o.status_message or 'error'}" for o in errors[:3])
            more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
            failures.append(
                AssertionFailure(
                    "no errors", "0 errors", f"{len(errors)} error(s)", f"error observations: {_short(detail)}{more}"
                )
            )
    return failures


def _expected_output(trace: Trace, text: str, expected: Any) -> Iterable[AssertionFailure]:
    """A dataset item's expected output: an object names fields the graph's output must hold with these values;
    anything else is text the reply must contain (case and runs of whitespace aside)."""
    output = trace.output
    if isinstance(expected, Mapping) and isinstance(output, Mapping):
        differ = [k for k, v in expected.items() if k not in output or _json(output[k]) != _json(v)]
        if differ:
            got = {k: output.get(k) for k in differ}
            yield AssertionFailure(
                "expected output",
                _short(_json(expected)),
                _short(_json(got)),
                f"the output's {_names(differ)} differ from the expected output",
            )
        return
    wanted = expected if isinstance(expected, str) else _json(expected)
    if _folded(wanted) not in _folded(text):
        yield AssertionFailure(
            "expected output", _short(wanted), _short(text), "the output does not contain the expected output"
        )


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _folded(text: str) -> str:
    return " ".join(text.casefold().split())


def _budgets(trace: Trace, e: Expectations) -> Iterable[AssertionFailure]:
    if e.max_latency is not None:
        latency = trace.latency
        if latency is None:
            yield AssertionFailure("max latency", f"<= {e.max_latency:g}s", "unknown", "the trace has not finished")
        elif latency > e.max_latency:
            yield AssertionFailure("max latency", f"<= {e.max_latency:g}s", f"{latency:.3f}s", "the run was too slow")
    if e.max_tokens is not None and trace.total_tokens > e.max_tokens:
        yield AssertionFailure("max tokens", f"<= {e.max_tokens}", str(trace.total_tokens), "too many tokens used")
    if e.max_llm_calls is not None:
        calls = llm_calls(trace)
        if calls > e.max_llm_calls:
            yield AssertionFailure("max llm calls", f"<= {e.max_llm_calls}", str(calls), "too many LLM calls")
    if e.max_cost is not None:
        missing = unpriced_models(trace)
        cost = trace.total_cost or 0.0
        if missing:
            yield AssertionFailure(
                "max cost",
                f"<= ${e.max_cost:g}",
                "unknown",
                f"cost unknown for model {', '.join(missing)} (no price known; use --max-tokens instead)",
            )
        elif cost > e.max_cost:
            yield AssertionFailure("max cost", f"<= ${e.max_cost:g}", f"${cost:.6f}", "the run cost too much")


def interrupt_texts(trace: Trace) -> list[str]:
    """Each pending interrupt's value as text (strings as they are, other values as JSON); a static breakpoint
    as ``breakpoint before NODE`` (it has no value)."""
    texts = []
    for item in trace.interrupts:
        value = item.get("value")
        if item.get("breakpoint") in ("before", "after"):
            texts.append(f"breakpoint {item['breakpoint']} {item.get('node') or '?'}")
            continue
        texts.append(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str))
    return texts


def _pause(trace: Trace, e: Expectations) -> Iterable[AssertionFailure]:
    paused = trace.status == "interrupted"
    texts = interrupt_texts(trace)
    where = ", ".join(str(i.get("node") or "?") for i in trace.interrupts)
    if e.complete and paused:
        yield AssertionFailure(
            "complete", "finished", f"paused at {where}", f"the run paused at an interrupt: {_short('; '.join(texts))}"
        )
    if e.interrupt is False and paused:
        yield AssertionFailure("interrupt", "no pause", f"paused at {where}", "the run paused at an interrupt")
    elif e.interrupt is True and not paused:
        yield AssertionFailure("interrupt", "a pause", trace.status, "the run did not pause at an interrupt")
    elif isinstance(e.interrupt, str):
        if not paused:
            yield AssertionFailure("interrupt", f"/{e.interrupt}/", trace.status, "the run did not pause")
        elif not any(re.search(e.interrupt, text) for text in texts):
            yield AssertionFailure(
                "interrupt", f"/{e.interrupt}/", _short("; ".join(texts)), "no interrupt value matches the regex"
            )


def _names(names: list[str]) -> str:
    return ", ".join(names) if names else "(none)"


def _short(text: str, limit: int = 200) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."
