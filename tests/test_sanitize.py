"""sanitize.clean: what reaches a terminal from data has its control sequences shown escaped."""

from __future__ import annotations

import time

import pytest

from lftrace.sanitize import clean, clean_line


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),  # CSI: clear screen, home
        ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),  # OSC window title ended by BEL
        ("\x1b]8;;http://evil/\x1b\\click\x1b]8;;\x1b\\", "\\x1b]8;;http://evil/\\x1b\\click\\x1b]8;;\\x1b\\"),  # OSC 8
        ("ding\x07", "ding\\x07"),
        ("\x9b31m", "\\x9b31m"),  # 8-bit CSI
        ("\x9d0;t\x9c", "\\x9d0;t\\x9c"),  # 8-bit OSC and ST
        ("a\rb", "a\\rb"),  # carriage return overwrites what was printed
        ("a\x08b\x7f\x00", "a\\x08b\\x7f\\x00"),
        ("user\u202etxt.exe", "user\\u202etxt.exe"),  # right-to-left override
        ("\u2066x\u2069\u200f\u061c", "\\u2066x\\u2069\\u200f\\u061c"),  # isolates and marks
        ("a\u2028b", "a\\u2028b"),  # line separator
        ("caf\udce9", "caf\\udce9"),  # lone surrogate (surrogateescape): would not even encode
    ],
)
def test_escape_sequences_and_controls_are_shown_escaped(raw: str, shown: str) -> None:
    out = clean(raw)
    assert out == shown
    assert not any(ord(c) < 0x20 and c not in "\n\t" for c in out)
    out.encode("utf-8")  # printable on a UTF-8 stream


def test_text_without_anything_to_escape_is_returned_unchanged() -> None:
    text = "héllo wörld → 日本語 🙂 \\x1b stays as typed"
    assert clean(text) is text


def test_newlines_and_tabs_kept_unless_the_caller_wants_one_line() -> None:
    assert clean("a\n\tb") == "a\n\tb"
    assert clean("a\n\tb", newlines=False) == "a\\n\tb"
    assert clean("a\n\tb", tabs=False) == "a\n\\tb"
    assert clean_line("a\n\tb\x1b") == "a\\n\\tb\\x1b"


def test_fast_on_long_values() -> None:
    plain = "the quick brown fox jumps over the lazy dog\n" * 25_000  # ~1.1 MB
    dirty = plain + "\x1b[2J"
    start = time.perf_counter()
    for _ in range(10):
        clean(plain)
        clean(dirty)
    per_call = (time.perf_counter() - start) / 20
    assert per_call < 0.1, per_call  # measured ~3-5 ms per MB; generous for a loaded CI machine
    assert clean(dirty).endswith("\\x1b[2J")
