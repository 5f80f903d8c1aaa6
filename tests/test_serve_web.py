"""The web view of `lftrace serve`, in a real headless Chromium (Debian's package): the list with filters, a
trace's tree, timeline and observation panel filled by the page's own JavaScript, and hostile data escaped."""

from __future__ import annotations

import shutil
import subprocess
import tempfile

import pytest
from tests.serve_process import ServeProcess

from lftrace.exporters.otlp import LangfuseExporter
from lftrace.model import Observation, Trace

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HOSTILE = '<script>document.title="pwned"</script><img src=x onerror=alert(1)>'


def dump_dom(url: str) -> str:
    if not shutil.which(CHROMIUM):
        pytest.fail("chromium is not installed (make test installs Debian's chromium package)")
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=3000",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _trace() -> Trace:
    trace_id = "77" * 16
    start = 1_700_000_000_000_000_000
    root = Observation("7" * 15 + "1", trace_id, None, "AGENT", "planner", start, start + 900_000_000)
    root.input = {"question": "weather in Paris?"}
    gen = Observation("7" * 15 + "2", trace_id, root.id, "GENERATION", "ChatOpenAI", start + 100_000_000)
    gen.end_time = start + 600_000_000
    gen.model = "gpt-4o-mini"
    gen.input = [{"role": "user", "content": "weather in Paris? </script><b>bold</b>"}]
    gen.output = {"role": "assistant", "content": "Sunny in Paris"}
    gen.usage_details = {"input": 12, "output": 4, "total": 16}
    tool = Observation("7" * 15 + "3", trace_id, root.id, "TOOL", HOSTILE, start + 650_000_000, start + 800_000_000)
    tool.level = "ERROR"
    tool.status_message = "timeout"
    return Trace(
        trace_id,
        "weather-agent",
        start,
        session_id="s-web",
        tags=["web"],
        observations=[root, gen, tool],
        end_time=start + 900_000_000,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServeProcess(tmp_path_factory.mktemp("web") / "traces.db") as proc:
        exporter = LangfuseExporter(proc.url, "pk", "sk")
        assert exporter.export([_trace()]).ok
        other = _trace()
        other.id = "88" * 16
        other.name = "other-trace"
        for obs in other.observations:
            obs.trace_id = other.id
        assert exporter.export([other]).ok
        exporter.close()
        yield proc


def test_traces_list_and_filters(server):
    dom = dump_dom(server.url + "/")
    assert 'id="traces"' in dom and "weather-agent" in dom and "other-trace" in dom
    filtered = dump_dom(server.url + "/?name=weather-agent&session=s-web")
    assert "weather-agent" in filtered and "other-trace" not in filtered
    assert f'href="/trace/{"77" * 16}"' in filtered
    none = dump_dom(server.url + "/?session=nobody")
    assert "No traces match" in none


def test_trace_page_tree_timeline_and_panel(server):
    gen_id = "7" * 15 + "2"
    dom = dump_dom(f"{server.url}/trace/{'77' * 16}#obs={gen_id}")
    assert 'class="tree"' in dom and 'class="timeline"' in dom
    # the tree nests the generation under the agent
    planner = dom.index(">planner")
    assert dom.index(">ChatOpenAI", planner) > planner
    # the panel was filled by the page's script for the observation named in the URL
    assert f'data-shown="{gen_id}"' in dom
    panel = dom[dom.index('id="panel"') :]
    assert "GENERATION ChatOpenAI" in panel and "Sunny in Paris" in panel and "model: gpt-4o-mini" in panel
    assert '"total": 16' in panel
    # hostile names and inputs are text, never markup or script
    assert "pwned" not in dom.split("<title>", 1)[1].split("</title>", 1)[0]
    assert "<img src=x" not in dom and "&lt;img src=x onerror=alert(1)&gt;" in dom
    assert "<b>bold</b>" not in dom


def test_trace_page_default_selection_and_404(server):
    dom = dump_dom(f"{server.url}/trace/{'77' * 16}")
    assert f'data-shown="{"7" * 15 + "1"}"' in dom  # the first observation is shown when none is named
    missing = dump_dom(f"{server.url}/trace/{'99' * 16}")
    assert "No trace" in missing


def _tiny_png(width: int = 3, height: int = 2) -> bytes:
    """A real PNG (red pixels) a browser decodes."""
    import struct
    import zlib

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_the_panel_shows_the_images_an_observation_refers_to(server):
    """lftrace uploads a traced image to serve's media API; the page shows it, loaded from a signed URL."""
    from lftrace import Langfuse
    from lftrace.media import LangfuseMedia

    langfuse = Langfuse(public_key="pk-lf-web", secret_key="sk-lf-web", base_url=server.url)
    picture = LangfuseMedia(content_bytes=_tiny_png(), content_type="image/png")
    with langfuse.start_as_current_observation(name="look", input={"picture": picture, "q": "what?"}) as span:
        span.update(output="a red rectangle")
        trace_id = span.trace_id
    assert langfuse.flush()
    report = langfuse.last_delivery  # delivered by this flush or by the background delivery before it
    assert (report.pending, report.failed) == (0, 0), report.summary()
    langfuse.shutdown()
    dom = dump_dom(f"{server.url}/trace/{trace_id}")
    panel = dom[dom.index('id="panel"') :]
    assert 'class="media"' in panel and 'data-loaded="3x2"' in panel  # decoded by the browser: the bytes arrived
    assert f"/media-content/{picture._media_id}?expires=" in panel


_DEAD_PART = """
import sys
from lftrace.model import Observation, Trace
from lftrace.store import TraceStore

start = 1_700_000_100_000_000_000
trace = Trace("66" * 16, "cut-short", start, end_time=None)
trace.observations = [Observation("6" * 16, trace.id, None, "CHAIN", "think", start)]  # still open
with TraceStore(sys.argv[1]) as store:
    store.write_traces([trace], merge=True, running=True)  # a long run's part; then this process is gone
"""


def test_a_trace_whose_process_died_is_incomplete_in_the_web_view(server):
    import sys

    done = subprocess.run([sys.executable, "-c", _DEAD_PART, str(server.store)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    listed = dump_dom(server.url + "/?status=incomplete")
    assert "cut-short" in listed and "weather-agent" not in listed
    assert '<td class="err">incomplete</td>' in listed
    assert "cut-short" not in dump_dom(server.url + "/?status=running")
    page = dump_dom(f"{server.url}/trace/{'66' * 16}")
    assert 'class="err">incomplete</span>' in page
