"""The inspector's renderers: timeline, header context, one observation in full, LangGraph tree details.

Golden renders at widths 60, 80 and 120 (ids and local times normalised), plus the same renderers on traces
recorded from real LangGraph runs (routing functions, node previews, step numbers).
"""

from __future__ import annotations

import pytest
from tests.test_render import MS, T0, TID, agent_trace, check_golden, normalise, obs, render_text

from lftrace.detail import render_observation
from lftrace.model import Trace
from lftrace.render import build_tree, find_observation, render_trace
from lftrace.timeline import build_timeline

WIDTHS = (60, 80, 120)


def fanout_trace() -> Trace:
    """The map-reduce shape: three Send branches of 302, 51 and 100 ms under one step, then a routed fan-in."""
    topic = {"role": "user", "content": "animals"}
    jokes = [{"role": "assistant", "content": f"joke {i}"} for i in range(1, 4)]
    o = [
        obs("f001000000000000", None, "CHAIN", "mapreduce", 0, 420, input={"topic": "animals"},
            output={"best": "joke 1"}),
        obs("f002000000000000", "f001000000000000", "CHAIN", "generate_topics", 1, 10,
            metadata={"langgraph_node": "generate_topics", "langgraph_step": 1}, output={"subjects": ["cats", "dogs", "owls"]}),
        obs("f003000000000000", "f002000000000000", "CHAIN", "continue_to_jokes", 9, 10,
            metadata={"langgraph_node": "generate_topics", "langgraph_step": 1, "tags": ["seq:step:3"]},
            output=[{"node": "generate_joke", "arg": {"subject": s}} for s in ("cats", "dogs", "owls")]),
        obs("f004000000000000", "f001000000000000", "CHAIN", "generate_joke", 11, 313,
            metadata={"langgraph_node": "generate_joke", "langgraph_step": 2}, output={"jokes": ["joke 1"]}),
        obs("f005000000000000", "f004000000000000", "GENERATION", "ChatOpenAI", 12, 312, model="gpt-4o-mini",
            completion_start_time=T0 + 150 * MS, usage_details={"input": 20, "output": 10, "total": 30},
            cost_details={"input": 0.000003, "output": 0.000006, "total": 0.000009}, input=[topic], output=jokes[0]),
        obs("f006000000000000", "f001000000000000", "CHAIN", "generate_joke", 11, 62,
            metadata={"langgraph_node": "generate_joke", "langgraph_step": 2}, output={"jokes": ["joke 2"]}),
        obs("f007000000000000", "f001000000000000", "CHAIN", "generate_joke", 12, 112,
            metadata={"langgraph_node": "generate_joke", "langgraph_step": 2}, level="ERROR",
            status_message="ValueError: no joke about owls"),
        obs("f008000000000000", "f001000000000000", "CHAIN", "best_joke", 314, 419,
            metadata={"langgraph_node": "best_joke", "langgraph_step": 3},
            input={"messages": jokes}, output={"messages": [*jokes[:2], {"role": "assistant", "content": "joke 1 wins"}]}),
    ]  # fmt: skip
    return Trace(
        id=TID, name="mapreduce", timestamp=T0, input={"topic": "animals"}, output={"best": "joke 1"},
        observations=o, end_time=T0 + 420 * MS, session_id="thread-7", user_id="ada",
        tags=["nightly", "jokes"], release="1.4.2", environment="staging",
        metadata={"lftrace_target": "mapreduce.py:graph", "thread_id": "thread-7"},
    )  # fmt: skip


@pytest.mark.parametrize("width", WIDTHS)
def test_timeline_golden(width):
    text = render_text(build_timeline(fanout_trace()), width=width)
    check_golden(f"timeline_{width}.txt", normalise(text))
    assert all(len(line) <= width for line in text.splitlines())


