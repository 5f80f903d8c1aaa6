"""The read-only web view at ``/``: the traces list with filters, one trace as a tree and a timeline, and the
observation panel. Plain server-rendered HTML (every value escaped) and a little JavaScript; no build step.

The trace page embeds an outline of each observation as JSON (``<script type="application/json">``, with ``<``
escaped: id, type, name, start, latency, level, model, status) and folds repeated sequences of siblings as ``show``
does; the script fills the panel for the observation clicked, or the one named in the URL (``#obs=<id>``), with
its values fetched from ``/trace/<trace id>/observations/<id>``. A long agent run's inputs hold the conversation
so far at every step (the square of its length: 144 MB of page at 1,000 steps when the page held them all);
the page is linear in the number of observations and one observation's values are read at a time.
"""

from __future__ import annotations

import html
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ..errors import InputError, LftraceError, TraceNotFound
from ..fold import Fold, fold_siblings
from ..media import REFERENCE, LangfuseMedia
from ..model import Observation, Trace, TraceSummary, iso_from_ns, ns_from_iso
from ..store import TraceStore
from .media import DOWNLOAD_PATH, SignedUrls

PAGE_SIZE = 100
_STATUS_CLASS = {"ok": "ok", "error": "err", "interrupted": "warn", "running": "run", "incomplete": "err"}

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header{background:#1d1d1f;color:#fff;padding:10px 20px;display:flex;gap:16px;align-items:baseline}
header a{color:#fff;text-decoration:none;font-weight:600}
main{padding:16px 20px}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #e5e5e5;white-space:nowrap}
td.name{white-space:normal}
form.filters{display:flex;gap:8px;flex-wrap:wrap;margin-bottom:12px}
form.filters input,form.filters select{padding:4px 6px}
.ok{color:#137333}.err{color:#c5221f}.warn{color:#b06000}.run{color:#1a73e8}
.mono{font-family:ui-monospace,monospace;font-size:12px}
.cols{display:grid;grid-template-columns:minmax(320px,1fr) minmax(320px,1fr);gap:16px}
.tree ul{list-style:none;padding-left:16px;margin:0}
.tree>ul{padding-left:0}
.obs{cursor:pointer;padding:2px 4px;border-radius:4px;display:inline-block}
.obs.selected{background:#e8f0fe}
.type{font-size:11px;font-weight:600;padding:0 4px;border-radius:3px;background:#eee;margin-right:4px}
.t-GENERATION{background:#e6f4ea}.t-TOOL{background:#fef7e0}.t-AGENT{background:#f3e8fd}
.timeline{position:relative;background:#fff;border:1px solid #e5e5e5;padding:4px 0;margin-top:12px}
.row{position:relative;height:18px;cursor:pointer}
.bar{position:absolute;height:12px;top:3px;background:#8ab4f8;border-radius:2px;min-width:2px}
.bar.GENERATION{background:#81c995}.bar.TOOL{background:#fdd663}.bar.lvl-ERROR{background:#f28b82}
.label{position:absolute;left:4px;font-size:11px;top:1px;white-space:nowrap}
#panel{background:#fff;border:1px solid #e5e5e5;padding:12px;min-height:200px}
#panel pre{white-space:pre-wrap;word-break:break-word;background:#f5f5f5;padding:8px;max-height:400px;overflow:auto}
.media img,.media video{display:block;max-width:100%;max-height:320px;margin:4px 0;border:1px solid #e5e5e5}
.meta span{margin-right:12px}
.fold summary{cursor:pointer;color:#444}.bar.fold{background:#dadce0}.row.fold{cursor:default}
"""

SCRIPT = r"""
(function () {
  // the page holds each observation's outline; its values (input, output, metadata: a long run's inputs are
  // most of its size) are fetched when it is shown
  var data = JSON.parse(document.getElementById('observations').textContent);
  var panel = document.getElementById('panel');
  var traceId = panel.getAttribute('data-trace');
  var byId = {};
  data.forEach(function (o) { byId[o.id] = o; });
  function text(tag, value, cls) {
    var el = document.createElement(tag);
    if (cls) el.className = cls;
    el.textContent = value;
    return el;
  }
  function block(title, value) {
    if (value === null || value === undefined || (typeof value === 'object' && Object.keys(value).length === 0)) return null;
    var wrap = document.createElement('section');
    wrap.appendChild(text('h4', title));
    wrap.appendChild(text('pre', typeof value === 'string' ? value : JSON.stringify(value, null, 2)));
    return wrap;
  }
  function mediaSection(media) {
    var ids = Object.keys(media || {});
    if (!ids.length) return null;
    var wrap = document.createElement('section');
    wrap.className = 'media';
    wrap.appendChild(text('h4', 'Media'));
    ids.forEach(function (mid) {
      var m = media[mid], kind = m.type.split('/')[0], el;
      if (kind === 'image' || kind === 'audio' || kind === 'video') {
        el = document.createElement(kind === 'image' ? 'img' : kind);
        if (kind === 'image') el.onload = function () { el.setAttribute('data-loaded', el.naturalWidth + 'x' + el.naturalHeight); };
        else el.controls = true;
        el.src = m.url;
      } else {
        el = text('a', m.type + ' ' + mid);
        el.href = m.url;
        el.setAttribute('download', mid);
      }
      el.title = m.type + ' ' + mid;
      wrap.appendChild(el);
    });
    return wrap;
  }
  function fill(id, found) {
    var body = document.getElementById('values');
    if (panel.getAttribute('data-shown') !== id || !body) return;  // another observation was chosen meanwhile
    body.textContent = '';
    var o = found.observation;
    [['Input', o.input], ['Output', o.output], ['Usage', o.usageDetails], ['Cost (USD)', o.costDetails],
     ['Model parameters', o.modelParameters], ['Metadata', o.metadata]].forEach(function (pair) {
      var el = block(pair[0], pair[1]);
      if (el) body.appendChild(el);
    });
    var shownMedia = mediaSection(found.media);
    if (shownMedia) body.appendChild(shownMedia);
    panel.setAttribute('data-loaded', id);
  }
  function show(id) {
    var o = byId[id];
    if (!o) return;
    document.querySelectorAll('.selected').forEach(function (el) { el.classList.remove('selected'); });
    document.querySelectorAll('[data-obs="' + id + '"]').forEach(function (el) { el.classList.add('selected'); });
    panel.textContent = '';
    panel.setAttribute('data-shown', id);
    panel.removeAttribute('data-loaded');
    panel.appendChild(text('h3', o.type + ' ' + o.name));
    var meta = document.createElement('div');
    meta.className = 'meta';
    [['id', o.id], ['start', o.startTime], ['latency', o.latency === null ? 'running' : o.latency.toFixed(3) + ' s'],
     ['level', o.level], ['model', o.model], ['status', o.statusMessage]].forEach(function (pair) {
      if (pair[1] !== null && pair[1] !== undefined) meta.appendChild(text('span', pair[0] + ': ' + pair[1]));
    });
    panel.appendChild(meta);
    var body = text('div', 'loading…');
    body.id = 'values';
    panel.appendChild(body);
    fetch('/trace/' + encodeURIComponent(traceId) + '/observations/' + encodeURIComponent(id))
      .then(function (r) { return r.ok ? r.json() : Promise.reject(new Error('HTTP ' + r.status)); })
      .then(function (found) { fill(id, found); })
      .catch(function (err) {
        if (panel.getAttribute('data-shown') === id) body.textContent = 'could not load its values: ' + err.message;
      });
    if (history.replaceState) history.replaceState(null, '', '#obs=' + id);
  }
  document.querySelectorAll('[data-obs]').forEach(function (el) {
    el.addEventListener('click', function () { show(el.getAttribute('data-obs')); });
  });
  var wanted = (location.hash.match(/obs=([^&]+)/) || [])[1];
  show(wanted && byId[decodeURIComponent(wanted)] ? decodeURIComponent(wanted) : (data[0] || {}).id);
})();
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _page(title: str, body: str, script: str = "") -> HTMLResponse:
    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)} - lftrace</title><style>{CSS}</style></head><body>"
        '<header><a href="/">lftrace</a><span>local traces</span></header>'
        f"<main>{body}</main>{script}</body></html>"
    )
    return HTMLResponse(page)


def _seconds(value: float | None) -> str:
    if value is None:
        return "open"  # no end (yet): as `show` says it; the status tells running from incomplete
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _list_html(rows: list[TraceSummary], query: dict[str, str], more: bool) -> str:
    def field(name: str, label: str) -> str:
        return f'<input name="{name}" placeholder="{label}" value="{_e(query.get(name, ""))}">'

    status = query.get("status", "")
    options = "".join(
        f'<option value="{v}"{" selected" if v == status else ""}>{v or "any status"}</option>'
        for v in ("", "ok", "error", "interrupted", "running", "incomplete")
    )
    form = (
        '<form class="filters" method="get" action="/">'
        f"{field('name', 'name')}{field('session', 'session id')}{field('user', 'user id')}{field('tag', 'tag')}"
        f"{field('since', 'since (ISO date)')}"
        f'<select name="status">{options}</select><button type="submit">Filter</button>'
        '<a href="/">clear</a></form>'
    )
    lines = []
    for s in rows:
        tags = ", ".join(s.tags)
        cost = "" if s.total_cost is None else f"${s.total_cost:.6f}"
        lines.append(
            "<tr>"
            f'<td class="mono">{_e((iso_from_ns(s.timestamp) or "")[:19].replace("T", " "))}</td>'
            f'<td class="name"><a href="/trace/{_e(s.id)}">{_e(s.name or "(unnamed)")}</a></td>'
            f'<td class="{_STATUS_CLASS.get(s.status, "")}">{_e(s.status)}</td>'
            f"<td>{_e(_seconds(s.latency))}</td><td>{s.observation_count}</td><td>{s.total_tokens}</td>"
            f"<td>{_e(cost)}</td><td>{_e(s.session_id or '')}</td><td>{_e(s.user_id or '')}</td><td>{_e(tags)}</td>"
            f'<td class="mono"><a href="/trace/{_e(s.id)}">{_e(s.id[:12])}</a></td>'
            "</tr>"
        )
    table = (
        '<table id="traces"><thead><tr><th>time (UTC)</th><th>name</th><th>status</th><th>latency</th>'
        "<th>observations</th><th>tokens</th><th>cost</th><th>session</th><th>user</th><th>tags</th><th>id</th>"
        f"</tr></thead><tbody>{''.join(lines)}</tbody></table>"
    )
    empty = "" if rows else "<p>No traces match. Send some to this server, or clear the filters.</p>"
    note = f"<p>Showing the newest {len(rows)}; narrow the filters to see older ones.</p>" if more else ""
    return f"<h2>Traces</h2>{form}{table}{empty}{note}"


def _tree_html(trace: Trace) -> tuple[str, list[Observation | Fold]]:
    """The tree, and what of it is shown before any fold is opened (the timeline's rows).

    Repeated sequences of siblings are folded as ``show`` folds them (fold.py): the fold is a ``<details>``
    that holds the folded observations, so a 10,000-step loop is one screen and still all there."""
    kids = trace.children()
    known = {o.id for o in trace.observations}
    roots = [o for o in trace.observations if o.parent_id is None or o.parent_id not in known]
    roots.sort(key=lambda o: o.start_time)
    visible: list[Observation | Fold] = []

    def level(siblings: list[Observation], depth: int, shown: bool) -> str:
        return "".join(item(x, depth, shown) for x in fold_siblings(siblings, kids))

    def item(x: Observation | Fold, depth: int, shown: bool) -> str:
        if not isinstance(x, Fold):
            return node(x, depth, shown)
        if shown:
            visible.append(x)
        inner = "".join(node(obs, depth, False) for obs in x.observations)
        return (
            f'<li class="fold"><details><summary><b>{_e(x.label())}</b> <small>{_e(x.totals())}</small></summary>'
            f"<ul>{inner}</ul></details></li>"
        )

    def node(obs: Observation, depth: int, shown: bool) -> str:
        if shown:
            visible.append(obs)
        level_mark = f' <span class="err">{_e(obs.level)}</span>' if obs.level in ("ERROR", "WARNING") else ""
        label = (
            f'<span class="obs" data-obs="{_e(obs.id)}"><span class="type t-{_e(obs.type)}">{_e(obs.type)}</span>'
            f"{_e(obs.name)} <small>{_e(_seconds(obs.latency))}</small>{level_mark}</span>"
        )
        children = [c for c in kids.get(obs.id, []) if c.id != obs.id] if depth < 200 else []
        inner = level(children, depth + 1, shown)
        return f"<li>{label}{f'<ul>{inner}</ul>' if inner else ''}</li>"

    tree = '<div class="tree"><ul>' + level(roots, 0, True) + "</ul></div>"
    return tree, visible


def _timeline_html(trace: Trace, visible: list[Observation | Fold]) -> str:
    """A bar per observation shown in the tree, and one per fold over the time its observations took."""
    if not trace.observations:
        return ""
    start = min(o.start_time for o in trace.observations)
    end = max((o.end_time or o.start_time) for o in trace.observations)
    span = max(end - start, 1)

    def bounds(x: Observation | Fold) -> tuple[int, int]:
        if isinstance(x, Fold):
            return min(o.start_time for o in x.observations), max((o.end_time or end) for o in x.observations)
        return x.start_time, x.end_time or end

    rows = []
    for x in sorted(visible, key=lambda x: bounds(x)[0]):
        first, last = bounds(x)
        left = (first - start) / span * 100
        width = max((last - first) / span * 100, 0.2)
        style = f"left:{left:.3f}%;width:{width:.3f}%"
        if isinstance(x, Fold):
            rows.append(
                f'<div class="row fold" title="{_e(x.totals())}"><div class="bar fold" style="{style}"></div>'
                f'<span class="label">{_e(x.label())}</span></div>'
            )
            continue
        rows.append(
            f'<div class="row" data-obs="{_e(x.id)}" title="{_e(x.name)} {_e(_seconds(x.latency))}">'
            f'<div class="bar {_e(x.type)} lvl-{_e(x.level)}" style="{style}"></div>'
            f'<span class="label">{_e(x.name)}</span></div>'
        )
    return f'<h3>Timeline</h3><div class="timeline">{"".join(rows)}</div>'


def _trace_html(trace: Trace) -> str:
    tree, visible = _tree_html(trace)
    status = trace.shown_status
    facts = [
        ("id", trace.id),
        ("start (UTC)", (iso_from_ns(trace.timestamp) or "")[:23].replace("T", " ")),
        ("latency", _seconds(trace.latency)),
        ("tokens", trace.total_tokens),
        ("cost", None if trace.total_cost is None else f"${trace.total_cost:.6f}"),
        ("session", trace.session_id),
        ("user", trace.user_id),
        ("tags", ", ".join(trace.tags) or None),
        ("environment", trace.environment),
        ("release", trace.release),
    ]
    meta = "".join(f"<span>{_e(k)}: {_e(v)}</span>" for k, v in facts if v not in (None, ""))
    return (
        f'<h2>{_e(trace.name or "(unnamed)")} <span class="{_STATUS_CLASS.get(status, "")}">{_e(status)}</span></h2>'
        f'<div class="meta">{meta}</div>'
        f'<div class="cols"><div>{tree}{_timeline_html(trace, visible)}</div>'
        f'<div id="panel" data-trace="{_e(trace.id)}">Select an observation.</div></div>'
    )


_OUTLINE_KEYS = ("id", "type", "name", "startTime", "latency", "level", "model", "statusMessage")


def _outline(obs: Observation) -> dict[str, Any]:
    """What the page holds of an observation: the panel's heading (its values are fetched when it is shown)."""
    data = obs.to_dict()
    return {key: data.get(key) for key in _OUTLINE_KEYS}


def _json_for_script(value: Any) -> str:
    # inside <script>, "</script>" or "<!--" in data must not end the element: escape every "<"
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode().replace("<", "\\u003c")


def routes(store: TraceStore, urls: SignedUrls) -> list[Route]:
    async def index(request: Request) -> Response:
        q = {k: v for k, v in request.query_params.items() if v}
        try:
            since = ns_from_iso(q["since"]) if q.get("since") else None
        except ValueError:
            return _page("Traces", f"<p class=err>since must be an ISO date, not {_e(q['since'])}</p>")

        def load() -> list[TraceSummary]:
            return store.list_traces(
                limit=PAGE_SIZE + 1,
                name=q.get("name"),
                session_id=q.get("session"),
                user_id=q.get("user"),
                tag=q.get("tag"),
                since_ns=since,
                status=q.get("status"),
            )

        try:
            rows = await run_in_threadpool(load)
        except LftraceError as exc:
            return _page("Traces", f"<p class=err>{_e(exc)}</p>")
        more = len(rows) > PAGE_SIZE
        return _page("Traces", _list_html(rows[:PAGE_SIZE], q, more))

    def _media_urls(request: Request, observations: str) -> dict[str, dict[str, str]]:
        """{media id: {"url", "type"}} of the stored media the observations refer to (signed download URLs)."""
        shown: dict[str, dict[str, str]] = {}
        seen: set[str] = set()
        for match in REFERENCE.finditer(observations):
            try:
                media_id = LangfuseMedia.parse_reference_string(match.group(0))["media_id"]
            except ValueError:
                continue
            if media_id in seen:
                continue
            seen.add(media_id)
            record = store.media_record(media_id)
            if record is not None and record["content"]:
                shown[media_id] = {
                    "url": urls.sign(request, DOWNLOAD_PATH, media_id)[0],
                    "type": record["content_type"],
                }
        return shown

    async def trace_page(request: Request) -> Response:
        trace_id = request.path_params["trace_id"]
        try:  # without the observations' inputs: a long run's are most of its size (the panel fetches one)
            trace = await run_in_threadpool(lambda: store.get_trace(trace_id, inputs=False))
        except (TraceNotFound, InputError) as exc:
            why = f"No trace {_e(trace_id)}." if isinstance(exc, TraceNotFound) else _e(exc)  # InputError: ambiguous
            return HTMLResponse(
                f"<!doctype html><title>not found</title><p>{why} <a href='/'>All traces</a>", status_code=404
            )
        except LftraceError as exc:
            return _page("Trace", f"<p class=err>{_e(exc)}</p>")
        observations = _json_for_script([_outline(o) for o in trace.observations])
        script = f'<script type="application/json" id="observations">{observations}</script><script>{SCRIPT}</script>'
        return _page(trace.name or trace.id, _trace_html(trace), script)

    async def observation_values(request: Request) -> Response:
        """One observation in full (what the panel shows) and the media it refers to, as JSON."""
        trace_id, obs_id = request.path_params["trace_id"], request.path_params["observation_id"]

        def load() -> bytes | None:
            obs = store.get_observation(trace_id, obs_id)
            if obs is None:
                return None
            text = orjson.dumps(obs.to_dict(), default=str, option=orjson.OPT_NON_STR_KEYS)
            media = orjson.dumps(_media_urls(request, text.decode()))
            return b'{"observation":' + text + b',"media":' + media + b"}"

        try:
            body = await run_in_threadpool(load)
        except LftraceError as exc:
            return JSONResponse({"message": str(exc)}, status_code=500)
        if body is None:
            return JSONResponse({"message": f"no observation {obs_id} in trace {trace_id}"}, status_code=404)
        return Response(body, media_type="application/json")

    return [
        Route("/", index, methods=["GET"]),
        Route("/trace/{trace_id}", trace_page, methods=["GET"]),
        Route("/trace/{trace_id}/observations/{observation_id}", observation_values, methods=["GET"]),
    ]
