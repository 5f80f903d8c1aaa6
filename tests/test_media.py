"""Media (images, files) in traces, as Langfuse keeps it: taken out of the data, stored once, uploaded to Langfuse.

A real LangGraph vision app (tests/graphs/vision.py: a chat model asked about images sent inline, in three of
the block shapes LangChain apps use), lftrace's @observe with ``LangfuseMedia``, a real ``lftrace serve`` playing
Langfuse (its media API), and the official Langfuse SDK as the reference (its ids and reference strings, its
uploads to ``serve``, its ``resolve_media_references``).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

from tests.graphs.vision import JPEG, PNG, PNG_B64, graph, question

from lftrace import Langfuse
from lftrace.langchain import CallbackHandler
from lftrace.media import LangfuseMedia, LangfuseMediaReference
from lftrace.store import TraceStore
from serve_process import ServeProcess

PNG_URI = f"data:image/png;base64,{PNG_B64}"


def vision_run(langfuse: Langfuse) -> str:
    handler = CallbackHandler(public_key=langfuse.settings.public_key or "")
    graph.invoke(question(), config={"callbacks": [handler]})
    assert langfuse.flush()
    assert handler.last_trace_id is not None
    return handler.last_trace_id


def blocks(value: dict) -> list:
    """The content blocks of the question in a stored input ({"messages": [...]}, or a chat model's messages)."""
    messages = value["messages"] if isinstance(value, dict) else value
    return messages[0]["content"]


def official_reference(content: bytes, content_type: str, source: str) -> str:
    from langfuse.media import LangfuseMedia as OfficialMedia

    if source == "bytes":
        media = OfficialMedia(content_bytes=content, content_type=content_type)
    else:
        media = OfficialMedia(base64_data_uri=f"data:{content_type};base64,{base64.b64encode(content).decode()}")
    return str(media._reference_string)


def test_images_leave_the_trace_s_data_for_references_and_come_back_whole(isolated_env):
    langfuse = Langfuse(public_key="")
    trace = langfuse.get_trace(vision_run(langfuse))
    png_ref = official_reference(PNG, "image/png", "base64_data_uri")
    jpeg_ref = official_reference(JPEG, "image/jpeg", "base64_data_uri")

    # the question holds the references the official SDK makes, in each of the three shapes
    image_url, standard, anthropic = blocks(trace.input)[1:]
    assert image_url["image_url"]["url"] == png_ref
    assert standard["data"] == jpeg_ref and standard["mime_type"] == "image/jpeg"
    assert anthropic["source"]["data"] == png_ref
    # so does the model's input (LangChain hands it the JPEG as an image_url), and no observation holds base64
    generation = next(o for o in trace.observations if o.type == "GENERATION")
    assert [b.get("image_url", {}).get("url") for b in blocks(generation.input)[1:3]] == [png_ref, jpeg_ref]
    stored = json.dumps(trace.to_dict())
    assert PNG_B64[:200] not in stored and base64.b64encode(JPEG).decode()[:200] not in stored
    assert stored.count("@@@langfuseMedia:") >= 3 * len(trace.observations) - 3

    with TraceStore(isolated_env, create=False) as store:
        assert store.media(png_ref.split("id=")[1].split("|")[0]) == (PNG, "image/png")  # once, whatever the uses
        count, total = store._read(lambda c: c.execute("SELECT count(*), sum(size) FROM media").fetchone())
        assert (count, total) == (2, len(PNG) + len(JPEG))
        links = store.trace_media([trace.id])[trace.id]
        assert {(link.field, link.observation_id) for link in links} == {("input", None)}  # first seen: the trace's

    resolved = LangfuseMedia.resolve_media_references(obj=trace.input, langfuse_client=langfuse)
    assert langfuse.resolve_media_references(obj=trace.input, resolve_with="base64_data_uri") == resolved
    image_url, standard, anthropic = blocks(resolved)[1:]
    assert image_url["image_url"]["url"] == PNG_URI
    assert standard["data"] == f"data:image/jpeg;base64,{base64.b64encode(JPEG).decode()}"
    assert anthropic["source"]["data"] == PNG_URI


def test_with_media_upload_disabled_the_data_keeps_its_images(isolated_env, monkeypatch):
    monkeypatch.setenv("LANGFUSE_MEDIA_UPLOAD_ENABLED", "false")  # the SDK's switch
    langfuse = Langfuse(public_key="")
    trace = langfuse.get_trace(vision_run(langfuse))
    assert blocks(trace.input)[1]["image_url"]["url"] == PNG_URI
    with TraceStore(isolated_env, create=False) as store:
        assert store._read(lambda c: c.execute("SELECT count(*) FROM media").fetchone()) == (0,)


OBSERVED = """
from lftrace import get_client, observe
from lftrace.media import LangfuseMedia

@observe()
def describe(picture, question):
    return {"answer": "a lighthouse", "thumbnail": LangfuseMedia(content_bytes=b"thumb" * 50, content_type="image/jpeg")}

picture = LangfuseMedia(content_bytes=bytes(range(256)) * 40, content_type="image/png")
describe(picture, "what is it?")
get_client().flush()
"""


def test_langfuse_media_in_observed_code_is_stored_once_and_referenced_as_the_sdk_does(isolated_env, tmp_path):
    script = tmp_path / "observed.py"
    script.write_text(OBSERVED, encoding="utf-8")
    ran = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    with TraceStore(isolated_env, create=False) as store:
        (summary,) = store.list_traces()
        trace = store.get_trace(summary.id)
        (observation,) = trace.observations
        picture = bytes(range(256)) * 40
        assert observation.input["args"][0] == official_reference(picture, "image/png", "bytes")
        assert observation.output["thumbnail"] == official_reference(b"thumb" * 50, "image/jpeg", "bytes")
        by_field = {link.field: link for link in store.trace_media([trace.id])[trace.id]}
        # first seen in the trace's own input (the root observation's): linked to the trace
        assert by_field["input"].content == picture and by_field["input"].observation_id is None
        assert by_field["output"].content == b"thumb" * 50


def test_with_langfuse_keys_the_media_is_uploaded_through_the_media_api(tmp_path):
    with ServeProcess(tmp_path / "langfuse.db") as server:
        langfuse = Langfuse(public_key="pk-lf-media", secret_key="sk-lf-media", base_url=server.url)
        trace_id = vision_run(langfuse)
        report = langfuse.last_delivery  # delivered by this flush or by the background delivery before it
        assert (report.pending, report.failed) == (0, 0), report.summary()
        with TraceStore(tmp_path / "langfuse.db", create=False) as served:
            trace = served.get_trace(trace_id)
            assert blocks(trace.input)[1]["image_url"]["url"] == official_reference(PNG, "image/png", "base64_data_uri")
            uploaded = served.trace_media([trace_id])[trace_id]
            assert sorted((m.content_type, m.content) for m in uploaded) == [("image/jpeg", JPEG), ("image/png", PNG)]

        # a second trace with the same image: announced again (its link), not uploaded again
        second = vision_run(langfuse)
        with TraceStore(tmp_path / "langfuse.db", create=False) as served:
            assert len(served.trace_media([second])[second]) == 2
            assert served._read(lambda c: c.execute("SELECT count(*) FROM media").fetchone()) == (2,)

        # "Langfuse" gives the images back: to lftrace's resolver (keys: the media API) and to the official SDK's
        ours = LangfuseMedia.resolve_media_references(obj=trace.input, langfuse_client=langfuse)
        assert blocks(ours)[1]["image_url"]["url"] == PNG_URI
        from langfuse import Langfuse as OfficialLangfuse
        from langfuse.media import LangfuseMedia as OfficialMedia

        official = OfficialLangfuse(public_key="pk-lf-media", secret_key="sk-lf-media", base_url=server.url)
        theirs = OfficialMedia.resolve_media_references(
            obj=trace.input, langfuse_client=official, resolve_with="base64_data_uri"
        )
        assert theirs == ours
        official.shutdown()
        langfuse.shutdown()


def test_the_official_sdk_uploads_its_media_to_lftrace_serve(tmp_path):
    """The official SDK's own upload (announce, PUT to the upload URL, PATCH) lands in serve's store."""
    from langfuse import Langfuse as OfficialLangfuse
    from langfuse.media import LangfuseMedia as OfficialMedia

    with ServeProcess(tmp_path / "langfuse.db") as server:
        official = OfficialLangfuse(public_key="pk-lf-media-o", secret_key="sk-lf-media-o", base_url=server.url)
        media = OfficialMedia(content_bytes=JPEG, content_type="image/jpeg")
        with official.start_as_current_observation(name="vision", input={"photo": media}) as span:
            span.update(output="a lighthouse")
            trace_id = span.trace_id
        official.flush()
        official.shutdown()
        with TraceStore(tmp_path / "langfuse.db", create=False) as served:
            (link,) = served.trace_media([trace_id])[trace_id]
            assert (link.content, link.content_type, link.field) == (JPEG, "image/jpeg", "input")
            assert link.media_id == media._media_id
            assert served.get_trace(trace_id).input == {"photo": media._reference_string}


def test_serve_s_media_api_refuses_what_langfuse_refuses(tmp_path):
    import httpx

    with ServeProcess(tmp_path / "langfuse.db") as server:
        api = httpx.Client(base_url=server.url, auth=("pk-lf-x", "sk-lf-x"))
        digest = base64.b64encode(__import__("hashlib").sha256(PNG).digest()).decode()
        good = {"traceId": "t" * 32, "contentType": "image/png", "contentLength": len(PNG), "sha256Hash": digest,
                "field": "input"}  # fmt: skip
        assert api.post("/api/public/media", json={**good, "contentType": "image/x-unknown"}).status_code == 400
        assert api.post("/api/public/media", json={**good, "sha256Hash": "abc"}).status_code == 400
        assert api.post("/api/public/media", json={**good, "traceId": None}).status_code == 400
        announced = api.post("/api/public/media", json=good).json()
        upload = announced["uploadUrl"]
        assert httpx.put(upload, content=JPEG).status_code == 400  # not the bytes announced
        assert httpx.put(upload.replace("signature=", "signature=0"), content=PNG).status_code == 403
        assert httpx.put(upload, content=PNG).status_code == 200
        assert api.post("/api/public/media", json=good).json()["uploadUrl"] is None  # stored: nothing to upload
        record = api.get(f"/api/public/media/{announced['mediaId']}").json()
        assert (record["contentType"], record["contentLength"]) == ("image/png", len(PNG))
        downloaded = httpx.get(record["url"])
        assert downloaded.content == PNG and downloaded.headers["content-type"] == "image/png"
        assert "sandbox" in downloaded.headers["content-security-policy"]  # served from the web view's origin
        assert api.get("/api/public/media/nope").status_code == 404


def test_a_dataset_item_s_media_is_kept_and_uploaded_as_the_sdk_does(tmp_path):
    photo = LangfuseMedia(content_bytes=JPEG, content_type="image/jpeg")
    local = Langfuse(public_key="")
    local.create_dataset(name="photos")
    item = local.create_dataset_item(dataset_name="photos", input={"photo": photo, "q": "what is it?"})
    assert item.input == {"photo": photo._reference_string, "q": "what is it?"}
    # get_dataset resolves it as SDK 5 does: a LangfuseMediaReference where the reference string was
    (got,) = local.get_dataset("photos").items
    assert isinstance(got.input["photo"], LangfuseMediaReference) and got.input["q"] == "what is it?"
    assert (got.input["photo"].reference_string, got.input["photo"].content_type) == (
        photo._reference_string,
        "image/jpeg",
    )
    assert got.input["photo"].fetch_bytes() == JPEG
    assert local.store.media(str(photo._media_id)) == (JPEG, "image/jpeg")
    links = local.store._read(lambda c: c.execute("SELECT dataset_item_id, field FROM media_links").fetchall())
    assert links == [(item.id, "input")]

    with ServeProcess(tmp_path / "langfuse.db") as server:
        remote = Langfuse(public_key="pk-lf-d", secret_key="sk-lf-d", base_url=server.url)
        remote.create_dataset(name="photos")
        made = remote.create_dataset_item(dataset_name="photos", input="describe", expected_output={"photo": photo})
        assert made.expected_output == {"photo": photo._reference_string}
        # "Langfuse" (serve) lists the item's mediaReferences: the official SDK and lftrace resolve them alike
        from langfuse import Langfuse as OfficialLangfuse

        official = OfficialLangfuse(public_key="pk-lf-d", secret_key="sk-lf-d", base_url=server.url)
        theirs = official.get_dataset("photos").items[0].expected_output["photo"]
        ours = remote.get_dataset("photos").items[0].expected_output["photo"]
        assert theirs.fetch_bytes() == ours.fetch_bytes() == JPEG
        for name in ("media_id", "content_type", "content_length", "reference_string"):
            assert getattr(ours, name) == getattr(theirs, name), name
        assert theirs.fetch_data_uri() == ours.fetch_data_uri()
        official.shutdown()
        with TraceStore(tmp_path / "langfuse.db", create=False) as served:
            assert served.media(str(photo._media_id)) == (JPEG, "image/jpeg")
            links = served._read(lambda c: c.execute("SELECT dataset_item_id, field FROM media_links").fetchall())
            assert links == [(made.id, "expectedOutput")]
        remote.shutdown()


def test_lftrace_media_shows_and_writes_what_a_reference_names(isolated_env, tmp_path):
    langfuse = Langfuse(public_key="")
    trace_id = vision_run(langfuse)
    langfuse.shutdown()
    reference = official_reference(PNG, "image/png", "base64_data_uri")
    media_id = reference.split("id=")[1].split("|")[0]
    lftrace = [str(Path(sys.executable).parent / "lftrace"), "media"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*lftrace, *args], capture_output=True, text=True, timeout=60)

    shown = run(media_id)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[:2] == [
        f"image/png  {len(PNG):,} bytes  {media_id}",
        f"  in trace {trace_id} input",
    ]
    written = run(reference, "-o", str(tmp_path / "picture.png"))  # a whole reference string works too
    assert written.returncode == 0 and (tmp_path / "picture.png").read_bytes() == PNG
    assert f"wrote {len(PNG):,} bytes (image/png)" in written.stderr
    record = json.loads(run(media_id, "--json").stdout)
    assert (record["contentType"], record["size"], record["stored"]) == ("image/png", len(PNG), True)
    assert record["places"] == [{"traceId": trace_id, "observationId": None, "datasetItemId": None, "field": "input"}]
    missing, malformed = run("nope"), run("@@@langfuseMedia:type=image/png@@@")
    assert missing.returncode == 4 and "no media 'nope'" in missing.stderr
    assert malformed.returncode == 2 and "not a media reference" in malformed.stderr
    for result in (missing, malformed):
        assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr


