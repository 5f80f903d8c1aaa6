"""The OTLP protobuf wire format, written directly: the export's hot loop.

Filling the generated ``opentelemetry.proto`` messages costs ~25 us per span (a Python call per attribute
and per value); the messages an export sends are few and fixed (ExportTraceServiceRequest -> ResourceSpans ->
ScopeSpans -> Span -> KeyValue -> AnyValue), so their bytes are written here instead, field by field in
field-number order, which is exactly what the generated classes serialise (``tests/test_otlp_wire.py``
compares both byte for byte and decodes every request with the generated classes).

Field numbers: opentelemetry/proto/trace/v1/trace.proto, common/v1/common.proto, resource/v1/resource.proto,
collector/trace/v1/trace_service.proto. Stdlib only.

Attribute values are str, bool, int, float or lists of those; a ``bytes`` value is a string given as its UTF-8
bytes (the JSON text of an input or output, as orjson wrote it: a long run's spans carry megabytes each, and
decoding it to be encoded again copied every byte twice more).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from typing import Any

_SMALL = [bytes((n,)) for n in range(128)]
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_DOUBLE = struct.Struct("<d").pack
_FIXED64 = struct.Struct("<Q").pack

# tag bytes: (field number << 3) | wire type (0 varint, 1 fixed64, 2 length-delimited)
_ANY_STRING, _ANY_BOOL, _ANY_INT, _ANY_DOUBLE, _ANY_ARRAY = b"\x0a", b"\x10", b"\x18", b"\x21", b"\x2a"
_KV_KEY, _KV_VALUE = b"\x0a", b"\x12"
_ARRAY_VALUES = b"\x0a"
_SPAN_TRACE_ID, _SPAN_ID, _SPAN_PARENT, _SPAN_NAME = b"\x0a\x10", b"\x12\x08", b"\x22\x08", b"\x2a"
_SPAN_KIND, _SPAN_START, _SPAN_END, _SPAN_ATTRIBUTE, _SPAN_STATUS = b"\x30", b"\x39", b"\x41", b"\x4a", b"\x7a"
_STATUS_MESSAGE, _STATUS_CODE = b"\x12", b"\x18"
_FIRST = b"\x0a"  # field 1, length-delimited: Request.resource_spans, ResourceSpans.resource, ScopeSpans.scope...
_SECOND = b"\x12"  # field 2, length-delimited: ResourceSpans.scope_spans, ScopeSpans.spans, Scope.version

SPAN_KIND_INTERNAL = 1
SPAN_KIND_CLIENT = 3
STATUS_CODE_ERROR = 2


def varint(n: int) -> bytes:
    if 0 <= n < 128:
        return _SMALL[n]
    if n < 0:
        n += 1 << 64  # int64: two's complement, ten bytes
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(tag: bytes, data: bytes) -> bytes:
    """A length-delimited field."""
    return tag + varint(len(data)) + data


def any_value(value: Any) -> bytes:
    """AnyValue of an attribute value (str, bool, int, float, list/tuple of those; bytes: a string's UTF-8; anything
    else as text)."""
    kind = type(value)
    if kind is str:
        return field(_ANY_STRING, value.encode("utf-8", "backslashreplace"))
    if kind is bytes:
        return field(_ANY_STRING, value)
    if kind is bool:
        return _ANY_BOOL + (b"\x01" if value else b"\x00")
    if kind is int:
        if _INT64_MIN <= value <= _INT64_MAX:
            return _ANY_INT + varint(value)
        return field(_ANY_STRING, str(value).encode())
    if kind is float:
        return _ANY_DOUBLE + _DOUBLE(value)
    if isinstance(value, list | tuple):
        return field(_ANY_ARRAY, b"".join(field(_ARRAY_VALUES, any_value(item)) for item in value))
    if isinstance(value, str):  # subclasses
        return any_value(str(value))
    if isinstance(value, bool):
        return any_value(bool(value))
    if isinstance(value, int):
        return any_value(int(value))
    if isinstance(value, float):
        return any_value(float(value))
    return any_value(str(value))


_KEYS: dict[str, bytes] = {}  # attribute name -> its encoded key field (names repeat in every span)


def _key(name: str) -> bytes:
    encoded = _KEYS.get(name)
    if encoded is None:
        encoded = field(_KV_KEY, name.encode("utf-8", "backslashreplace"))
        if len(_KEYS) < 4096:
            _KEYS[name] = encoded
    return encoded


_MEMO_CHARS = 256  # attribute values up to this long are memoised with their name
_MEMO_SIZE = 8192
_PAIRS: dict[tuple[bytes, str, str | bytes], bytes] = {}


def _string_pair(tag: bytes, key: bytes, value: str | bytes) -> list[bytes]:
    """One KeyValue field (with its tag) of a string attribute (bytes: its UTF-8), in parts: a long value is copied
    once, by the caller's join."""
    data = value if isinstance(value, bytes) else value.encode("utf-8", "backslashreplace")
    head = varint(len(data))
    any_size = 1 + len(head) + len(data)
    any_head = varint(any_size)
    return [tag, varint(len(key) + 1 + len(any_head) + any_size), key, _KV_VALUE, any_head, _ANY_STRING, head, data]


