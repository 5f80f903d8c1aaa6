"""The read-only web view at ``/``: the traces list with filters, one trace as a tree and a timeline, and the
observation panel. Plain server-rendered HTML (every value escaped) and a little JavaScript; no build step.

The trace page embeds its observations as JSON (``<script type="application/json">``, with ``<`` escaped) and
the script fills the panel for the observation clicked, or the one named in the URL (``#obs=<id>``).
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from ..errors import LftraceError
from ..media import REFERENCE, LangfuseMedia
from ..model import Observation, Trace, TraceSummary, iso_from_ns, ns_from_iso
from ..store import TraceStore
from .media import DOWNLOAD_PATH, SignedUrls

PAGE_SIZE = 100
_STATUS_CLASS = {"ok": "ok", "error": "err", "interrupted": "warn", "running": "run"}

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
"""

SCRIPT = r"""
(function () {
  var data = JSON.parse(document.getElementById('observations').textContent);
  var media = JSON.parse(document.getElementById('media').textContent);
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
  function mediaSection(o) {
    var found = {};
    [o.input, o.output, o.metadata].forEach(function (v) {
      var s = typeof v === 'string' ? v : JSON.stringify(v === undefined ? null : v);
      (s.match(/@@@langfuseMedia:[^@]*@@@/g) || []).forEach(function (ref) {
        var m = ref.match(/\|id=([^|@]+)/);
        if (m && media[m[1]]) found[m[1]] = media[m[1]];
      });
    });
    var ids = Object.keys(found);
    if (!ids.length) return null;
    var wrap = document.createElement('section');
    wrap.className = 'media';
    wrap.appendChild(text('h4', 'Media'));
    ids.forEach(function (mid) {
      var m = found[mid], kind = m.type.split('/')[0], el;
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
  function show(id) {
    var o = byId[id];
    if (!o) return;
    document.querySelectorAll('.selected').forEach(function (el) { el.classList.remove('selected'); });
    document.querySelectorAll('[data-obs="' + id + '"]').forEach(function (el) { el.classList.add('selected'); });
    var panel = document.getElementById('panel');
    panel.textContent = '';
    panel.setAttribute('data-shown', id);
    panel.appendChild(text('h3', o.type + ' ' + o.name));
    var meta = document.createElement('div');
    meta.className = 'meta';
    [['id', o.id], ['start', o.startTime], ['latency', o.latency === null ? 'running' : o.latency.toFixed(3) + ' s'],
     ['level', o.level], ['model', o.model], ['status', o.statusMessage]].forEach(function (pair) {
      if (pair[1] !== null && pair[1] !== undefined) meta.appendChild(text('span', pair[0] + ': ' + pair[1]));
    });
    panel.appendChild(meta);
    [['Input', o.input], ['Output', o.output], ['Usage', o.usageDetails], ['Cost (USD)', o.costDetails],
     ['Model parameters', o.modelParameters], ['Metadata', o.metadata]].forEach(function (pair) {
      var el = block(pair[0], pair[1]);
      if (el) panel.appendChild(el);
    });
    var shownMedia = mediaSection(o);
    if (shownMedia) panel.appendChild(shownMedia);
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
        return "running"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _list_html(rows: list[TraceSummary], query: dict[str, str], more: bool) -> str:
    def field(name: str, label: str) -> str:
        return f'<input name="{name}" placeholder="{label}" value="{_e(query.get(name, ""))}">'

    status = query.get("status", "")
    options = "".join(
        f'<option value="{v}"{" selected" if v == status else ""}>{v or "any status"}</option>'
        for v in ("", "ok", "error", "interrupted", "running")
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


def _tree_html(trace: Trace) -> str:
    kids = trace.children()
    known = {o.id for o in trace.observations}
    roots = [o for o in trace.observations if o.parent_id is None or o.parent_id not in known]
    roots.sort(key=lambda o: o.start_time)

    def node(obs: Observation, depth: int) -> str:
        level = f' <span class="err">{_e(obs.level)}</span>' if obs.level in ("ERROR", "WARNING") else ""
        label = (
            f'<span class="obs" data-obs="{_e(obs.id)}"><span class="type t-{_e(obs.type)}">{_e(obs.type)}</span>'
            f"{_e(obs.name)} <small>{_e(_seconds(obs.latency))}</small>{level}</span>"
        )
        children = kids.get(obs.id, []) if depth < 200 else []
        inner = "".join(node(child, depth + 1) for child in children if child.id != obs.id)
        return f"<li>{label}{f'<ul>{inner}</ul>' if inner else ''}</li>"

    return '<div class="tree"><ul>' + "".join(node(r, 0) for r in roots) + "</ul></div>"


def _timeline_html(trace: Trace) -> str:
    if not trace.observations:
        return ""
    start = min(o.start_time for o in trace.observations)
    end = max((o.end_time or o.start_time) for o in trace.observations)
    span = max(end - start, 1)
    rows = []
    for obs in sorted(trace.observations, key=lambda o: o.start_time):
        left = (obs.start_time - start) / span * 100
        width = max(((obs.end_time or end) - obs.start_time) / span * 100, 0.2)
        rows.append(
            f'<div class="row" data-obs="{_e(obs.id)}" title="{_e(obs.name)} {_e(_seconds(obs.latency))}">'
            f'<div class="bar {_e(obs.type)} lvl-{_e(obs.level)}" style="left:{left:.3f}%;width:{width:.3f}%"></div>'
            f'<span class="label">{_e(obs.name)}</span></div>'
        )
    return f'<h3>Timeline</h3><div class="timeline">{"".join(rows)}</div>'


def _trace_html(trace: Trace) -> str:
    status = trace.status
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
        f'<div class="cols"><div>{_tree_html(trace)}{_timeline_html(trace)}</div>'
        '<div id="panel">Select an observation.</div></div>'
    )


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
        found = await run_in_threadpool(store.get_traces, [trace_id])
        if not found:
            back = urlencode({})
            return HTMLResponse(
                f"<!doctype html><title>not found</title><p>No trace {_e(trace_id)}. <a href='/?{back}'>All traces</a>",
                status_code=404,
            )
        trace = found[0]
        observations = _json_for_script([o.to_dict() for o in trace.observations])
        media = await run_in_threadpool(_media_urls, request, observations)
        script = (
            f'<script type="application/json" id="observations">{observations}</script>'
            f'<script type="application/json" id="media">{_json_for_script(media)}</script>'
            f"<script>{SCRIPT}</script>"
        )
        return _page(trace.name or trace.id, _trace_html(trace), script)

    return [Route("/", index, methods=["GET"]), Route("/trace/{trace_id}", trace_page, methods=["GET"])]
