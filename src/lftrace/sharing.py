"""Structural sharing of growing lists, so a long agent run costs linear time, memory and store size.

In a LangGraph agent every node's input holds the whole conversation so far: step k sees k messages, so
copying, converting or storing every input in full costs the square of the run's length. Three places share
what is unchanged instead:

* the handler (user's thread, ``Captures``) keeps a list that extends one it captured just before as that
  capture and the new items (``Frozen(new items, size, base)``), any other list by reference and length;
* the writer (``Converter``) converts only a capture's new items, after what it made of its base (and a list
  that extends a recently converted one likewise); in a part of a long run the result is an ``Extended`` (the
  earlier result and the new items), elsewhere the earlier one is copied (C level);
* the store (``Packer``) writes a list that extends a recently stored one as a content-addressed *list node*:
  ``blobs(hash, prev, data)`` = the hash of the list it extends and the new items only. Rows hold
  ``{"\\u0000lf": hash}`` in place of the list; ``materialize`` rebuilds full lists on read.
  A dict of ``MIN_SHARED_MAP`` keys or more among the values of an input (a state field that grows by merging
  a few keys in at every step) is stored the same way as the list of its ``[key, value]`` pairs, in order:
  ``{"\\u0000lf-map": hash}``; ``unpack`` makes it a dict again. A text of ``MIN_SHARED_TEXT`` characters or
  more that starts with one stored just before (a draft appended to) is a node of the piece it adds:
  ``{"\\u0000lf-text": hash}``, joined again on read.

Prefixes are found among the last few lists seen: on CPython by comparing the two lists' item pointers
(``_same_items``), else (or when the items are equal but not the same objects) by ``==`` on a slice (C speed,
identity first; LangGraph's messages are immutable in practice). Stdlib + orjson only.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from itertools import islice
from typing import Any

import orjson

MIN_SHARED = 8  # shorter lists are cheaper inline
# lists remembered as possible prefixes (the handler's captures, the writer's converted lists, the store's nodes):
# several lists that grow side by side, a few steps apart (ten tasks worked in turn, each with its own log), each
# find the version before theirs; with 4 and 8 remembered, more than four such lists were copied and stored whole
# again whenever their turn came back. Each find looks at every entry's last item by identity only, and compares
# in full only those that match
RECENT = 32
FULL_COMPARES = 2  # remembered lists whose last item matches compared in full per find, the most recent first
MAPS_CAPTURED = 4  # long dicts the handler remembers (each compared key by key: kept few)
REF = "\u0000lf"  # the key of a reference to a list node (a NUL never starts a real key)
MAP_REF = "\u0000lf-map"  # the key of a reference to a dict stored as a list node of its [key, value] pairs
ESCAPED = "\u0000lf-escaped"  # wraps a user dict that happens to hold REF or MAP_REF
MIN_SHARED_MAP = 32  # a dict (a value of the state: notes merged in at every step) shared from this many keys
MAPS_KEPT = 4  # long dicts the writer's converter remembers as possible prefixes
TEXT_REF = "\u0000lf-text"  # the key of a reference to a text stored as a list node of its pieces
MIN_SHARED_TEXT = 2048  # a text (a value of the state: a draft appended to at every step) shared from this long
# levels of short dicts and short lists under a value's top-level dict searched for growing lists
# (``state["team"]["researcher"]["notes"]``, ``state["team"]["agents"][0]["notes"]``); deeper ones are copied whole
NEST_DEPTH = 4
# a long list's last items compared with the copies made of them (its dicts changed in place since an earlier capture:
# ``steps[-1]["done"] = True``); the items before by identity only (a full comparison of dict items costs O(list)
# at every step: 4,000 steps of a list of dicts 1.56 s against 0.86 s)
CHECKED_TAIL = MIN_SHARED
# a list of MIN_SHARED items or more, but fewer than this, whose dicts hold lists that grow (a plan's tasks, each with
# its own log: ``state["tasks"][i]["log"]``) is walked as a short list is (its items' lists shared where they sit),
# not shared as a list of whole items: a step that changes one task stored it whole, log included (2,000 steps of
# ten tasks: 80 MB, 5.8x the plain loop)
WALKED_LIST = 64


class Frozen:
    """A list captured on the user's thread, without copying again what an earlier capture holds.

    Either a copy of the list as it was at capture time (``base`` None), or, for a list that extends one
    captured just before (``Captures``), that capture (``base``) and a copy of only the new items: the handler
    then keeps no reference to the whole conversation, only to what each step added. Copies, because a node may
    change its input in place (sort it, pop from it, clear it) after the callback has seen it; dicts and lists
    among the items are copied too (``snapshot``). Other objects (messages, models) are kept as they are.

    The writer's converter sets ``made`` (what it made of the value) and lets go of ``items`` and ``base``
    (``cut``): a later capture that extends this one only needs ``made``.
    """

    __slots__ = ("base", "items", "made", "size")

    def __init__(self, items: list[Any], size: int | None = None, base: Frozen | None = None) -> None:
        self.items: list[Any] | None = items
        self.size = len(items) if size is None else size
        self.base = base
        self.made: Any = None

    def value(self) -> list[Any]:
        """The whole list (a new one): its items, after those of its bases."""
        chain: list[list[Any]] = []
        node = self
        while node.base is not None:
            chain.append(node.items or [])
            node = node.base
        # a capture already converted and cut: what was made of it (JSON-able; converting it again is a no-op)
        out = node.items[: node.size] if node.items is not None else list(flat(node.made) or ())
        for items in reversed(chain):
            out.extend(items)
        return out

    def held(self) -> int:
        """Items of the user's list this capture holds itself (its new items; 0 once cut)."""
        items = self.items  # read once: the writer may cut it meanwhile
        return len(items) if items is not None else 0

    def cut(self, made: Any) -> None:
        self.made = made
        self.items = self.base = None

    def __repr__(self) -> str:
        return f"Frozen({self.size} items)"