def test_serve_forward_relays_the_media_an_sdk_uploads_after_its_spans(tmp_path):
    """The SDK sends spans and uploads media on separate queues: a relay that forwarded the trace before the
    bytes arrived sends it again with them."""
    import time

    from langfuse import Langfuse as OfficialLangfuse
    from langfuse.media import LangfuseMedia as OfficialMedia

    with ServeProcess(tmp_path / "upstream.db") as upstream:
        keys = {"LANGFUSE_PUBLIC_KEY": "pk-lf-media-r", "LANGFUSE_SECRET_KEY": "sk-lf-media-r"}
        env = {**keys, "LANGFUSE_BASE_URL": upstream.url, "LANGFUSE_FLUSH_INTERVAL": "0.2"}
        with ServeProcess(tmp_path / "relay.db", "--forward", env=env) as relay:
            official = OfficialLangfuse(public_key="pk-lf-media-r", secret_key="sk-lf-media-r", base_url=relay.url)
            media = OfficialMedia(content_bytes=JPEG, content_type="image/jpeg")
            with official.start_as_current_observation(name="vision", input={"photo": media}) as span:
                trace_id = span.trace_id
            official.flush()
            official.shutdown()
            arrived: list = []
            stored = None
            deadline = time.monotonic() + 20
            # the upstream may take the media upload before it has written the relayed spans: wait for both
            while (not arrived or stored is None) and time.monotonic() < deadline:
                time.sleep(0.2)
                if (tmp_path / "upstream.db").exists():
                    with TraceStore(tmp_path / "upstream.db", create=False) as up:
                        arrived = up.trace_media([trace_id]).get(trace_id, [])
                        stored = next((t for t in up.list_traces(limit=10) if t.id == trace_id), None)
            assert [(m.content, m.content_type) for m in arrived] == [(JPEG, "image/jpeg")]
            with TraceStore(tmp_path / "upstream.db", create=False) as up:
                assert up.get_trace(trace_id).input == {"photo": media._reference_string}


