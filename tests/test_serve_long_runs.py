"""`lftrace serve` over a long agent run: a real 600-step LangGraph loop (think -> critic on MessagesState, every
input the whole conversation so far: the square of the run's length in bytes) read through the web view and the
public API, whose answers must stay whole while the server reads only what each one needs."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import httpx
import orjson
import pytest
from tests.serve_process import ServeProcess
from tests.test_serve_web import dump_dom

from lftrace import client as client_module
from lftrace.langchain import CallbackHandler
from lftrace.model import Observation
from lftrace.store import TraceStore

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sample_graphs.long_loop import build_graph, loop_input, run_config  # noqa: E402

STEPS = 600


class LongRun:
    def __init__(self, store: Path, trace_id: str, observations: list[Observation], inputs_bytes: int) -> None:
        self.store, self.trace_id, self.observations, self.inputs_bytes = store, trace_id, observations, inputs_bytes


@pytest.fixture(scope="module")
def long_run(tmp_path_factory: pytest.TempPathFactory) -> LongRun:
    store = tmp_path_factory.mktemp("long-serve") / "traces.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LFTRACE_STORE", str(store))
        client_module.reset_clients()
        handler = CallbackHandler()
        build_graph().invoke(loop_input(STEPS), run_config(STEPS, [handler]))
        client_module.get_client().shutdown()
        client_module.reset_clients()
    assert handler.last_trace_id is not None
    with TraceStore(store) as reader:
        observations = list(reader.iter_observations(handler.last_trace_id))
    inputs_bytes = sum(len(orjson.dumps(o.input)) for o in observations)
    assert len(observations) > 1500 and inputs_bytes > 30_000_000  # what reading every input costs
    return LongRun(store, handler.last_trace_id, observations, inputs_bytes)


def _peak_rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]


def test_the_web_page_is_an_outline_folded_and_the_panel_reads_one_observation(long_run):
    trace_id, observations = long_run.trace_id, long_run.observations
    last_generation = [o for o in observations if o.type == "GENERATION"][-1]
    with ServeProcess(long_run.store) as proc:
        page = httpx.get(f"{proc.url}/trace/{trace_id}", timeout=30)
        assert page.status_code == 200
        html = page.text
        assert len(page.content) < 2_000_000, len(page.content)  # an outline per observation, not their inputs
        assert all(f'"id":"{o.id}"' in html for o in observations)  # every observation can still be opened
        folded = re.search(r"<details><summary><b>× (\d+)  think -&gt; critic</b>", html)  # folded as `show` folds
        assert folded is not None and int(folded.group(1)) >= 290, re.findall(r"<b>×[^<]*</b>", html)
        assert html.count('class="row') < 40  # the timeline: what the folded tree shows, a bar per fold

        values = httpx.get(f"{proc.url}/trace/{trace_id}/observations/{last_generation.id}", timeout=30)
        assert values.status_code == 200
        assert values.json()["observation"]["input"] == orjson.loads(orjson.dumps(last_generation.input))
        missing = httpx.get(f"{proc.url}/trace/{trace_id}/observations/{'0' * 16}", timeout=30)
        assert missing.status_code == 404 and "no observation" in missing.json()["message"]

        dom = dump_dom(f"{proc.url}/trace/{trace_id}#obs={last_generation.id}")
    panel = dom[dom.index('id="panel"') :]
    assert f'data-loaded="{last_generation.id}"' in panel  # its values arrived and were laid out
    first, last = last_generation.input[0]["content"], last_generation.input[-1]["content"]
    assert "Lisbon" in first and first in panel and last in panel  # the whole conversation, first to last


def test_the_public_api_answers_whole_and_reads_only_what_it_returns(long_run):
    from langfuse import Langfuse as OfficialLangfuse

    trace_id, observations = long_run.trace_id, long_run.observations
    with TraceStore(long_run.store) as reader:
        expected = orjson.loads(orjson.dumps(reader.get_trace(trace_id).to_dict()))
    auth = ("pk-lf-long", "sk-lf-long")
    with ServeProcess(long_run.store) as proc:
        api = f"{proc.url}/api/public"
        assert proc.proc is not None
        before = _peak_rss_kb(proc.proc.pid)
        whole = httpx.get(f"{api}/traces/{trace_id}", auth=auth, timeout=60)
        grown_mb = (_peak_rss_kb(proc.proc.pid) - before) / 1024
        assert whole.status_code == 200 and len(whole.content) > long_run.inputs_bytes
        answer = whole.json()
        assert answer.pop("projectId") and answer == expected  # every observation with its full input
        assert grown_mb < 40, grown_mb  # streamed a page of observations at a time, not built whole

        listed = httpx.get(f"{api}/traces", params={"limit": 5}, auth=auth, timeout=30)
        assert listed.status_code == 200 and len(listed.content) < 1_000_000
        row = next(t for t in listed.json()["data"] if t["id"] == trace_id)
        assert sorted(row["observations"]) == sorted(o.id for o in observations)

        last_generation = [o for o in observations if o.type == "GENERATION"][-1]
        want_input = orjson.loads(orjson.dumps(last_generation.input))
        one = httpx.get(f"{api}/observations/{last_generation.id}", auth=auth, timeout=30)
        assert one.status_code == 200 and one.json()["input"] == want_input
        generations = httpx.get(
            f"{api}/observations", params={"traceId": trace_id, "type": "GENERATION", "limit": 3}, auth=auth
        ).json()["data"]
        assert len(generations) == 3 and generations[0]["id"] == last_generation.id
        assert generations[0]["input"] == want_input
        v2 = httpx.get(f"{api}/v2/observations", params={"traceId": trace_id, "limit": 3}, auth=auth).json()
        newest = max(observations, key=lambda o: o.start_time)
        assert len(v2["data"]) == 3 and v2["meta"]["cursor"]
        assert v2["data"][0]["startTime"] == orjson.loads(orjson.dumps(newest.to_dict()))["startTime"]
        assert all(isinstance(o["input"], str | None) for o in v2["data"])  # v4's raw strings

        # the official SDK's generated client (SDK 5: the v2 observations read) gets the same whole input
        official = OfficialLangfuse(public_key=auth[0], secret_key=auth[1], base_url=proc.url)
        got = official.api.observations.get_many(trace_id=trace_id, type="GENERATION", limit=2, fields="core,io")
        assert got.data[0].id == last_generation.id and got.meta.cursor
        raw = got.data[0].input
        assert (orjson.loads(raw) if isinstance(raw, str) else raw) == want_input
        official.shutdown()
