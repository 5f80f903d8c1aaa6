"""Langfuse's media API in ``lftrace serve``: what the SDKs call to upload an image or a file a trace refers to.

``POST /api/public/media`` announces media (its SHA-256 names it: Langfuse's id) where it appears and answers
with an upload URL, or none when the bytes are stored already; the client PUTs the bytes there and reports the
upload with ``PATCH /api/public/media/{id}``; ``GET /api/public/media/{id}`` gives a download URL
(``LangfuseMedia.resolve_media_references``). The upload and download URLs are this server's own, signed and
valid for an hour, as Langfuse's presigned storage URLs are: they carry no Basic auth.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import LftraceError
from ..media import MEDIA_TYPES, id_of_digest
from ..store import TraceStore

UPLOAD_PATH = "/media-upload/"
DOWNLOAD_PATH = "/media-content/"
SIGNED_PATHS = (UPLOAD_PATH, DOWNLOAD_PATH)  # checked by their signature, not by Basic auth
URL_TTL_S = 3600


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message, "error": message}, status_code=status)


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat().replace("+00:00", "Z")


class SignedUrls:
    """This server's upload and download URLs of media, signed with a key of its own and valid for an hour."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def _mac(self, path: str, media_id: str, expires: str) -> str:
        return hmac.new(self._key, f"{path}{media_id}:{expires}".encode(), hashlib.sha256).hexdigest()

    def sign(self, request: Request, path: str, media_id: str) -> tuple[str, int]:
        """(the URL, its expiry in seconds since the epoch); ``path`` is UPLOAD_PATH or DOWNLOAD_PATH."""
        expires = int(time.time()) + URL_TTL_S
        mac = self._mac(path, media_id, str(expires))
        return f"{str(request.base_url).rstrip('/')}{path}{media_id}?expires={expires}&signature={mac}", expires

    def check(self, request: Request, path: str) -> str:
        """The media id of a signed request; PermissionError when the signature is wrong or has expired."""
        media_id = str(request.path_params["media_id"])
        expires = request.query_params.get("expires", "")
        wanted = self._mac(path, media_id, expires)
        if not hmac.compare_digest(request.query_params.get("signature", ""), wanted) or not expires.isdigit():
            raise PermissionError("this URL is not signed by this server")
        if int(expires) < time.time():
            raise PermissionError("this URL has expired")
        return media_id


def routes(
    store: TraceStore,
    max_body_bytes: int,
    read_body: Callable[[Request, int], Awaitable[bytes]],
    urls: SignedUrls,
) -> list[Route]:
    signed, check_signature = urls.sign, urls.check

    async def announce(request: Request) -> Response:
        """``POST /api/public/media``: media a client is about to upload, and where it appears."""
        try:
            data = orjson.loads(await read_body(request, max_body_bytes))
        except orjson.JSONDecodeError as exc:
            return _error(400, f"malformed JSON body: {exc}")
        if not isinstance(data, dict):
            return _error(400, "malformed media body: expected a JSON object")
        kind, size, digest, field = (data.get(k) for k in ("contentType", "contentLength", "sha256Hash", "field"))
        if kind not in MEDIA_TYPES:
            return _error(400, f"unsupported contentType {str(kind)[:100]!r}")
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0 or size > max_body_bytes:
            return _error(400, f"contentLength must be a number of bytes from 1 to {max_body_bytes}")
        if not isinstance(field, str) or not field or not isinstance(digest, str):
            return _error(400, "malformed media body: sha256Hash and field are required")
        try:
            if len(base64.b64decode(digest, validate=True)) != 32:
                raise ValueError
        except (binascii.Error, ValueError):
            return _error(400, "sha256Hash must be the base64 of a SHA-256 digest")
        trace, item = data.get("traceId"), data.get("datasetItemId")
        if not (isinstance(trace, str) and trace) and not (isinstance(item, str) and item):
            return _error(400, "give a traceId (and observationId) or a datasetId and datasetItemId")
        media_id = id_of_digest(digest)  # the id the SDKs derive
        observation = data.get("observationId")
        try:
            stored = await run_in_threadpool(
                lambda: store.announce_media(
                    media_id,
                    kind,
                    size,
                    digest,
                    field=field,
                    trace_id=trace if isinstance(trace, str) else None,
                    observation_id=observation if isinstance(observation, str) else None,
                    dataset_item_id=item if isinstance(item, str) else None,
                )
            )
        except LftraceError as exc:
            return _error(503, f"the trace store cannot take the media: {exc}")
        upload = None if stored else signed(request, UPLOAD_PATH, media_id)[0]
        return JSONResponse({"uploadUrl": upload, "mediaId": media_id})

    async def upload(request: Request) -> Response:
        """``PUT`` to an upload URL: the bytes, checked against the announced SHA-256."""
        try:
            media_id = check_signature(request, UPLOAD_PATH)
        except PermissionError as exc:
            return _error(403, str(exc))
        record = await run_in_threadpool(store.media_record, media_id)
        if record is None:
            return _error(404, f"no media {media_id} was announced")
        content = await read_body(request, max_body_bytes)
        digest = base64.b64encode(hashlib.sha256(content).digest()).decode()
        if not hmac.compare_digest(digest, str(record["sha256"])):
            return _error(400, "the body's SHA-256 is not the one announced (x-amz-checksum-sha256 mismatch)")
        await run_in_threadpool(store.store_media_content, media_id, content)
        return Response(status_code=200)

    async def report(request: Request) -> Response:
        """``PATCH /api/public/media/{id}``: the client's report of its upload (the bytes are checked on PUT)."""
        record = await run_in_threadpool(store.media_record, request.path_params["media_id"])
        return Response(status_code=204) if record is not None else _error(404, "no such media")

    async def describe(request: Request) -> Response:
        """``GET /api/public/media/{id}``: the record with a download URL."""
        media_id = request.path_params["media_id"]
        record = await run_in_threadpool(store.media_record, media_id)
        if record is None or not record["content"]:
            return _error(404, f"no uploaded media {media_id[:40]}")
        url, expires = signed(request, DOWNLOAD_PATH, media_id)
        return JSONResponse(
            {
                "mediaId": media_id,
                "contentType": record["content_type"],
                "contentLength": record["size"],
                "uploadedAt": _iso(record["uploaded_ns"] or record["created_ns"]),
                "url": url,
                "urlExpiry": _iso(expires * 1_000_000_000),
            }
        )

    async def download(request: Request) -> Response:
        try:
            media_id = check_signature(request, DOWNLOAD_PATH)
        except PermissionError as exc:
            return _error(403, str(exc))
        found: Any = await run_in_threadpool(store.media, media_id)
        if found is None:
            return _error(404, f"no uploaded media {media_id[:40]}")
        content, kind = found
        # served from the web view's origin: an uploaded HTML or SVG file must not run script there
        headers = {
            "Cache-Control": "private, max-age=3600",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
            "X-Content-Type-Options": "nosniff",
        }
        if not kind.startswith(("image/", "audio/", "video/")) or kind == "image/svg+xml":
            headers["Content-Disposition"] = "attachment"
        return Response(content, media_type=kind, headers=headers)

    return [
        Route("/api/public/media", announce, methods=["POST"]),
        Route("/api/public/media/{media_id}", report, methods=["PATCH"]),
        Route("/api/public/media/{media_id}", describe, methods=["GET"]),
        Route(UPLOAD_PATH + "{media_id}", upload, methods=["PUT"]),
        Route(DOWNLOAD_PATH + "{media_id}", download, methods=["GET"]),
    ]