def key_values(tag: bytes, attributes: Mapping[str, Any]) -> bytes:
    """Repeated KeyValue fields (``None`` values left out)."""
    parts: list[bytes] = []
    key_value_parts(tag, attributes, parts)
    return b"".join(parts)


def key_value_parts(tag: bytes, attributes: Mapping[str, Any], parts: list[bytes]) -> None:
    """``key_values`` in pieces, appended to ``parts``: the caller joins them once with the rest of its message
    (a long value, such as a span's input, is copied once)."""
    append = parts.append
    for name, value in attributes.items():
        if value is None:
            continue
        kind = type(value)
        if (kind is str or kind is bytes) and len(value) <= _MEMO_CHARS:
            # most attributes repeat exactly from span to span (type, level, environment, metadata, model):
            # written once, then looked up
            memo_key = (tag, name, value)
            encoded = _PAIRS.get(memo_key)
            if encoded is None:
                encoded = b"".join(_string_pair(tag, _key(name), value))
                if len(_PAIRS) >= _MEMO_SIZE:
                    _PAIRS.clear()
                _PAIRS[memo_key] = encoded
            append(encoded)
            continue
        key = _key(name)
        if kind is str or kind is bytes:
            parts += _string_pair(tag, key, value)
        else:
            encoded = field(_KV_VALUE, any_value(value))
            append(tag)
            append(varint(len(key) + len(encoded)))
            append(key)
            append(encoded)


def span_parts(
    *,
    trace_id: bytes,
    span_id: bytes,
    parent_span_id: bytes | None,
    name: str,
    kind: int,
    start_ns: int,
    end_ns: int,
    attributes: Mapping[str, Any],
    error_message: str | None = None,
) -> list[bytes]:
    """One Span message (its body, without the field header) in pieces; ``error_message`` set: status ERROR."""
    parts = [_SPAN_TRACE_ID, trace_id, _SPAN_ID, span_id]
    if parent_span_id:
        parts += (_SPAN_PARENT, parent_span_id)
    if name:
        parts.append(field(_SPAN_NAME, name.encode("utf-8", "backslashreplace")))
    if kind:
        parts += (_SPAN_KIND, varint(kind))
    if start_ns:
        parts += (_SPAN_START, _FIXED64(start_ns))
    if end_ns:
        parts += (_SPAN_END, _FIXED64(end_ns))
    key_value_parts(_SPAN_ATTRIBUTE, attributes, parts)
    if error_message is None:
        parts.append(_SPAN_STATUS + b"\x00")  # a status with code UNSET: present, empty
    else:
        status = field(_STATUS_MESSAGE, error_message.encode("utf-8", "backslashreplace")) if error_message else b""
        parts.append(field(_SPAN_STATUS, status + _STATUS_CODE + varint(STATUS_CODE_ERROR)))
    return parts


def request_head(resource_attributes: Mapping[str, Any], scope_name: str, scope_version: str) -> tuple[bytes, bytes]:
    """(Resource field, InstrumentationScope field) of a request: the same for every request of an exporter."""
    resource = field(_FIRST, key_values(_FIRST, resource_attributes))
    scope = b""
    if scope_name:
        scope += field(_FIRST, scope_name.encode())
    if scope_version:
        scope += field(_SECOND, scope_version.encode())
    return resource, field(_FIRST, scope)


def span_field(span_body: bytes) -> bytes:
    """A span as it sits in ScopeSpans.spans (its bytes count against a request's size)."""
    return field(_SECOND, span_body)


def span_field_of(parts: list[bytes], size: int) -> bytes:
    """``span_field`` of a body given in pieces of ``size`` bytes in all: one copy."""
    return b"".join([_SECOND, varint(size), *parts])


def request(head: tuple[bytes, bytes], span_fields: Iterable[bytes]) -> bytes:
    """ExportTraceServiceRequest with one ResourceSpans holding one ScopeSpans of these spans, in one join (a
    request of a long run's spans is megabytes: nested fields are sized first, not copied level by level)."""
    resource, scope = head
    spans = span_fields if isinstance(span_fields, list) else list(span_fields)
    scope_spans_size = len(scope) + sum(map(len, spans))
    scope_spans_head = varint(scope_spans_size)
    resource_spans_size = len(resource) + len(_SECOND) + len(scope_spans_head) + scope_spans_size
    return b"".join([_FIRST, varint(resource_spans_size), resource, _SECOND, scope_spans_head, scope, *spans])