class Captures:
    """The user's thread: the last few long lists captured, so that a list extending one of them (the next
    state of a growing conversation, the model's copy of its node's messages) is kept as that capture plus
    its new items (``Frozen(new items, size, base)``), not as a reference to the whole list.

    Holding every step's conversation until the writer converts it kept hundreds of conversation-sized lists
    alive per part, each walked by the garbage collector's young passes, and the writer then sliced each one
    (a reference count written on every message, from another core). Here the check is made once, where the
    list is at hand: its last remembered item by identity, then the prefix by ``==`` on a slice (identity
    first, in C). Lists shorter than ``MIN_SHARED`` are captured as they are.
    """

    def __init__(self, size: int = RECENT, fields_of: Callable[[Any], dict[str, Any] | None] | None = None) -> None:
        # long lists captured: [this thread's copy of the items, the list's length, the capture, the copies made of
        # its last ``CHECKED_TAIL`` items]. The copy may be longer than the list: a capture that extends the tip of
        # its lineage extends the tip's copy in place (the entries sharing it keep their lengths), so a lineage holds
        # one conversation-sized copy, not one per entry, and a step adds its new items to it instead of copying the
        # conversation (32 copies at the tip of a long run: ~2.5 MB of pointers at 10,000 messages, three new ones
        # a step written into memory last used 32 captures before). A branch off an older entry gets its own copy.
        self._recent: deque[list[Any]] = deque(maxlen=size)
        self._growing = threading.Lock()
        # an object's field values to capture as a dict's (``serialize.state_fields``: a state schema that is a
        # pydantic model or a dataclass), or None to keep the object as it is
        self._fields_of = fields_of
        # long dicts captured (their keys, the copies of their values, the copy made): ``capture_map``
        self._maps: deque[tuple[list[Any], list[Any], dict[Any, Any]]] = deque(maxlen=MAPS_CAPTURED)

    def capture(self, seq: list[Any]) -> Frozen:
        n = len(seq)
        if n < MIN_SHARED:
            return Frozen(_copied_items(seq[:n]), n)
        # a snapshot (tuple() of a deque is atomic): other threads of the program capture too. The most recent first
        # (a growing list's latest capture is its longest); each entry's last item by identity (one test per entry),
        # and only those that match compared in full, at most ``FULL_COMPARES`` (each comparison is O(length))
        compared = 0
        for entry in tuple(self._recent):
            known, m, frozen, tail = entry
            try:
                if m > n or seq[m - 1] is not known[m - 1]:
                    continue
            except IndexError:  # the user's list shortened meanwhile (another thread): no sharing this time
                break
            if compared == FULL_COMPARES:
                break
            compared += 1
            try:
                # ``known`` is this thread's copy of the items as captured (never the user's list, which may have
                # been sorted or cleared in place since): ``==`` is identity first, in C; a slice only where the
                # list is longer (the one that grows)
                whole = len(known) == m  # else a copy an extension of this entry made longer: its first m items
                if (seq if n == m else seq[:m]) != (known if whole else known[:m]):
                    continue
                # a dict or list among the last few items changed in place since it was copied
                # (``steps[-1]["done"] = True``): not this capture (each one's last items are copies of it)
                if seq[m - len(tail) : m] != tail:
                    continue
            except Exception:  # an item whose == raises: not this one
                continue
            if m == n:
                return frozen  # the same list again (a model's input is its node's)
            new = seq[m:n]
            copies = _copied_items(new)
            captured = Frozen(copies, n, frozen)
            with self._growing:  # another thread may extend the same copy between the test and the extend
                if len(known) == m and frozen.items is not known:  # (it only ever grows: still ``whole``)
                    # the tip of its lineage: its copy grows in place (no conversation-sized copy a step), and the
                    # entries that share it keep their lengths (not when the copy is the first capture's items too)
                    known.extend(new)
                    longer = known
                else:  # a branch off an older entry: its own copy, shared by the entries up to the branch point
                    longer = known[:m] + new
                    shared = entry[0]
                    for other in tuple(self._recent):
                        if other[0] is shared and other[1] <= m:
                            other[0] = longer
                self._recent.appendleft([longer, n, captured, [*tail, *copies][-CHECKED_TAIL:]])
            return captured
        own = seq[:n]
        copies = _copied_items(own)
        captured = Frozen(copies, n)
        self._recent.appendleft([own, n, captured, copies[-CHECKED_TAIL:]])
        return captured

    def capture_map(self, mapping: dict[Any, Any]) -> dict[Any, Any]:
        """A copy of a long dict (a state field merged into at every step), as ``snapshot`` makes it; when it starts
        with the keys of one captured just before, in order, holding what that copy holds (``==``: identity first,
        in C; a value changed in place since is not equal to its copy), a copy of that copy and copies of only the
        values it adds: O(keys) at C speed per step instead of a Python-level copy of every value."""
        n = len(mapping)
        for keys, copies, made in sorted(tuple(self._maps), key=_keys_length, reverse=True):
            m = len(keys)
            if m > n:
                continue
            try:
                if list(islice(mapping, m)) != keys or list(islice(mapping.values(), m)) != copies:
                    continue
            except Exception:  # a value whose == raises: not this one
                continue
            out = made.copy()
            for key, item in islice(mapping.items(), m, None):  # none when it is the same dict again
                out[key] = snapshot(item, 1)
            self._maps.appendleft((list(out), list(out.values()), out))
            return out
        out = {k: snapshot(v, 1) for k, v in mapping.items()}
        self._maps.appendleft((list(out), list(out.values()), out))
        return out

    def freeze(self, value: Any) -> Any:
        """What the handler keeps of an input/output, as it is now: lists (also as dict values) captured, other
        dicts and lists copied (``snapshot``), a model's fields (``fields_of``) as a dict's values; O(size of what
        is not a long list seen before)."""
        kind = type(value)
        if kind is dict:
            # the type checked here, not by a call per key (the handler's hot path: most values are text or objects)
            return {
                k: (
                    (
                        (self._inner(v) if _walked(v, 1) else self.capture(v))
                        if len(v) >= MIN_SHARED
                        else self._inner(v)
                        if _CONTAINERS.intersection(map(type, v))
                        else self.capture(v)
                    )
                    if type(v) is list
                    else (self.capture_map(v) if len(v) >= MIN_SHARED_MAP else self._inner(v))
                    if type(v) is dict
                    else v
                    if type(v) in _PLAIN or self._fields_of is None
                    else self._object(v)
                )
                for k, v in value.items()
            }
        if kind is list:
            return self.capture(value)
        if self._fields_of is not None and kind is not str:
            fields = self._fields_of(value)
            if fields is not None:
                return self.freeze(fields)
        return value

    def _object(self, value: Any) -> Any:
        """A dict's value that is an object: a model's or a dataclass's fields (``fields_of``: a state field
        holding one, ``state["memory"].history``) as a dict value is kept; anything else as it is."""
        assert self._fields_of is not None
        fields = self._fields_of(value)
        if fields is None:
            return value
        return self.capture_map(fields) if len(fields) >= MIN_SHARED_MAP else self._inner(fields)

    def _inner(self, container: Any, depth: int = 1) -> Any:
        """A short dict or a short list holding containers among a dict's values (``state["scratch"]``,
        ``state["agents"]``): ``snapshot``'s copy, its long lists captured (``state["scratch"]["history"]``: kept as
        the capture it extends and its new items), down to ``NEST_DEPTH`` levels of short dicts and lists
        (``state["team"]["agents"][0]["notes"]``)."""
        if type(container) is dict:
            return {key: self._nested_item(item, depth) for key, item in container.items()}
        return [self._nested_item(item, depth) for item in container]

    def _nested_item(self, item: Any, depth: int) -> Any:
        kind = type(item)
        if kind is list:
            if len(item) >= MIN_SHARED:
                return self._inner(item, depth + 1) if _walked(item, depth + 1) else self.capture(item)
            if depth < NEST_DEPTH and _CONTAINERS.intersection(map(type, item)):
                return self._inner(item, depth + 1)
        elif kind is dict and depth < NEST_DEPTH and len(item) < MIN_SHARED_MAP:
            return self._inner(item, depth + 1)
        return snapshot(item, 1)