def test_timeline_bars_are_to_scale_and_show_parallel_branches_and_the_first_token():
    lines = render_text(build_timeline(fanout_trace()), width=120).splitlines()
    rows = {line.split()[0]: line for line in lines[3:-1]}
    joke_rows = [line for line in lines if "generate_joke" in line]
    assert len(joke_rows) == 3  # every observation on its own row
    bars = [row.rstrip().rsplit("  ", 1)[-1] for row in joke_rows]
    lengths = sorted(len(bar.strip()) for bar in bars)
    assert lengths[0] < lengths[1] < lengths[2]  # 51 < 100 < 302 ms
    starts = {len(row.rstrip()) - len(row.rstrip().rsplit("  ", 1)[-1].lstrip()) for row in joke_rows}
    assert len(starts) <= 2  # the branches start together (within one cell)
    assert "░" in rows["ChatOpenAI"] and "█" in rows["ChatOpenAI"]  # before / after the first token
    assert "↳" in next(line for line in lines if "continue_to_jokes" in line)  # routing, not work
    assert "generate_topics ·1" in "\n".join(lines)  # the LangGraph step
    assert "░ before the first token" in lines[-1]
    # a finished trace's legend: "running" is the status of a trace that never ended, not what a bar means
    assert lines[-1].lstrip().startswith("█ start to end") and "running" not in lines[-1]


def test_timeline_marks_open_observations():
    trace = fanout_trace()
    trace.observations[-1].end_time = None
    text = render_text(build_timeline(trace), width=80)
    assert "▒" in text and "still open" in text


@pytest.mark.parametrize("width", WIDTHS)
def test_header_golden(width):
    text = render_text(render_trace(fanout_trace(), delivered=["http://lf.local/project/p/traces/" + TID]), width=width)
    check_golden(f"header_{width}.txt", normalise("\n".join(text.splitlines()[:4]) + "\n"))
    assert all(len(line) <= width for line in text.splitlines())


def test_header_has_the_context_of_the_run():
    text = render_text(render_trace(fanout_trace(), delivered=["langfuse http://lf/x"]), width=200)
    context = text.splitlines()[1]
    for expected in ("started ", "target mapreduce.py:graph", "session thread-7", "user ada", "thread thread-7",
                     "tags nightly, jokes", "env staging", "release 1.4.2", "delivered langfuse http://lf/x"):  # fmt: skip
        assert expected in context
    first = text.splitlines()[0]
    assert "✓ ok · 1 handled error" in first or "✗ error" in first


@pytest.mark.parametrize("width", WIDTHS)
def test_observation_view_golden(width):
    trace = agent_trace()
    generation = trace.observations[2]
    generation.metadata = {"langgraph_node": "agent", "langgraph_step": 1, "ls_provider": "openai"}
    generation.model_parameters = {"temperature": 0.2, "max_tokens": 100}
    text = render_text(render_observation(trace, generation), width=width)
    check_golden(f"observation_{width}.txt", normalise(text))


def test_observation_view_shows_errors_with_type_and_traceback_and_whole_values():
    trace = fanout_trace()
    failed = find_observation(trace, "generate_joke#3")
    failed.metadata = {**(failed.metadata or {}), "error.type": "ValueError",
                       "error.traceback": "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: no joke"}  # fmt: skip
    failed.input = {"subject": "owls", "long": "x" * 500}
    text = render_text(render_observation(trace, failed), width=80)
    assert "type     ValueError" in text and "Traceback (most recent call last):" in text
    assert "x" * 70 in text.replace("\n", "")  # in full, not a preview
    assert '"subject": "owls"' in text  # JSON pretty-printed


def test_observation_view_breaks_usage_and_cost_down():
    trace = agent_trace()
    text = render_text(render_observation(trace, trace.observations[2]), width=100)
    assert "input   220  (cache read 100; uncached 120)" in text
    assert "output  18" in text and "total   238" in text
    assert "$0.000018" in text and "$0.000029" in text
    assert "first token  308ms" in text


