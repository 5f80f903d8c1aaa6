"""runner.py: input reading and shaping, config, invoke/stream/async with the real handler and store."""

from __future__ import annotations

import io

import pytest
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda

from lftrace.errors import InputError
from lftrace.runner import build_config, execute, parse_config, parse_input, read_input, shape_input
from support.fake_models import ToolCallingFakeModel, build_agent


def joke_chain():
    return ChatPromptTemplate.from_template("Tell me a joke about {topic}") | ToolCallingFakeModel(tool_name=None)


def test_parse_input_json_first_then_text():
    assert parse_input('{"topic": "cats"}') == {"topic": "cats"}
    assert parse_input("[1, 2]") == [1, 2]
    assert parse_input("hello world") == "hello world"
    assert parse_input("hello\n") == "hello"  # a file or a pipe ends with one newline
    assert parse_input(None) is None


@pytest.mark.parametrize("broken", ['{"topic": "cats"', "{topic: cats}", '[{"a": 1', "[1, 2"])
def test_parse_input_broken_json_is_an_input_error(broken):
    with pytest.raises(InputError, match="looks like JSON but does not parse"):
        parse_input(broken)


def test_parse_input_bracketed_text_is_text():
    assert parse_input("[urgent] the build is red") == "[urgent] the build is red"


def test_read_input_from_file_and_stdin(tmp_path):
    (tmp_path / "in.json").write_text('{"topic": "dogs"}', encoding="utf-8")
    assert read_input(None, "in.json") == '{"topic": "dogs"}'
    assert read_input(None, "-", stdin=io.StringIO("from stdin")) == "from stdin"
    with pytest.raises(InputError, match="not both"):
        read_input("x", "in.json")
    with pytest.raises(InputError, match=r"cannot read --input-file 'missing\.txt'"):
        read_input(None, "missing.txt")


def test_text_becomes_a_user_message_for_graphs_with_messages():
    assert shape_input(build_agent(), "Paris") == {"messages": [{"role": "user", "content": "Paris"}]}


def test_text_fills_the_one_required_field_of_a_chain():
    assert shape_input(joke_chain(), "cats") == {"topic": "cats"}


def test_text_goes_as_is_to_a_runnable_without_fields():
    assert shape_input(RunnableLambda(lambda x: x), "raw text") == "raw text"


def test_json_that_does_not_fit_shows_the_expected_fields():
    with pytest.raises(InputError) as info:
        shape_input(joke_chain(), {"subject": "cats"}, "'jokes:chain'")
    assert str(info.value) == "input for 'jokes:chain' is missing 'topic' (expected fields: topic: string (required))"
    with pytest.raises(
        InputError, match=r"must be a JSON object, not list: e\.g\. --input '\{\"topic\": \"\.\.\.\"\}'"
    ):
        shape_input(joke_chain(), [1, 2])
    assert shape_input(joke_chain(), {"topic": "cats", "extra": 1}) == {"topic": "cats", "extra": 1}


def test_a_json_object_goes_to_a_graph_as_it_is():
    # LangGraph fills the channels an input leaves out: never refuse what graph.invoke accepts
    assert shape_input(build_agent(), {"msgs": []}) == {"msgs": []}
    assert shape_input(build_agent(), [{"role": "user", "content": "hi"}]) == {
        "messages": [{"role": "user", "content": "hi"}]
    }


def test_several_fields_need_json_and_missing_input_is_explained():
    two = ChatPromptTemplate.from_template("{a} and {b}")
    with pytest.raises(InputError) as info:
        shape_input(two, "text")
    assert str(info.value) == (
        "the target takes several text fields (a, b), so plain text cannot fill its input: give JSON, "
        """e.g. --input '{"a": "text", "b": "..."}' (fields: a: string (required), b: string (required))"""
    )
    with pytest.raises(InputError, match="needs input: give --input"):
        shape_input(build_agent(), None)
    assert shape_input(RunnableLambda(lambda x: x), None) is None


def test_build_config_merges_trace_attributes_and_user_config():
    handler = object()
    config = build_config(
        handler,
        session_id="s1",
        user_id="u1",
        tags=["a", "b"],
        name="nightly",
        extra={"metadata": {"team": "x"}, "recursion_limit": 5, "callbacks": ["mine"]},
    )
    assert config["callbacks"] == [handler, "mine"]
    assert config["recursion_limit"] == 5
    assert config["metadata"] == {
        "team": "x",
        "langfuse_session_id": "s1",
        "langfuse_user_id": "u1",
        "langfuse_tags": ["a", "b"],
        "langfuse_trace_name": "nightly",
    }
    with pytest.raises(InputError, match="--config is not valid JSON"):
        parse_config("{nope")
    with pytest.raises(InputError, match="must be a JSON object"):
        parse_config("[1]")


def test_execute_records_the_trace_with_its_attributes():
    result = execute(joke_chain(), "cats", session_id="s1", user_id="u1", tags=["t1"], name="jokes")
    assert result.ok and result.trace is not None
    assert result.output.content == "The weather in Tell me a joke about cats"
    trace = result.trace
    assert (trace.name, trace.session_id, trace.user_id, trace.tags) == ("jokes", "s1", "u1", ["t1"])
    assert [o.type for o in trace.observations].count("GENERATION") == 1
    assert trace.id == result.trace_id