def _walked(seq: list[Any], depth: int) -> bool:
    """A long list to walk as a short one (``WALKED_LIST``) at ``depth`` (``Captures._inner``'s, ``Converter._nested``'s,
    ``Packer._nested``'s): fewer than ``WALKED_LIST`` items, its dicts within ``NEST_DEPTH``, its first dict holding a
    list among its values (a plan's tasks, each with its log; a conversation's messages hold text: told at the first
    one), and one of its dicts holding a long list (or a capture or a converted one). The same test on the user's
    thread and the writer's, so the converter walks what the handler walked."""
    if depth >= NEST_DEPTH or len(seq) >= WALKED_LIST:
        return False
    first = next((item for item in seq if type(item) is dict), None)
    if first is None or _LISTISH.isdisjoint(map(type, first.values())):
        return False
    for item in seq:
        if type(item) is dict and len(item) < MIN_SHARED_MAP:
            for value in item.values():
                kind = type(value)
                if (kind is list and len(value) >= MIN_SHARED) or kind is Frozen or kind is Extended:
                    return True
    return False


SNAPSHOT_DEPTH = 32  # nested deeper than this (or a dict that holds itself): kept as it is
_CONTAINERS = frozenset((dict, list))
_PLAIN = frozenset((str, int, float, bool, type(None)))  # a dict's values that are never a model


def snapshot(value: Any, depth: int = 0) -> Any:
    """``value`` with its dicts and lists copied, recursively (other objects as they are): what the run passed,
    even if a node changes it in place after the callback (``state["doc"]["text"] = ...``). The writer converts
    it later, on its own thread."""
    kind = type(value)
    if kind is dict:
        if depth >= SNAPSHOT_DEPTH:
            return value
        if len(value) >= MIN_SHARED_MAP and not _CONTAINERS.intersection(map(type, value.values())):
            return value.copy()  # a long dict of text and numbers (a state field that grows): copied in C
        return {k: snapshot(v, depth + 1) for k, v in value.items()}
    if kind is list:
        if depth >= SNAPSHOT_DEPTH:
            return value
        if not _CONTAINERS.intersection(map(type, value)):
            return value.copy()  # no dict or list in it (texts, numbers, objects): copied in C
        return [snapshot(v, depth + 1) for v in value]
    return value


def _copied_items(items: list[Any]) -> list[Any]:
    """A captured list's own items: ``items`` (a copy already) itself, or, when it holds a dict or a list, a new
    list with those copied (``items`` keeps the user's objects: the next capture finds its prefix by identity; the
    copies of the last ``CHECKED_TAIL`` items are compared too)."""
    for i, item in enumerate(items):
        kind = type(item)
        if kind is dict or kind is list:
            return [*items[:i], *[snapshot(x, 1) for x in items[i:]]]
    return items


class Extended:
    """A converted list told as the converted list it extends (``base``: a list or an ``Extended``) and its new
    ``items``, instead of a copy of both.

    What the writer's converter makes of a growing conversation in a part of a long run (``Converter.extend``):
    at step k a copy costs k pointers written and k reference counts touched, and a list of k items more for
    the garbage collector to walk until the part is written. The store's packer writes it as a list node after
    ``base``'s without searching for the prefix (``Packer``). ``flat()`` is the whole list; ``len`` its length.
    """

    __slots__ = ("base", "items", "size")

    def __init__(self, base: list[Any] | Extended, items: list[Any]) -> None:
        self.base = base
        self.items = items
        self.size = len(base) + len(items)

    def __len__(self) -> int:
        return self.size

    def flat(self) -> list[Any]:
        chain: list[list[Any]] = []
        node: list[Any] | Extended = self
        while type(node) is Extended:
            chain.append(node.items)
            node = node.base
        out = list(node)  # type: ignore[arg-type]
        for items in reversed(chain):
            out.extend(items)
        return out

    def __repr__(self) -> str:
        return f"Extended({self.size} items)"


_LISTISH = frozenset((list, Frozen, Extended))  # a list, captured or converted (``_walked``)


def flat(value: Any) -> Any:
    """``value`` with an ``Extended`` (alone or as a value of a dict) made a plain list again."""
    if type(value) is Extended:
        return value.flat()
    if type(value) is dict and any(type(v) is Extended for v in value.values()):
        return {k: (v.flat() if type(v) is Extended else v) for k, v in value.items()}
    return value


def json_default(value: Any) -> Any:
    """``default`` for orjson where a prepared value is written: an ``Extended`` as its list, anything else as text."""
    if type(value) is Extended:
        return value.flat()
    return str(value)


def thaw(value: Any) -> Any:
    """``Captures.freeze`` undone: plain lists again (a shallow copy of each captured list)."""
    if type(value) is Frozen:
        return value.value()
    if type(value) is dict:
        return {
            k: (v.value() if type(v) is Frozen else _thawed_inner(v) if type(v) is dict or type(v) is list else v)
            for k, v in value.items()
        }
    return value


def _thawed_inner(value: Any, depth: int = 1) -> Any:
    """A dict or a list among a dict's values, its captured lists (``Captures._inner``, any level down) plain
    again. Only the containers on the way to a captured list are rebuilt: one with none below it is returned as it
    is (a tool's nested arguments, a message's content parts: no copy on the writer's path)."""
    out: Any = None  # a copy of the container, made at the first item that changes
    for key, item in value.items() if type(value) is dict else enumerate(value):
        thawed = _thawed_item(item, depth)
        if thawed is not item:
            if out is None:
                out = value.copy()
            out[key] = thawed
    return value if out is None else out


def _thawed_item(value: Any, depth: int) -> Any:
    kind = type(value)
    if kind is Frozen:
        return value.value()
    if (kind is dict or kind is list) and depth < NEST_DEPTH and value:
        return _thawed_inner(value, depth + 1)
    return value


def _items_in(value: Any) -> int:
    """How many items a list or a captured list holds (-1: neither)."""
    kind = type(value)
    if kind is list:
        return len(value)
    if kind is Frozen or kind is Extended:
        return value.size
    return -1


def _reserved(value: Any) -> bool:
    """A user's dict that holds one of the keys the store's references use (``REF``, ``MAP_REF``, ``TEXT_REF``,
    ``ESCAPED``): written wrapped as ``{ESCAPED: value}`` wherever the reader looks for references, so it reads back
    as it was, never as a reference."""
    return type(value) is dict and (REF in value or MAP_REF in value or TEXT_REF in value or ESCAPED in value)


def _kept_whole(value: Any) -> bool:
    """A list, a captured list or a dict of them that the store writes as it is: nothing long enough for
    ``Packer.pack`` to share, no reference key to escape. False for anything else."""
    kind = type(value)
    if kind is list or kind is Frozen:
        return _items_in(value) < MIN_SHARED
    if kind is not dict or _reserved(value):
        return False
    for item in value.values():  # by type, one test each (the writer's path for every input and output)
        item_kind = type(item)
        if item_kind is str:
            if len(item) >= MIN_SHARED_TEXT:
                return False
        elif item_kind is list or item_kind is dict:
            if (
                len(item) >= (MIN_SHARED if item_kind is list else MIN_SHARED_MAP)
                or _holds_long_list(item)
                or (item_kind is dict and _reserved(item))
            ):
                return False
        elif (item_kind is Frozen or item_kind is Extended) and item.size >= MIN_SHARED:
            return False
    return True


def _shared_map(value: Any) -> bool:
    """A dict long enough for ``Packer.pack`` to store as a list node of its pairs (a growing state field)."""
    return type(value) is dict and len(value) >= MIN_SHARED_MAP


