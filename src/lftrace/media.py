"""Media in traces (an image sent to a vision model, audio, a PDF) as Langfuse keeps it: the bytes once, a
reference string in the data.

A base64 data URI in an input, output or metadata, a provider's base64 block (Anthropic's ``{"type": "base64",
"media_type", "data"}``, LangChain's ``{"type": "image", "source_type": "base64", "mime_type", "data"}``,
Gemini's ``inline_data``) or a ``LangfuseMedia`` object becomes
``@@@langfuseMedia:type=image/png|id=<id>|source=base64_data_uri@@@``. The id is derived from the content's
SHA-256 as the Langfuse SDK derives it, so the same image is one record wherever it appears.

The writer replaces them (``Extractor``, before the mask), the store keeps the bytes in its ``media`` table
linked to the trace, observation and field where each first appeared, the export uploads them through Langfuse's
media API (another OTLP backend gets the reference strings only), and ``LangfuseMedia.resolve_media_references``
turns references back into data URIs. ``LANGFUSE_MEDIA_UPLOAD_ENABLED=false`` leaves data URIs inline, as the
SDK does. Stdlib only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

log = logging.getLogger("lftrace")

T = TypeVar("T")

REFERENCE_PREFIX = "@@@langfuseMedia:"
REFERENCE = re.compile(r"@@@langfuseMedia:.+?@@@")
# the content types Langfuse's media API takes (its MediaContentType); others stay inline, never a dangling reference
MEDIA_TYPES = frozenset(
    [
        "image/png",
        "image/jpeg",
        "image/jpg",
        "image/webp",
        "image/gif",
        "image/svg+xml",
        "image/tiff",
        "image/bmp",
        "image/avif",
        "image/heic",
        "audio/mpeg",
        "audio/mp3",
        "audio/wav",
        "audio/ogg",
        "audio/oga",
        "audio/aac",
        "audio/mp4",
        "audio/flac",
        "audio/opus",
        "audio/webm",
        "video/mp4",
        "video/webm",
        "video/ogg",
        "video/mpeg",
        "video/quicktime",
        "video/x-msvideo",
        "video/x-matroska",
        "text/plain",
        "text/html",
        "text/css",
        "text/csv",
        "text/markdown",
        "text/x-python",
        "application/javascript",
        "text/x-typescript",
        "application/x-yaml",
        "application/pdf",
        "application/msword",
        "application/vnd.ms-excel",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/zip",
        "application/json",
        "application/xml",
        "application/octet-stream",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/rtf",
        "application/x-ndjson",
        "application/vnd.apache.parquet",
        "application/gzip",
        "application/x-tar",
        "application/x-7z-compressed",
    ]
)


def media_hint(data: bytes) -> bool:
    """The JSON text of a value may hold media to take out (a data URI's ``;base64,``, a block's ``"base64"``,
    Gemini's ``inline_data``/``inlineData``): two substring searches in C, ~0.1 us, before anything walks it."""
    return b"base64" in data or b"inline" in data


MAX_DEPTH = 20


def media_id(content: bytes) -> str:
    """Langfuse's id of a media record: the content's SHA-256, base64url, first 22 characters."""
    return id_of_digest(sha256_base64(content))


def id_of_digest(sha256: str) -> str:
    """``media_id`` from the base64 SHA-256 a client announces (what the SDKs send as ``sha256Hash``)."""
    return sha256.replace("+", "-").replace("/", "_")[:22]


def sha256_base64(content: bytes) -> str:
    return base64.b64encode(hashlib.sha256(content).digest()).decode()


def _decoded(data: str) -> bytes | None:
    """Base64 (standard or URL-safe alphabet) decoded; None when it is not base64."""
    try:
        return base64.b64decode(data.translate(_URLSAFE), validate=True)
    except (binascii.Error, ValueError):
        return None


def parse_data_uri(value: str) -> tuple[bytes, str] | None:
    """(content, content type) of a ``data:<type>[;param=...];base64,<data>`` URI; None when it is not one."""
    if not value.startswith("data:") or "," not in value:
        return None
    header, data = value[5:].split(",", 1)
    parts = header.split(";")
    content = _decoded(data) if "base64" in parts[1:] and parts[0] and data else None
    return None if content is None else (content, parts[0].lower())


_URLSAFE = str.maketrans("-_", "+/")


class LangfuseMedia:
    """Media to keep out of the trace's data (the Langfuse SDK's class, the same arguments): an image, audio or a
    file given as a base64 data URI, as bytes with their content type, or as a file path. In an input, output or
    metadata it stands for its reference string; the store keeps its bytes and the export uploads them."""

    obj: object

    def __init__(
        self,
        *,
        obj: object | None = None,
        base64_data_uri: str | None = None,
        content_type: str | None = None,
        content_bytes: bytes | None = None,
        file_path: str | None = None,
    ) -> None:
        self.obj = obj
        self._content_bytes: bytes | None = None
        self._content_type: str | None = None
        self._source: str | None = None
        if base64_data_uri is not None:
            parsed = parse_data_uri(base64_data_uri) if isinstance(base64_data_uri, str) else None
            if parsed is None:
                log.error("lftrace: LangfuseMedia: not a base64 data URI (data:<type>;base64,<data>)")
            else:
                self._content_bytes, self._content_type = parsed
                self._source = "base64_data_uri"
        elif content_bytes is not None and content_type is not None:
            self._content_bytes, self._content_type, self._source = bytes(content_bytes), content_type, "bytes"
        elif file_path is not None and content_type is not None:
            try:
                self._content_bytes = Path(file_path).read_bytes()
                self._content_type, self._source = content_type, "file"
            except OSError as exc:
                log.error("lftrace: LangfuseMedia: cannot read %s: %s", file_path, exc)
        else:
            log.error(
                "lftrace: LangfuseMedia needs base64_data_uri, or content_bytes and content_type, or file_path and "
                "content_type"
            )
        self._media_id = media_id(self._content_bytes) if self._content_bytes is not None else None

    @property
    def _content_length(self) -> int | None:
        return len(self._content_bytes) if self._content_bytes else None

    @property
    def _content_sha256_hash(self) -> str | None:
        return sha256_base64(self._content_bytes) if self._content_bytes is not None else None

    @property
    def _reference_string(self) -> str | None:
        if self._content_type is None or self._source is None or self._media_id is None:
            return None
        return f"{REFERENCE_PREFIX}type={self._content_type}|id={self._media_id}|source={self._source}@@@"

    def __repr__(self) -> str:
        return f"LangfuseMedia({self._content_type}, {self._content_length or 0} bytes, id={self._media_id})"

    @staticmethod
    def parse_reference_string(reference_string: str) -> dict[str, str]:
        """``{"media_id", "source", "content_type"}`` of a reference string; ValueError when it is not one."""
        if not isinstance(reference_string, str) or not reference_string:
            raise ValueError("Reference string is empty or not a string")
        if not reference_string.startswith(f"{REFERENCE_PREFIX}type="):
            raise ValueError(f"Reference string does not start with '{REFERENCE_PREFIX}type='")
        if not reference_string.endswith("@@@"):
            raise ValueError("Reference string does not end with '@@@'")
        fields = dict(
            pair.split("=", 1) for pair in reference_string[len(REFERENCE_PREFIX) : -3].split("|") if "=" in pair
        )
        if not all(key in fields for key in ("type", "id", "source")):
            raise ValueError("Missing required fields in reference string")
        return {"media_id": fields["id"], "source": fields["source"], "content_type": fields["type"]}

    @staticmethod
    def resolve_media_references(
        *,
        obj: T,
        langfuse_client: Any,
        resolve_with: Literal["base64_data_uri"] = "base64_data_uri",
        max_depth: int = 10,
        content_fetch_timeout_seconds: int = 10,
    ) -> T:
        """A copy of ``obj`` with every reference string replaced by its media as a data URI: from Langfuse (its
        media API and download URL) when the client has keys, else from the local store. A reference that cannot
        be fetched stays as it is (with a warning); objects with ``__dict__`` come back as dicts, as in the SDK."""
        if resolve_with != "base64_data_uri":
            raise ValueError(f"resolve_with={resolve_with!r}: only 'base64_data_uri' is supported")
        fetch = langfuse_client._media_fetcher(content_fetch_timeout_seconds)
        cache: dict[str, str | None] = {}

        def data_uri(reference: str) -> str:
            if reference not in cache:
                try:
                    found = fetch(LangfuseMedia.parse_reference_string(reference)["media_id"])
                except Exception as exc:  # a malformed reference, an unreachable Langfuse
                    log.warning("lftrace: cannot fetch the media of %s: %s", reference, exc)
                    found = None
                cache[reference] = None if found is None else as_data_uri(*found)
            return cache[reference] or reference

        def walk(value: Any, depth: int) -> Any:
            if depth > max_depth:
                return value
            if isinstance(value, str):
                return REFERENCE.sub(lambda m: data_uri(m.group(0)), value) if REFERENCE_PREFIX in value else value
            if isinstance(value, list):
                return [walk(item, depth + 1) for item in value]
            if isinstance(value, dict):
                return {key: walk(item, depth + 1) for key, item in value.items()}
            if hasattr(value, "__dict__"):
                return {key: walk(item, depth + 1) for key, item in vars(value).items()}
            return value

        return walk(obj, 0)


@dataclass(frozen=True)
class LangfuseMediaReference:
    """Media a dataset item holds, resolved (the SDK's class): what ``get_dataset`` puts where the item's value
    had a reference string. ``fetch_bytes``/``fetch_base64``/``fetch_data_uri`` read it from its URL (Langfuse's
    presigned one, or ``lftrace serve``'s), or from the local store for an item read from it."""

    media_id: str
    content_type: str
    url: str
    url_expiry: str | None = None
    content_length: int | None = None
    reference_string: str | None = None
    _local: Callable[[str], tuple[bytes, str] | None] | None = field(default=None, repr=False, compare=False)

    def is_url_expired(self) -> bool:
        if self.url_expiry is None:
            return False
        try:
            expiry = datetime.fromisoformat(self.url_expiry.replace("Z", "+00:00"))
        except ValueError:
            return False
        return (expiry if expiry.tzinfo else expiry.replace(tzinfo=UTC)) <= datetime.now(UTC)

    def fetch_bytes(self, *, timeout: float = 30.0, client: Any = None) -> bytes:
        if self._local is not None:
            found = self._local(self.media_id)
            if found is None:
                raise LookupError(f"media {self.media_id} is not in the store")
            return found[0]
        import httpx

        from .exporters.otlp import release

        response = (client or httpx).get(self.url, timeout=timeout)
        try:
            response.raise_for_status()
            return bytes(response.content)
        finally:  # the download is not kept until a garbage collection (httpx's response cycle)
            release(response)

    def fetch_base64(self, *, timeout: float = 30.0, client: Any = None) -> str:
        return base64.b64encode(self.fetch_bytes(timeout=timeout, client=client)).decode()

    def fetch_data_uri(self, *, timeout: float = 30.0, client: Any = None) -> str:
        return as_data_uri(self.fetch_bytes(timeout=timeout, client=client), self.content_type)


def reference_paths(value: Any, path: str = "$", depth: int = 0) -> Iterator[tuple[str, str]]:
    """(JSONPath, reference string) of every value that is a reference string, in Langfuse's normalized
    bracket notation (``$['photo']``, ``$['pages'][0]``), as its dataset items' ``mediaReferences`` give them."""
    if isinstance(value, str):
        if value.startswith(REFERENCE_PREFIX) and REFERENCE.fullmatch(value):
            yield path, value
    elif depth < MAX_DEPTH and isinstance(value, dict):
        for key, item in value.items():
            yield from reference_paths(item, f"{path}['{key}']", depth + 1)
    elif depth < MAX_DEPTH and isinstance(value, list):
        for index, item in enumerate(value):
            yield from reference_paths(item, f"{path}[{index}]", depth + 1)


def with_references(value: Any, references: Mapping[str, LangfuseMediaReference]) -> Any:
    """``value`` with each reference string that ``references`` resolves replaced by its LangfuseMediaReference
    (what SDK 5's ``get_dataset`` hands out)."""
    if isinstance(value, str):
        return references.get(value, value)
    if isinstance(value, dict):
        return {key: with_references(item, references) for key, item in value.items()}
    if isinstance(value, list):
        return [with_references(item, references) for item in value]
    return value


def as_data_uri(content: bytes, content_type: str) -> str:
    return f"data:{content_type};base64,{base64.b64encode(content).decode()}"


@dataclass(frozen=True)
class MediaLink:
    """Media found in a trace: its bytes and where it first appeared (``observation_id`` None: the trace's own
    input, output or metadata)."""

    media_id: str
    content_type: str
    content: bytes
    field: str  # input, output or metadata
    observation_id: str | None = None

    @property
    def sha256(self) -> str:
        return sha256_base64(self.content)


class Extractor:
    """Replaces media in JSON-able values with reference strings, collecting each media once per trace.

    ``begin(field, observation_id)`` says where the values converted next belong; ``extract`` is applied to each
    value (or to each new item of a shared list: the writer's converter calls it, so a long conversation's
    earlier messages are not walked again). ``found`` holds the trace's media, first place first.
    """

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled  # False (LANGFUSE_MEDIA_UPLOAD_ENABLED=false): media stays inline, as data URIs
        self.found: dict[str, MediaLink] = {}
        self._field = "input"
        self._observation: str | None = None

    def begin(self, field: str, observation_id: str | None) -> None:
        self._field, self._observation = field, observation_id

    def end_trace(self) -> list[MediaLink]:
        links, self.found = list(self.found.values()), {}
        return links

    def add(self, content: bytes, content_type: str, source: str) -> str | None:
        """The reference string of this content (collected); None when Langfuse would not take its type."""
        content_type = content_type.lower()
        if content_type not in MEDIA_TYPES:
            return None
        ident = media_id(content)
        if ident not in self.found:
            self.found[ident] = MediaLink(ident, content_type, content, self._field, self._observation)
        return f"{REFERENCE_PREFIX}type={content_type}|id={ident}|source={source}@@@"

    def media(self, media: LangfuseMedia) -> str:
        """A ``LangfuseMedia`` object's reference string (its bytes collected); its data URI when disabled."""
        reference = media._reference_string
        if reference is None or media._content_bytes is None or media._content_type is None:
            return f"<LangfuseMedia without content: {media._content_type}>"
        if not self.enabled:
            return as_data_uri(media._content_bytes, media._content_type)
        self.add(media._content_bytes, media._content_type, media._source or "bytes")
        return reference

    def extract(self, value: Any, depth: int = 0) -> Any:
        """``value`` with its media replaced (containers copied only where something changed)."""
        if not self.enabled:
            return value
        kind = type(value)
        if kind is str:
            if value.startswith("data:") and len(value) > 20:
                parsed = parse_data_uri(value)
                if parsed is not None:
                    return self.add(parsed[0], parsed[1], "base64_data_uri") or value
            return value
        if depth >= MAX_DEPTH:
            return value
        if kind is list or kind is dict:
            block = self._block(value) if kind is dict else None
            if block is not None:
                return block
            changed: Any = None
            for key, item in enumerate(value) if kind is list else value.items():
                new = self.extract(item, depth + 1)
                if new is not item:
                    if changed is None:
                        changed = kind(value)
                    changed[key] = new
            return value if changed is None else changed
        if isinstance(value, LangfuseMedia):
            return self.media(value)
        return value

    def _block(self, block: dict[str, Any]) -> dict[str, Any] | None:
        """A provider's base64 block with its data as a reference string; None when it is not one."""
        for key in ("inline_data", "inlineData"):  # Gemini
            inline = block.get(key)
            if isinstance(inline, dict) and isinstance(inline.get("data"), str):
                kind = inline.get("mime_type") or inline.get("mimeType")
                reference = self._base64(inline["data"], kind, "base64_data_uri")
                if reference is not None:
                    return {**block, key: {**inline, "data": reference}}
        kind = block.get("media_type") or block.get("mime_type")
        if not isinstance(kind, str):
            return None
        if isinstance(block.get("data"), str) and (
            block.get("type") in ("base64", "media") or block.get("source_type") == "base64"
        ):  # Anthropic, Vertex, LangChain's standard blocks
            reference = self._base64(block["data"], kind, "base64_data_uri")
            return None if reference is None else {**block, "data": reference}
        if isinstance(block.get("base64"), str):  # LangChain 1.x content blocks
            reference = self._base64(block["base64"], kind, "base64_data_uri")
            return None if reference is None else {**block, "base64": reference}
        return None

    def _base64(self, data: str, content_type: Any, source: str) -> str | None:
        if not isinstance(content_type, str) or data.startswith(REFERENCE_PREFIX):
            return None
        content = _decoded(data)
        return self.add(content, content_type, source) if content else None