def test_stream_reports_graph_updates_and_returns_the_final_state():
    seen = []
    result = execute(
        build_agent(), "Paris", stream=True, progress=lambda e, p: seen.append(p) if e == "chunk" else None
    )
    assert [kind for kind, _ in seen] == ["update", "update", "update"]
    assert [next(iter(update)) for _, update in seen] == ["agent", "tools", "agent"]
    assert result.output["messages"][-1].content == "The weather in Paris: sunny in Paris"
    assert result.trace is not None and result.trace.status == "ok"


def test_stream_a_chain_token_by_token_and_async():
    chunks = []
    result = execute(
        joke_chain(), "cats", stream=True, progress=lambda e, p: chunks.append(p[1]) if e == "chunk" else None
    )
    assert len(chunks) > 3 and "".join(c.content for c in chunks) == "The weather in Tell me a joke about cats"
    assert result.output.content == "The weather in Tell me a joke about cats"
    ttft = [o.completion_start_time for o in result.trace.observations if o.type == "GENERATION"]
    assert ttft and ttft[0] is not None
    for stream in (False, True):
        async_result = execute(build_agent(), "Rome", use_async=True, stream=stream)
        assert async_result.ok and async_result.output["messages"][-1].content.endswith("sunny in Rome")
        assert async_result.trace is not None and len(async_result.trace.observations) >= 8


def test_a_raising_target_returns_the_error_and_saves_an_error_trace():
    def boom(x):
        raise ValueError("kaput")

    result = execute(RunnableLambda(boom, name="boom"), "x")
    assert isinstance(result.error, ValueError) and not result.ok
    assert result.trace is not None and result.trace.status == "error"
    failed = [o for o in result.trace.observations if o.level == "ERROR"]
    assert failed and failed[0].status_message == "kaput"


def test_ctrl_c_returns_an_interrupted_partial_trace():
    def interrupt(x):
        raise KeyboardInterrupt

    chain = RunnableLambda(lambda x: x, name="first") | RunnableLambda(interrupt, name="slow")
    result = execute(chain, "x")
    assert result.interrupted and isinstance(result.error, KeyboardInterrupt)
    assert result.trace is not None and result.trace.status == "cancelled"
    assert {o.name for o in result.trace.observations} >= {"first", "slow"}


def test_disabled_tracing_still_runs_and_says_why_there_is_no_trace(monkeypatch):
    monkeypatch.setenv("LANGFUSE_TRACING_ENABLED", "false")
    result = execute(RunnableLambda(lambda x: x * 2), "ab")
    assert result.output == "abab" and result.trace is None
    assert result.notes and "tracing is disabled" in result.notes[0]


class CountingLambda(RunnableLambda):
    """A real RunnableLambda (unhashable, like most runnables) that counts schema computations."""

    def get_input_jsonschema(self, config=None):
        type(self).schema_calls += 1
        return {"type": "object", "properties": {"topic": {"type": "string"}}, "required": ["topic"]}


def test_the_input_schema_is_computed_once_per_runnable_and_forgotten_with_it():
    import gc

    from lftrace import runner

    CountingLambda.schema_calls = 0
    first = CountingLambda(lambda x: x, name="first")
    assert shape_input(first, "cats") == {"topic": "cats"}
    assert shape_input(first, {"topic": "dogs"}) == {"topic": "dogs"}
    assert CountingLambda.schema_calls == 1  # cached: `lftrace test` shapes every case against one runnable
    second = CountingLambda(lambda x: x, name="second")
    shape_input(second, "cats")
    assert CountingLambda.schema_calls == 2  # a different runnable has its own entry
    key = id(first)
    assert key in runner._SCHEMAS
    del first
    gc.collect()
    assert key not in runner._SCHEMAS  # the cache does not keep runnables alive


def test_span_count_reads_the_handlers_counter_or_zero():
    from lftrace.langchain import CallbackHandler
    from lftrace.runner import span_count

    seen = []
    result = execute(build_agent(), "Paris", progress=lambda e, p: seen.append(p) if e == "finishing" else None)
    assert result.trace is not None and seen
    assert span_count(seen[0]) == len(result.trace.observations) >= 8
    assert span_count(CallbackHandler()) == 0
    assert span_count(object()) == 0  # a handler without the counter


def test_a_generic_root_name_becomes_the_targets_name_and_the_target_is_stored():
    from pathlib import Path

    samples = Path(__file__).resolve().parents[1] / "sample_graphs"
    target = f"{samples}/chatbot.py:graph"  # an unnamed graph: its root run is called "LangGraph"
    result = execute(target, "What is Langfuse?")
    assert result.trace is not None
    assert result.trace.name == "chatbot"
    assert result.trace.observations[0].name == "LangGraph"  # the observation keeps LangChain's name
    assert result.trace.metadata["lftrace_target"] == target
    assert all("lftrace_target" not in (o.metadata or {}) for o in result.trace.observations)
    named = execute(target, "hi", name="support-bot")  # --name wins
    assert named.trace is not None and named.trace.name == "support-bot"
    own = execute(f"{samples}/agent.py:graph", "What is 6 times 7?")  # a graph with its own name keeps it
    assert own.trace is not None and own.trace.name == "agent"
    chain = execute(f"{samples}/joke_chain.py:chain", '{"topic": "cats"}')  # RunnableSequence
    assert chain.trace is not None and chain.trace.name == "joke_chain"