def _holds_long_list(value: Any, depth: int = 1) -> bool:
    """A short dict or a short list (a value of the top-level dict: ``state["scratch"]``, ``state["agents"]``)
    holding a list long enough to share (``state["scratch"]["history"]``), or a dict with a reference key to escape
    (``_reserved``), itself or down to ``NEST_DEPTH`` levels of short dicts and lists: ``Packer._nested`` writes
    it."""
    kind = type(value)
    if kind is dict:
        if len(value) >= MIN_SHARED_MAP:
            return False
        items: Iterable[Any] = value.values()
    elif kind is list and len(value) < MIN_SHARED:
        items = value
    elif kind is list:
        return _walked(value, depth)  # a long list: walked only for its dicts' long lists (``WALKED_LIST``)
    else:
        return False
    for item in items:
        item_kind = type(item)
        if item_kind is Extended or item_kind is Frozen or (item_kind is list and len(item) >= MIN_SHARED):
            return True
        if item_kind is dict and _reserved(item):
            return True
        if (item_kind is list or item_kind is dict) and depth < NEST_DEPTH and _holds_long_list(item, depth + 1):
            return True
    return False


def held_in(value: Any, whole: bool = False, depth: int = 1) -> int:
    """Items of the captured lists in a short dict or list among a dict's values (``Captures._inner``), down to
    ``NEST_DEPTH`` levels: what each new item holds (``Frozen.held``), or the lists' whole lengths (``whole``)."""
    total = 0
    for item in value.values() if type(value) is dict else value:
        kind = type(item)
        if kind is Frozen:
            total += item.size if whole else item.held()
        elif (kind is dict or kind is list) and depth < NEST_DEPTH:
            total += held_in(item, whole, depth + 1)
    return total


def kept(data: bytes) -> orjson.Fragment:
    """JSON text kept for long (a message's text, remembered for the rest of its trace) as a fragment of its own size.

    ``orjson.dumps`` hands back its working buffer: 4 KB for any text up to ~1 KB, and for a string of n
    characters ~13n (room for escaping every character); kept, 100,000 short texts held 400 MB of memory instead
    of 20 MB. Texts kept only until their batch is written (``as_json``, ``inline_json``) are left as they are:
    there the copy cost more than the memory it gave back (bench/cachegrind_agent.py).
    """
    return orjson.Fragment(own_length(data))


def own_length(data: bytes) -> bytes:
    """``data`` (orjson's output) copied into a block of its own length, where it is kept (``kept``)."""
    return bytes(memoryview(data))


def as_json(value: Any) -> Any:
    """A prepared (JSON-able) value as its JSON text, when the store keeps it whole (``_kept_whole``). Else the
    value itself.

    The text is an ``orjson.Fragment``: orjson writes it into the stored row as it is, and the OTLP export uses
    it as the attribute's value, so the value is serialised once. Unlike the dicts and lists it replaces, it is
    not tracked by the garbage collector: a batch of prepared traces waiting for its transaction no longer ages
    into the collector's older generations (whose full passes cost ~8 us per span in bench/overhead.py).
    ``json_text`` reads a fragment back.
    """
    if not _kept_whole(value):
        return value  # to share, or text and numbers (not tracked anyway)
    try:
        return orjson.Fragment(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))
    except Exception:  # an int over 64 bits, a lone surrogate: kept as it is (the store's own dumps copes)
        return value


def inline_json(
    value: Any,
    json_bytes: Callable[[Any], bytes | None],
    refuse: Callable[[bytes], Any] | None = None,
    parsed: bool = False,
) -> Any:
    """What ``as_json`` makes of a captured value, straight from the captured objects in one orjson pass
    (``json_bytes``: ``serialize.json_bytes``). None when the value needs the converter first (a list to share,
    an object, a dict holding the reference key, or JSON text that ``refuse`` finds something in). ``parsed``:
    the value was read from JSON (the export helper's captured traces), so it holds no captured list to thaw."""
    if not _kept_whole(value):
        return None
    data = json_bytes(value if parsed else thaw(value))
    return None if data is None or (refuse is not None and refuse(data)) else orjson.Fragment(data)


def json_text(value: Any) -> Any:
    """``as_json`` undone: the value again (a fragment parsed; anything else as it is)."""
    if type(value) is orjson.Fragment:
        return orjson.loads(orjson.dumps(value))
    return value


def is_json_text(value: Any) -> bool:
    return type(value) is orjson.Fragment


def text_default(value: Any) -> Any:
    """``default`` for the stdlib ``json.dumps`` fallbacks: a fragment as its value, anything else as text."""
    if type(value) is orjson.Fragment:
        return json_text(value)
    return json_default(value)


INT64 = (-(2**63), 2**63 - 1)  # what SQLite and orjson take as an integer