def test_observation_selected_by_id_prefix_or_node_name_and_number():
    trace = fanout_trace()
    assert find_observation(trace, "f004").id == "f004000000000000"
    assert find_observation(trace, "generate_joke#2").id == "f006000000000000"  # by start time
    assert find_observation(trace, "best_joke").id == "f008000000000000"
    from lftrace.errors import InputError, TraceNotFound

    with pytest.raises(InputError, match="generate_joke#1 to #3"):
        find_observation(trace, "generate_joke")
    with pytest.raises(TraceNotFound, match="#1 to #3"):
        find_observation(trace, "generate_joke#4")
    with pytest.raises(TraceNotFound, match="no observation 'nope'"):
        find_observation(trace, "nope")
    trace.observations[-1].name = "f00"  # a name that is also an id prefix: the name wins
    assert find_observation(trace, "f00").id == "f008000000000000"


def test_tree_routing_steps_and_node_previews():
    text = render_text(render_trace(fanout_trace()), width=140)
    assert "ROUTE continue_to_jokes → Send generate_joke ×3" in text
    assert "CHAIN generate_topics  step 1" in text
    # the fan-in node shows every message it added, not only the last
    assert "out: joke 1 | joke 2 | joke 1 wins" in text


def test_at_80_columns_the_generation_keeps_its_cost_and_id():
    lines = render_text(render_trace(agent_trace()), width=80).splitlines()
    generations = [line for line in lines if "GENERATION" in line]
    assert generations and all(
        "$0.0000" in line and line.rstrip().endswith(("aa030000", "aa060000")) for line in generations
    )
    assert all(len(line) <= 80 for line in lines)


def test_data_is_sanitised_in_every_renderer():
    trace = fanout_trace()
    trace.name = "evil\x1b[2J"
    trace.session_id = "s\x1b]0;title\x07"
    trace.observations[1].output = {"subjects": ["\x1b[31mred"]}
    trace.observations[4].output = {"role": "assistant", "content": "bell\x07"}
    for renderable in (render_trace(trace, full=True), render_trace(trace), build_timeline(trace),
                       render_observation(trace, trace.observations[4])):  # fmt: skip
        text = render_text(renderable, width=120)
        assert "\x1b" not in text and "\x07" not in text


# ---------------------------------------------------------------- real LangGraph runs


def run_sample(target: str, text: str) -> Trace:
    from lftrace.runner import execute

    result = execute(target, text)
    assert result.trace is not None and result.error is None
    return result.trace


def test_real_agent_tree_shows_routing_steps_and_every_tool_result():
    from pathlib import Path

    sample = Path(__file__).resolve().parents[1] / "sample_graphs" / "agent.py"
    trace = run_sample(f"{sample}:graph", "What is the weather in Paris and what is 6 times 7?")
    text = render_text(build_tree(trace), width=160)
    assert "ROUTE tools_condition → tools" in text and "ROUTE tools_condition → END" in text
    assert "CHAIN tools_condition" not in text
    assert "AGENT agent  step 1" in text and "CHAIN tools  step 2" in text
    lines = text.splitlines()
    tools_at = next(i for i, line in enumerate(lines) if "CHAIN tools  step 2" in line)
    tools_out = next(line for line in lines[tools_at:] if "out:" in line)
    assert "42.0 | Paris: 18°C and sunny" in tools_out  # both tool results, not one
    timeline = render_text(build_timeline(trace), width=100)
    assert timeline.count("\n") >= len(trace.observations) + 3
    gen = find_observation(trace, "FakeChatModel#1")
    detail = render_text(render_observation(trace, gen), width=100)
    assert "user:" in detail and "→ multiply(" in detail and "Usage (tokens)" in detail


# ---------------------------------------------------------------- sessions