def test_show_names_the_media_instead_of_printing_it(isolated_env, monkeypatch):
    lftrace = str(Path(sys.executable).parent / "lftrace")
    for upload in ("true", "false"):  # referenced, or inline as data URIs: the same lines, never base64
        monkeypatch.setenv("LANGFUSE_MEDIA_UPLOAD_ENABLED", upload)
        langfuse = Langfuse(public_key="")
        trace_id = vision_run(langfuse)
        langfuse.shutdown()
        tree = subprocess.run([lftrace, "show", trace_id], capture_output=True, text=True, timeout=60)
        assert tree.returncode == 0, tree.stderr
        assert "in: What is in these pictures? [image/png] [image/jpeg] [image/png]" in tree.stdout, tree.stdout
        detail = subprocess.run([lftrace, "show", trace_id, "look"], capture_output=True, text=True, timeout=60)
        assert detail.returncode == 0, detail.stderr
        assert "[image/png]\n  [image/jpeg]\n  [image/png]" in detail.stdout
        for shown in (tree.stdout, detail.stdout):
            assert PNG_B64[:100] not in shown and len(shown) < 3000
        png_id = official_reference(PNG, "image/png", "base64_data_uri").split("id=")[1].split("|")[0]
        listed = f"lftrace media {png_id} -o" in detail.stdout.replace("\n", "")
        assert listed == (upload == "true")  # the Media section lists what the store keeps


def test_the_bytes_are_stored_once_not_again_in_the_trace_row(isolated_env):
    langfuse = Langfuse(public_key="")
    trace_id = vision_run(langfuse)
    langfuse.shutdown()
    with TraceStore(isolated_env, create=False) as store:
        (row,) = store._read(lambda c: c.execute("SELECT length(data) FROM traces").fetchall())
        stored = store._read(lambda c: c.execute("SELECT sum(size) FROM media").fetchone()[0])
        assert row[0] < 2_000  # the trace's own fields only: its media went to the media table
        assert stored == len(PNG) + len(JPEG)
        assert not store.get_trace(trace_id).media  # a trace read back carries references, not media
