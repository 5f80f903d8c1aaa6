"""Make text from data safe to print on a terminal: control characters shown escaped.

Everything lftrace prints that came from data (graph outputs, exception messages, inputs, ids, dataset case
names, backend error bodies) goes through :func:`clean` (or :func:`clean_line` for one-line cells) so a value
cannot clear the screen, set the window title, plant an OSC 8 link, ring the bell, or reorder the line with
bidi overrides. Escaping the introducer of a sequence (ESC, the 8-bit CSI/OSC, BEL) is enough to neuter all of
it: the rest of ``\\x1b[2J`` or ``\\x1b]8;;http://x\\x07`` is plain printable text once its ESC is shown as the
four characters ``\\x1b``.

What is escaped, and how it is shown:
- C0 controls (U+0000-U+001F) but newline and tab (kept unless the caller asks), DEL, C1 controls
  (U+0080-U+009F: ``\\x9b`` is an 8-bit CSI): ``\\xNN``.
- Bidi embedding/override/isolate controls and marks (U+202A-U+202E, U+2066-U+2069, U+200E, U+200F, U+061C),
  line/paragraph separators (U+2028, U+2029): ``\\uNNNN``.
- Lone surrogates (U+D800-U+DFFF, what ``surrogateescape`` makes of undecodable bytes): ``\\uNNNN``; printing
  them raw would raise UnicodeEncodeError on a UTF-8 stream.

JSON output does not go through here: it is exact (its encoder escapes control characters itself).

Cost: a one-line value with nothing to escape costs one ``str.isprintable()`` (~0.3 us for 120 characters); other values one
precompiled-regex scan (~3 ms per MB); only a value that needs it pays for ``str.translate`` (~4 ms per MB).
"""

from __future__ import annotations

import re

__all__ = ["clean", "clean_line", "encodable"]


def _escaped(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_C0 = [c for c in range(0x20) if c not in (0x09, 0x0A)]
_OTHER = [0x7F, *range(0x80, 0xA0), 0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_OTHER += [0x2028, 0x2029, *range(0xD800, 0xE000)]

# One table for all: tab and newline entries are only used by the tables that escape them. Each (newlines, tabs)
# table and its finder are made the first time a text needs them: most texts are printable, and making all four
# (2,000+ entries each) cost every `lftrace` command ~4 ms at start-up.
_BASE: dict[int, str] = {}
_TABLES: dict[tuple[bool, bool], tuple[re.Pattern[str], dict[int, str]]] = {}


def _table(key: tuple[bool, bool]) -> tuple[re.Pattern[str], dict[int, str]]:
    found = _TABLES.get(key)
    if found is not None:
        return found
    if not _BASE:  # made whole, then added in one call: another thread sees all of it or none
        base = {c: _escaped(c) for c in (*_C0, *_OTHER)}
        base[0x0D] = "\\r"
        _BASE.update(base)
    newlines, tabs = key
    table = dict(_BASE)
    if not newlines:
        table[0x0A] = "\\n"
    if not tabs:
        table[0x09] = "\\t"
    ranges = "".join(re.escape(chr(c)) for c in sorted(table) if not 0xD800 <= c < 0xE000)
    found = _TABLES[key] = (re.compile(f"[{ranges}\ud800-\udfff]"), table)
    return found


def clean(text: str, *, newlines: bool = True, tabs: bool = True) -> str:
    """``text`` with control characters, escape sequences and bidi controls shown escaped.

    ``newlines``/``tabs``: keep ``\\n``/``\\t`` as they are (the default, for multi-line values); pass False
    where the text must stay on one line (table cells, one-line messages), and they are shown as ``\\n``/``\\t``.
    A carriage return is always escaped (it would let a value overwrite what was printed before it).
    """
    if text.isprintable():  # the common case, a C loop: no control, format or separator character at all
        return text
    finder, table = _table((newlines, tabs))
    if finder.search(text) is None:
        return text
    return text.translate(table)


def clean_line(text: str) -> str:
    """``text`` for one line (a table cell, an id, a one-line message): also newlines and tabs escaped."""
    return clean(text, newlines=False, tabs=False)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape_surrogate(match: re.Match[str]) -> str:
    return _escaped(ord(match.group()))


def encodable(text: str) -> str:
    """``text`` with lone surrogates (``"caf\\udce9"`` from ``surrogateescape``) written as ``\\udce9``: storable as
    UTF-8. Nothing else changes; the store keeps data exact otherwise (control characters are escaped only when
    printed)."""
    return _SURROGATE.sub(_escape_surrogate, text)