def big_ints_as_text(value: Any) -> Any:
    """``value`` with every int beyond 64 bits as its decimal text, as the OTLP export sends it: JSON text read
    back by orjson would turn such a number into a float and lose its digits."""
    if isinstance(value, dict):
        return {k: big_ints_as_text(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [big_ints_as_text(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not INT64[0] <= value <= INT64[1]:
        return str(value)
    return value


def _pointer_compare() -> Callable[[list[Any], list[Any], int], bool] | None:
    """CPython with the GIL: ``same(a, b, m)``, whether lists ``a`` and ``b`` start with the same ``m`` objects,
    by one ``memcmp`` of their item pointers. None where that layout is not confirmed (then ``==`` on a slice).

    A slice and ``==`` cost the same check plus a reference count written on every item and undone when the
    slice goes: at step k of an agent loop, k messages touched twice per captured list (the converter's and
    the store's search). Cachegrind, steps 600 to 1,500: 6% of the instructions and 16% of the first-level
    cache misses lftrace added over a no-op handler. Only used on the writer's own lists (slices it made, its
    converted lists: ``_Prefixes``' ``private``), which no other thread resizes; through ``PyDLL``, with the GIL.
    """
    try:
        if sys.implementation.name != "cpython" or not getattr(sys, "_is_gil_enabled", lambda: True)():
            return None
        import ctypes

        memcmp = ctypes.PyDLL(None).memcmp
        memcmp.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
        memcmp.restype = ctypes.c_int
        word = ctypes.sizeof(ctypes.c_void_p)
        items_at = 3 * word  # PyListObject: reference count, type, size (PyObject_VAR_HEAD), then ob_item
        pointer = ctypes.c_void_p.from_address
        first, second = object(), object()
        probe = [first, second]
        if ctypes.c_ssize_t.from_address(id(probe) + 2 * word).value != 2:
            return None
        probe_items = pointer(id(probe) + items_at).value
        if probe_items is None or [pointer(probe_items).value, pointer(probe_items + word).value] != [
            id(first),
            id(second),
        ]:
            return None
    except Exception:  # no memcmp to be found (Windows), another layout: the slices
        return None

    def same(a: list[Any], b: list[Any], m: int) -> bool:
        return memcmp(pointer(id(a) + items_at).value, pointer(id(b) + items_at).value, m * word) == 0

    return same


_UNKNOWN: Any = object()
_same_items_found: Any = _UNKNOWN  # made by the first writer that compares (a reading command never loads ctypes)


def _same_items(a: list[Any], b: list[Any], m: int) -> bool:
    """``_pointer_compare()``'s ``same``, False where there is none (the caller then compares a slice)."""
    global _same_items_found
    same = _same_items_found
    if same is _UNKNOWN:
        same = _same_items_found = _pointer_compare()
    return same is not None and bool(same(a, b, m))


class _Prefixes:
    """The last few lists seen and what was made of each; finds the longest one a new list starts with.

    ``private``: a list only this thread holds (a slice the writer made, a value it converted), so comparing its
    item pointers is safe (``_same_items``); the user's own lists are compared with ``==`` on a slice.
    """

    def __init__(self, size: int = RECENT) -> None:
        self.entries: deque[tuple[list[Any] | Extended, Any, bool]] = deque(maxlen=size)

    def find(self, seq: list[Any], *, private: bool = False) -> tuple[int, Any]:
        """(length of the longest remembered prefix of ``seq``, what was made of it); (0, None) when none."""
        n = len(seq)
        # the last item of each first (cheap and decisive), then the whole prefix of the first ``FULL_COMPARES`` that
        # match, the most recent first (a growing list's latest version is its longest): the first match is the
        # answer, and older (shorter) ones of the same lineage are not compared (each comparison is O(length), in C)
        candidates: list[tuple[int, tuple[list[Any] | Extended, Any, bool]]] = []
        for entry in self.entries:
            remembered = entry[0]
            m = len(remembered)
            if m > n or m == 0:
                continue
            try:
                # the packer's Extended: compared as the whole list it tells
                last = remembered.items[-1] if isinstance(remembered, Extended) else remembered[m - 1]
                item = seq[m - 1]
                if item is not last and item != last:
                    continue
            except Exception:  # an item whose == raises (numpy arrays): no sharing with this one
                continue
            candidates.append((m, entry))
            if len(candidates) == FULL_COMPARES:
                break
        for m, (remembered, result, items_private) in candidates:
            try:
                items: list[Any]
                if isinstance(remembered, Extended):
                    items, items_private = remembered.flat(), True
                else:
                    items = remembered
                same = private and items_private and _same_items(seq, items, m)
                if not same and seq[:m] != items:
                    continue
            except Exception:
                continue
            return m, result
        return 0, None

    def add(self, seq: list[Any] | Extended, result: Any, *, private: bool = False) -> None:
        self.entries.appendleft((seq, result, private))

    def result_for(self, seq: Any) -> Any:
        """What was made of this very list (identity), None when it is not remembered."""
        for items, result, _private in self.entries:
            if items is seq:
                return result
        return None


class _MapPrefixes:
    """The last few long dicts seen (their keys and values, in order) and what was made of each; finds the longest
    one a new dict starts with: the same keys in the same order, holding the same values.

    The comparison reads pointers only (lists of the keys and of the values, compared identity first, in C): a
    state field merged into at every step (``{**notes, **new}``) costs a few nanoseconds a key per step here, as
    its merge costs the program.
    """

    def __init__(self, size: int = MAPS_KEPT) -> None:
        self.entries: deque[tuple[list[Any], list[Any], Any]] = deque(maxlen=size)

    def find(self, mapping: dict[Any, Any]) -> tuple[int, Any, list[Any]]:
        """(length of the longest remembered dict whose keys ``mapping`` starts with, in order; what was made of it;
        the keys among those whose value is another object now), or (0, None, []) when none. Setting the changed
        keys and then adding the rest to a copy of the remembered dict makes ``mapping``, order included: a merge
        (``{**notes, **new}``) keeps a rewritten key where it was."""
        n = len(mapping)
        for keys, values, result in sorted(self.entries, key=_keys_length, reverse=True):
            m = len(keys)
            if m > n or m == 0:
                continue
            try:
                if list(islice(mapping, m)) != keys:
                    continue
                now = list(islice(mapping.values(), m))
                if now == values:
                    return m, result, []
            except Exception:  # a value whose == raises (numpy arrays): no sharing with this one
                continue
            changed = [
                keys[i] for i, (value, before) in enumerate(zip(now, values, strict=True)) if _differ(value, before)
            ]
            if len(changed) * 4 > m:  # mostly rewritten: a dict of its own
                continue
            return m, result, changed
        return 0, None, []

    def add(self, mapping: dict[Any, Any], result: Any) -> None:
        self.entries.appendleft((list(mapping), list(mapping.values()), result))


def _differ(value: Any, before: Any) -> bool:
    """Another value now (the handler's captures copy dicts: an unchanged one is equal, not the same object)."""
    if value is before:
        return False
    try:
        return bool(value != before)
    except Exception:
        return True


def _keys_length(entry: tuple[list[Any], list[Any], Any]) -> int:
    return len(entry[0])


class _TextPrefixes:
    """The last few long texts stored and their nodes; finds the longest one a new text starts with (memcmp)."""

    def __init__(self, size: int = MAPS_KEPT) -> None:
        self.entries: deque[tuple[str, str]] = deque(maxlen=size)

    def find(self, text: str) -> tuple[str | None, Any]:
        for before, node in sorted(self.entries, key=_text_length, reverse=True):
            if len(before) <= len(text) and text.startswith(before):
                return before, node
        return None, None

    def add(self, text: str, node: str) -> None:
        self.entries.appendleft((text, node))


def _text_length(entry: tuple[str, str]) -> int:
    return len(entry[0])


class Converter:
    """Captured values -> JSON-able values (writer thread), converting only what a list adds to a recent one."""

    def __init__(self, *, share_within_trace: bool = True) -> None:
        self._prefixes = _Prefixes()
        self._maps = _MapPrefixes()  # long dicts
        self.share_within_trace = share_within_trace  # off when a mask function may change values in place
        # a list that extends a recent one becomes an ``Extended`` (a part of a long run, no mask), else a copy
        self.extend = False

    def convert(self, value: Any, to_jsonable: Callable[[Any], Any]) -> Any:
        kind = type(value)
        if kind is Frozen:
            return self._captured(value, to_jsonable)
        if kind is list:
            return self._list(value, to_jsonable)
        if kind is dict and any(
            type(v) is Frozen
            or type(v) is list
            or (type(v) is dict and (len(v) >= MIN_SHARED_MAP or _holds_long_list(v)))
            for v in value.values()
        ):
            out = {}
            for key, item in value.items():
                item_kind = type(item)
                if item_kind is Frozen:
                    converted = self._captured(item, to_jsonable)
                elif item_kind is list:
                    converted = (
                        self._nested(item, to_jsonable)
                        if len(item) < WALKED_LIST and _holds_long_list(item)
                        else self._list(item, to_jsonable)
                    )
                elif item_kind is dict and len(item) >= MIN_SHARED_MAP:
                    converted = self._map(item, to_jsonable)
                elif item_kind is dict and _holds_long_list(item):
                    converted = self._nested(item, to_jsonable)
                else:
                    converted = to_jsonable(item)
                out[key if type(key) is str else str(key)] = converted
            return out
        return to_jsonable(value)

    def _nested(self, container: Any, to_jsonable: Callable[[Any], Any], depth: int = 1) -> Any:
        """A short dict or list holding a long list (``state["scratch"]["history"]``, down to ``NEST_DEPTH``
        levels): its long lists as ``_list`` makes them (only what a list adds to a recent one converted), the rest
        converted."""

        def one(item: Any) -> Any:
            kind = type(item)
            if kind is Frozen:
                return self._captured(item, to_jsonable)
            if (kind is dict or (kind is list and len(item) < WALKED_LIST)) and (
                depth < NEST_DEPTH and _holds_long_list(item, depth + 1)
            ):
                return self._nested(item, to_jsonable, depth + 1)
            if kind is list and len(item) >= MIN_SHARED:
                return self._list(item, to_jsonable)
            return to_jsonable(item)

        if type(container) is dict:
            return {key if type(key) is str else str(key): one(item) for key, item in container.items()}
        return [one(item) for item in container]

    def _captured(self, frozen: Frozen, to_jsonable: Callable[[Any], Any]) -> Any:
        if not self.share_within_trace:  # a mask may change what it is given in place: its own copy
            return self._list(frozen.value(), to_jsonable)
        made = frozen.made
        if made is None:
            made = self._made(frozen, to_jsonable)
        if type(made) is Extended and not self.extend:
            return made.flat()
        return made

    def _made(self, frozen: Frozen, to_jsonable: Callable[[Any], Any]) -> Any:
        """What is made of a capture and of the captures it extends that are not converted yet, each cut."""
        chain: list[Frozen] = []
        node = frozen
        while node.made is None and node.base is not None:
            chain.append(node)
            node = node.base
        made = node.made
        if made is None:  # the first capture of a lineage: the list itself, compared with the recent ones (the same
            # list captured again as another capture is found there whole, and shares what was made of it)
            made = self._list(node.value(), to_jsonable, private=True)  # value(): a slice made here
            node.cut(made)
        for link in reversed(chain):  # only the items each step added are converted
            new = [to_jsonable(item) for item in link.items or ()]
            if self.extend:
                made = Extended(made, new)
            else:
                made = made.flat() if type(made) is Extended else list(made)
                made.extend(new)
            link.cut(made)
        return made

    def _map(self, mapping: dict[Any, Any], to_jsonable: Callable[[Any], Any]) -> dict[str, Any]:
        """A long dict (a state field merged into at every step): only the keys it adds to a dict converted just
        before are converted; the rest is a copy of that one's result (C level)."""
        m, made, changed = self._maps.find(mapping)
        if m and m == len(mapping) and not changed:
            return made if self.share_within_trace else dict(made)
        out: dict[str, Any] = dict(made) if m else {}
        for key in changed:
            out[key if type(key) is str else str(key)] = to_jsonable(mapping[key])
        for key, item in islice(mapping.items(), m, None):
            out[key if type(key) is str else str(key)] = to_jsonable(item)
        self._maps.add(mapping, out)
        return out

    def _list(self, seq: list[Any], to_jsonable: Callable[[Any], Any], *, private: bool = False) -> Any:
        if len(seq) < MIN_SHARED:
            return to_jsonable(seq)
        m, made = self._prefixes.find(seq, private=private)
        if m and m == len(seq):
            # the same list again (a model's input is its node's): shared, not copied (a mask gets its own list)
            if type(made) is Extended:
                return made if self.extend else made.flat()
            return made if self.share_within_trace else list(made)
        new = [to_jsonable(item) for item in seq[m:]]
        out: list[Any] | Extended
        if not m:
            out = new
        elif self.extend:
            out = Extended(made, new)
        else:
            out = made.flat() if type(made) is Extended else list(made)
            out.extend(new)
        self._prefixes.add(seq, out, private=private)
        return out


def _hash(prev: str | None, data: bytes) -> str:
    import hashlib  # here: reading a store (show, list) never hashes

    digest = hashlib.blake2b(digest_size=16)
    digest.update((prev or "").encode())
    digest.update(b"\n")
    digest.update(data)
    return digest.hexdigest()


class Packer:
    """JSON-able values -> stored form (store side): lists that extend a recently stored list become list nodes.

    ``pack`` adds new nodes to ``blobs`` ({hash: (prev hash, JSON of the new items)}). The store calls
    ``begin`` before a write and ``commit``/``rollback`` after it, so a node is only ever referenced as a
    prefix once it is really in the store.
    """

    def __init__(self, dumps: Callable[[Any], str]) -> None:
        self._dumps = dumps
        self._prefixes = _Prefixes()
        self._maps = _MapPrefixes()
        self._texts = _TextPrefixes()
        self._saved: tuple[list[Any], list[Any], list[Any]] | None = None

    def begin(self) -> None:
        self._saved = (list(self._prefixes.entries), list(self._maps.entries), list(self._texts.entries))

    def commit(self) -> None:
        self._saved = None

    def rollback(self) -> None:
        if self._saved is not None:
            lists, maps, texts = self._saved
            self._prefixes.entries.clear()
            self._prefixes.entries.extend(lists)
            self._maps.entries.clear()
            self._maps.entries.extend(maps)
            self._texts.entries.clear()
            self._texts.entries.extend(texts)
            self._saved = None

    def pack(self, value: Any, blobs: dict[str, tuple[str | None, str]]) -> Any:
        """The value with its long lists (top level, or values of a top-level dict) replaced by node references."""
        kind = type(value)
        if kind is list or kind is Extended:
            return self._list(value, blobs)
        if kind is dict:
            if REF in value or MAP_REF in value or TEXT_REF in value or ESCAPED in value:
                return {ESCAPED: flat(value)}
            if any(
                (type(v) is list and len(v) >= MIN_SHARED)
                or type(v) is Extended
                or _shared_map(v)
                or (type(v) is str and len(v) >= MIN_SHARED_TEXT)
                or _holds_long_list(v)
                or _reserved(v)
                for v in value.values()
            ):
                return {k: self._value(v, blobs) for k, v in value.items()}
        return value

    def _value(self, value: Any, blobs: dict[str, tuple[str | None, str]]) -> Any:
        kind = type(value)
        if kind is dict and _reserved(value):
            return {ESCAPED: value}  # a user's dict that would read as a reference (``unpack``)
        if kind is list and len(value) < WALKED_LIST and _holds_long_list(value):
            return self._nested(value, blobs)  # a short list holding long ones (``state["agents"][0]["notes"]``)
        if kind is list or kind is Extended:
            return self._list(value, blobs)
        if _holds_long_list(value):  # a short dict or list holding a long list: its lists as nodes, levels down
            return self._nested(value, blobs)
        if kind is dict and len(value) >= MIN_SHARED_MAP:
            # a dict that grows by merging (``Annotated[dict, merge]``): its pairs, in order, as a list node, so
            # the next step's dict (the same pairs and a few more) stores only the pairs it adds
            m, node, changed = self._maps.find(value)
            if not m or m < len(value) or changed:
                # (key, value) tuples, written as [key, value]: the rewritten pairs, then the new ones (read back in
                # order into one dict, a rewritten key keeps its place and takes its last value: ``_mapping``)
                pairs = [(key, value[key]) for key in changed]
                pairs += islice(value.items(), m, None)
                data = self._dumps(pairs)
                prev = node if m else None
                node = _hash(prev, data.encode())
                blobs[node] = (prev, data)
            self._maps.add(value, node)
            return {MAP_REF: node}
        if kind is str and len(value) >= MIN_SHARED_TEXT:
            # a text that grows (a draft appended to at every step): the piece it adds after a text stored just
            # before, as a list node of pieces (read back joined)
            before, node = self._texts.find(value)
            if before is None or len(before) < len(value):
                data = self._dumps([value[len(before) :] if before is not None else value])
                prev = node if before is not None else None
                node = _hash(prev, data.encode())
                blobs[node] = (prev, data)
            self._texts.add(value, node)
            return {TEXT_REF: node}
        return value

    def _nested(self, container: Any, blobs: dict[str, tuple[str | None, str]], depth: int = 1) -> Any:
        """A short dict or list with its long lists (down to ``NEST_DEPTH`` levels) as list node references."""

        def one(item: Any) -> Any:
            kind = type(item)
            if kind is dict and _reserved(item):
                return {ESCAPED: item}
            if (kind is dict or (kind is list and len(item) < WALKED_LIST)) and (
                depth < NEST_DEPTH and _holds_long_list(item, depth + 1)
            ):
                return self._nested(item, blobs, depth + 1)
            if kind is Extended or (kind is list and len(item) >= MIN_SHARED):
                return self._list(item, blobs)
            return item

        if type(container) is dict:
            return {key: one(item) for key, item in container.items()}
        return [one(item) for item in container]

    def _list(self, seq: list[Any] | Extended, blobs: dict[str, tuple[str | None, str]]) -> Any:
        # ``private``: the store's values are the writer's converted copies or JSON it parsed, held by no other thread
        if isinstance(seq, Extended):
            node = self._prefixes.result_for(seq)  # the same list again (a node's input is its model's)
            if node is not None:
                return {REF: node}
            prev = self._prefixes.result_for(seq.base)
            if prev is None:  # its base is not among the lists just stored: searched for as any list is
                return self._searched(seq.flat(), blobs, seq)
            data = self._dumps(seq.items)
            node = _hash(prev, data.encode())
            blobs[node] = (prev, data)
            self._prefixes.add(seq, node, private=True)
            return {REF: node}
        return self._searched(seq, blobs, seq)

    def _searched(
        self, seq: list[Any], blobs: dict[str, tuple[str | None, str]], remembered: list[Any] | Extended
    ) -> Any:
        if len(seq) < MIN_SHARED:
            return seq
        m, prev = self._prefixes.find(seq, private=True)
        if m and m == len(seq):
            node = prev
        else:
            data = self._dumps(seq[m:] if m else seq)
            node = _hash(prev if m else None, data.encode())
            blobs[node] = (prev if m else None, data)
        self._prefixes.add(remembered, node, private=True)
        return {REF: node}


def references(value: Any, out: set[str]) -> bool:
    """Add the list nodes a stored value refers to (where ``Packer.pack`` puts them) to ``out``. True when the
    value needs ``unpack``: a reference, or a user's dict the packer escaped (``_reserved``)."""
    if type(value) is not dict:
        return False
    if _marked(value, out, REF):
        return True
    found = False
    for item in value.values():
        if type(item) is dict:
            if _marked(item, out, REF, MAP_REF, TEXT_REF):
                found = True
            elif len(item) < MIN_SHARED_MAP:
                found = _nested_references(item, out, 1) or found
        elif type(item) is list and len(item) < WALKED_LIST:
            found = _nested_references(item, out, 1) or found
    return found


def _nested_references(container: Any, out: set[str], depth: int) -> bool:
    """The list nodes in a short dict or list among a stored dict's values (``Packer._nested``'s, any level); True
    when it holds one or an escaped dict."""
    found = False
    for item in container.values() if type(container) is dict else container:
        kind = type(item)
        if kind is dict:
            if _marked(item, out, REF):
                found = True
            elif depth < NEST_DEPTH and len(item) < MIN_SHARED_MAP:
                found = _nested_references(item, out, depth + 1) or found
        elif kind is list and depth < NEST_DEPTH and len(item) < WALKED_LIST:
            found = _nested_references(item, out, depth + 1) or found
    return found


def _marked(item: dict[Any, Any], out: set[str], *keys: str) -> bool:
    """A one-key dict that is a reference by one of ``keys`` (its node added to ``out``) or an escaped user's dict."""
    if len(item) != 1:
        return False
    for key in keys:
        ref = item.get(key)
        if type(ref) is str:
            out.add(ref)
            return True
    return ESCAPED in item


def materialize(
    nodes: Mapping[str, tuple[str | None, bytes | str]],
    wanted: Iterable[str],
    *,
    as_text: bool = False,
    built: Mapping[str, list[Any]] | None = None,
) -> dict[str, list[Any]]:
    """Full lists for node hashes, from ``nodes`` ({hash: (prev, JSON of its items)}, every node of each chain).

    Each wanted list is built once (and shared: do not mutate what you read); the nodes in between cost only
    their own items. ``as_text``: each item as its JSON text (bytes; ``TextBlocks.ready`` makes a list of them
    ready for orjson), for values that are only serialised again (the export of a long trace: a span's input is
    then its messages' texts joined, where serialising every message again for every span cost most of the
    export). ``built``: lists built before (in
    the same form), where the chains may stop (``nodes`` then holds only the nodes after them).
    """
    wanted_set = set(wanted)
    built = dict(built or {})
    items: dict[str, list[Any]] = {}  # parsed once per node, even when several chains pass through it
    for head in wanted_set:  # a long chain built first also builds the wanted lists along it
        if head in built:
            continue
        chain: list[str] = []
        current: str | None = head
        missing = False
        while current is not None and current not in built:
            row = nodes.get(current)
            if row is None:  # a node missing from the store: say so instead of failing the whole read
                missing = True
                break
            chain.append(current)
            current = row[0]
        result = list(built[current]) if current is not None and current in built else []
        if missing:
            result.append(f"<missing shared list {current}>")
        for node in reversed(chain):
            part = items.get(node)
            if part is None:
                part = items[node] = orjson.loads(nodes[node][1])
                if as_text:
                    part = items[node] = [_as_text(item) for item in part]
            result.extend(part)
            if node in wanted_set and node != head:
                built[node] = list(result)
        built[head] = result
    return built


def _as_text(item: Any) -> Any:
    """An item read from the store as its JSON text (bytes: no JSON value reads back as bytes); the item itself if
    orjson will not write it back."""
    try:
        return own_length(orjson.dumps(item))  # kept while the trace is read: ``kept``
    except TypeError:
        return item


BLOCK_ITEMS = 64  # items of a list built as text written as one fragment (TextBlocks)
BLOCKS_KEPT_BYTES = 32_000_000  # text of the blocks one TextBlocks keeps for the next lists (then it starts over)


class TextBlocks:
    """Lists built as text (``materialize(as_text=True)``) made ready for orjson: each run of ``BLOCK_ITEMS`` items
    from the list's start is one ``orjson.Fragment`` of their texts joined by commas. orjson writes a fragment as it
    is, so the array's JSON is the same; but writing 10,000 small fragments, each its own object in its own place
    in memory, took ~90 ns apiece, and a long run's span inputs hold the whole conversation (its export wrote
    ~125 million at 10,007 steps).

    Lists of one trace share their runs: a run is kept (``BLOCKS_KEPT_BYTES`` in all) by its last item, and
    another list holding that same item object at a run's end holds the same run: items are parsed once per node
    of a content-addressed chain, so an item object stands at one position after one prefix. The kept item makes
    the identity test safe (its id cannot be reused while it is kept).
    """

    def __init__(self) -> None:
        self._runs: dict[int, tuple[Any, orjson.Fragment]] = {}  # id(last item) -> (that item, the run)
        self._bytes = 0

    def ready(self, items: list[Any]) -> list[Any]:
        out: list[Any] = []
        whole = len(items) - len(items) % BLOCK_ITEMS
        runs = self._runs
        for start in range(0, whole, BLOCK_ITEMS):
            last = items[start + BLOCK_ITEMS - 1]
            kept = runs.get(id(last))
            if kept is not None and kept[0] is last:
                out.append(kept[1])
                continue
            run = items[start : start + BLOCK_ITEMS]
            block = self._block(run)
            if block is None:
                out += _fragments(run)
                continue
            if self._bytes > BLOCKS_KEPT_BYTES:
                runs.clear()
                self._bytes = 0
            fragment, size = block
            runs[id(last)] = (last, fragment)
            self._bytes += size
            out.append(fragment)
        tail = items[whole:]
        block = self._block(tail) if tail else None
        if block is not None:
            out.append(block[0])
        else:
            out += _fragments(tail)
        return out

    @staticmethod
    def _block(run: list[Any]) -> tuple[orjson.Fragment, int] | None:
        """The run as one fragment and its size; None if an item is not text (orjson refused it: kept as is)."""
        if not all(type(item) is bytes for item in run):
            return None
        text = b",".join(run)
        return orjson.Fragment(text), len(text)


def _fragments(items: list[Any]) -> list[Any]:
    return [orjson.Fragment(item) if type(item) is bytes else item for item in items]


def unpack(value: Any, lists: Mapping[str, list[Any]]) -> Any:
    """A stored value with its list node references replaced by the full lists."""
    if type(value) is not dict:
        return value
    if len(value) == 1:
        ref = value.get(REF)
        if type(ref) is str:
            return lists.get(ref, [f"<missing shared list {ref}>"])
        if ESCAPED in value:
            return value[ESCAPED]
    if any(
        (type(v) is dict and (_is_ref(v) or (len(v) < MIN_SHARED_MAP and _holds_refs(v, 1))))
        or (type(v) is list and len(v) < WALKED_LIST and _holds_refs(v, 1))
        for v in value.values()
    ):
        return {
            k: _unpacked_item(v, lists)
            if type(v) is dict
            else _unpacked_nested(v, lists, 1)
            if type(v) is list and len(v) < WALKED_LIST
            else v
            for k, v in value.items()
        }
    return value


def _is_ref(value: dict[str, Any]) -> bool:
    """A reference or an escaped user's dict among a stored dict's values."""
    return len(value) == 1 and (REF in value or MAP_REF in value or TEXT_REF in value or ESCAPED in value)


def _is_list_ref(value: Any) -> bool:
    """A list node reference levels down (``Packer._nested``: a short dict's or list's long list)."""
    return type(value) is dict and len(value) == 1 and type(value.get(REF)) is str


def _is_marker(value: Any) -> bool:
    """A list node reference or an escaped user's dict levels down (``Packer._nested``)."""
    return type(value) is dict and len(value) == 1 and (type(value.get(REF)) is str or ESCAPED in value)


def _holds_refs(container: Any, depth: int) -> bool:
    """A short dict or list among a stored dict's values with a list node reference in it (``Packer._nested``)."""
    for item in container.values() if type(container) is dict else container:
        kind = type(item)
        if kind is dict:
            if _is_marker(item):
                return True
            if depth < NEST_DEPTH and len(item) < MIN_SHARED_MAP and _holds_refs(item, depth + 1):
                return True
        elif kind is list and depth < NEST_DEPTH and len(item) < WALKED_LIST and _holds_refs(item, depth + 1):
            return True
    return False


def _unpacked_nested(container: Any, lists: Mapping[str, list[Any]], depth: int) -> Any:
    """``Packer._nested`` undone: its list node references replaced by the full lists, down to ``NEST_DEPTH``."""

    def one(item: Any) -> Any:
        kind = type(item)
        if kind is dict:
            if _is_list_ref(item):
                return lists.get(item[REF], [f"<missing shared list {item[REF]}>"])
            if len(item) == 1 and ESCAPED in item:
                return item[ESCAPED]
            if depth < NEST_DEPTH and len(item) < MIN_SHARED_MAP:
                return _unpacked_nested(item, lists, depth + 1)
        elif kind is list and depth < NEST_DEPTH and len(item) < WALKED_LIST:
            return _unpacked_nested(item, lists, depth + 1)
        return item

    if type(container) is dict:
        return {key: one(item) for key, item in container.items()}
    return [one(item) for item in container]


def _unpacked_item(value: dict[str, Any], lists: Mapping[str, list[Any]]) -> Any:
    if len(value) == 1 and ESCAPED in value:
        return value[ESCAPED]
    if len(value) == 1 and type(value.get(TEXT_REF)) is str:
        pieces = lists.get(value[TEXT_REF])
        return _text(pieces) if pieces is not None else f"<missing shared text {value[TEXT_REF]}>"
    ref = value.get(MAP_REF) if len(value) == 1 else None
    if type(ref) is not str:
        if _is_list_ref(value):
            return lists.get(value[REF], [f"<missing shared list {value[REF]}>"])
        return _unpacked_nested(value, lists, 1) if len(value) < MIN_SHARED_MAP else value
    pairs = lists.get(ref)
    if pairs is None:
        return {"<missing shared dict>": ref}
    return _mapping(pairs)


def _text(pieces: list[Any]) -> Any:
    """A text stored as its pieces, joined again; read as text (the export), its JSON string as one fragment."""
    if all(type(piece) is str for piece in pieces):
        return "".join(pieces)
    texts = [orjson.dumps(piece) if type(piece) is not bytes else piece for piece in pieces]  # fragments: their text
    return orjson.Fragment(orjson.dumps("".join(orjson.loads(b"[" + b",".join(texts) + b"]"))))


def _mapping(pairs: list[Any]) -> Any:
    """A dict stored as its pairs, again (a key met again takes the later value, in its first place: the chain's
    later nodes rewrite it); read as text (the export), its JSON text as one fragment."""
    out: dict[str, Any] = {}
    as_text = False
    for pair in pairs:
        if type(pair) is orjson.Fragment:  # a block of pairs' texts (TextBlocks): parsed back to pairs
            as_text = True
            for key, value in orjson.loads(b"[" + orjson.dumps(pair) + b"]"):
                out[key] = value
            continue
        if type(pair) is bytes:
            as_text = True
            pair = orjson.loads(pair)
        if type(pair) is list and len(pair) == 2 and type(pair[0]) is str:
            out[pair[0]] = pair[1]
        else:  # "<missing shared list ...>": a node gone from the store (said, not failing the read)
            out.setdefault("<missing shared dict>", str(pair))
    return orjson.Fragment(orjson.dumps(out)) if as_text else out