def session_traces() -> list[Trace]:
    turns = [("What is the weather in Paris?", "It is sunny in Paris, 21 degrees.", None),
             ("And in Oslo?", None, "ToolException: no weather data for Oslo"),
             ("Thanks! Tell me a joke about the weather, a long one please, with details", "Why did the cloud " * 8, None)]  # fmt: skip
    traces = []
    for i, (_, reply, error) in enumerate(turns):
        tid = f"{i + 1:02d}" + "5e55" * 7 + "00"
        root = obs(f"{i + 1:02d}00000000000000", None, "CHAIN", "chatbot", i * 60_000, i * 60_000 + 800 + 100 * i,
                   level="ERROR" if error else "DEFAULT", status_message=error,
                   usage_details={"input": 10 * (i + 1), "output": 5, "total": 10 * (i + 1) + 5})  # fmt: skip
        root.trace_id = tid
        history = [{"role": "user", "content": t[0]} for t in turns[: i + 1]]
        traces.append(
            Trace(
                id=tid,
                name="chatbot",
                timestamp=root.start_time,
                session_id="thread-7",
                input={"messages": history},
                output={"messages": [*history, {"role": "assistant", "content": reply}]} if reply else None,
                observations=[root],
                end_time=root.end_time,
            )
        )
    return traces


@pytest.mark.parametrize("width", WIDTHS)
def test_session_conversation_golden(width):
    from lftrace.conversation import render_conversation

    text = render_text(render_conversation("thread-7", session_traces()), width=width)
    check_golden(f"conversation_{width}.txt", normalise(text))
    assert text.count("Turn ") == 3 and "user: And in Oslo?" in text
    assert "error: ToolException: no weather data for Oslo" in text
    assert all(t.id in text.replace("\n", "") or t.id[:20] in text for t in session_traces())


@pytest.mark.parametrize("width", WIDTHS)
def test_session_list_golden(width):
    from lftrace.conversation import render_session_list
    from lftrace.model import Score, SessionSummary

    csat = Score.create(
        id="s1", trace_id=None, name="csat", value=4, data_type=None, timestamp=T0, session_id="thread-7"
    )
    sessions = [
        SessionSummary("thread-7", 3, T0, T0 + 121_000 * MS, 110, 0.00042, errors=1, user_ids=["ada"], scores=[csat]),
        SessionSummary(
            "a-rather-long-session-identifier-from-langgraph-0f3c",
            12,
            T0 - 3_600_000 * MS,
            T0 - 60_000 * MS,
            4810,
            None,
            handled_errors=2,
            user_ids=["bob", "eve"],
        ),
    ]
    text = render_text(render_session_list(sessions), width=width)
    check_golden(f"sessions_{width}.txt", normalise(text))
    assert all(len(line) <= width for line in text.splitlines())
    tsv = render_session_list(sessions).tsv().splitlines()
    assert tsv[0].split("\t")[:3] == ["session", "traces", "first"]
    assert tsv[2].split("\t")[0] == "a-rather-long-session-identifier-from-langgraph-0f3c"
    assert (tsv[0].split("\t")[-1], tsv[1].split("\t")[-1], tsv[2].split("\t")[-1]) == ("scores", "csat 4", "")


def test_a_real_session_as_a_conversation():
    from pathlib import Path

    from lftrace.conversation import render_conversation
    from lftrace.runner import execute

    sample = Path(__file__).resolve().parents[1] / "sample_graphs" / "agent.py"
    traces = []
    for question in ("What is the weather in Paris?", "What is 6 times 7?"):
        result = execute(f"{sample}:graph", question, session_id="chat-1")
        assert result.trace is not None
        traces.append(result.trace)
    text = render_text(render_conversation("chat-1", traces), width=200)
    assert "user: What is the weather in Paris?" in text and "user: What is 6 times 7?" in text
    assert "assistant: Here is what I found: Paris: 18°C and sunny." in text
    assert "assistant: Here is what I found: 42.0." in text
    assert traces[0].id in text and traces[1].id in text
