"""Structural sharing (sharing.py): what a part of a long run hands to the store reads back as the full lists."""

from __future__ import annotations

import itertools
import sys

import orjson

from lftrace import sharing
from lftrace.sharing import (
    BLOCK_ITEMS,
    MIN_SHARED,
    REF,
    Captures,
    Converter,
    Extended,
    Frozen,
    Packer,
    TextBlocks,
    materialize,
    unpack,
)
from lftrace.store import dumps


def _convert_steps(converter: Converter, steps: int) -> list[object]:
    """A growing conversation captured at every step, as the handler captures it (a new list per step)."""
    conversation: list[dict[str, str]] = []
    out = []
    for step in range(steps):
        conversation = [*conversation, {"role": "user", "content": f"message {step}"}]
        out.append(converter.convert(Frozen(conversation), lambda item: dict(item)))
    return out


def _read_back(packed: list[object], blobs: dict[str, tuple[str | None, str]]) -> list[object]:
    nodes = {h: (prev, data) for h, (prev, data) in blobs.items()}
    wanted = [p[REF] for p in packed if isinstance(p, dict) and REF in p]
    lists = materialize(nodes, wanted)
    return [unpack(p, lists) for p in packed]


def test_a_part_tells_each_list_as_the_one_it_extends_and_the_store_reads_back_every_full_list():
    converter = Converter()
    converter.extend = True
    made = _convert_steps(converter, 40)
    assert all(type(m) is Extended for m in made[8:])  # MIN_SHARED: shorter lists are plain
    assert made[-1].flat() == [{"role": "user", "content": f"message {i}"} for i in range(40)]
    packer, blobs = Packer(dumps), {}
    packed = [packer.pack(m, blobs) for m in made]
    # every list of 8+ items is a node holding only its new item (no copy of the conversation stored)
    assert all(len(orjson.loads(data)) == 1 for prev, data in blobs.values() if prev is not None)
    assert _read_back(packed, blobs) == [m.flat() if type(m) is Extended else m for m in made]


def test_an_extended_list_whose_base_the_store_did_not_see_is_stored_in_full_and_reads_back():
    converter = Converter()
    converter.extend = True
    made = _convert_steps(converter, 20)
    packer, blobs = Packer(dumps), {}
    packed = packer.pack(made[-1], blobs)  # its base (step 18's list) was never packed
    assert _read_back([packed], blobs) == [made[-1].flat()]
    # and a plain list that extends it (a whole trace after the parts) still shares its prefix
    longer = [*made[-1].flat(), {"role": "user", "content": "one more"}]
    packed_longer = packer.pack(longer, blobs)
    prev, data = blobs[packed_longer[REF]]
    assert prev == packed[REF] and orjson.loads(data) == [longer[-1]]
    assert _read_back([packed_longer], blobs) == [longer]


def test_outside_a_part_the_converter_makes_plain_lists_and_a_stray_extended_is_written_as_its_list():
    converter = Converter()
    converter.extend = True
    parts = _convert_steps(converter, 12)
    converter.extend = False  # the whole trace at the end: read from memory by the export, so plain lists
    conversation = [{"role": "user", "content": f"message {i}"} for i in range(13)]
    whole = converter.convert(Frozen(conversation), lambda item: dict(item))
    assert type(whole) is list and whole == conversation
    assert orjson.loads(dumps({"input": parts[-1]})) == {"input": parts[-1].flat()}


def test_the_users_thread_keeps_a_growing_list_as_the_capture_it_extends_and_its_new_items():
    captures = Captures()
    messages = [{"role": "user", "content": f"m{i}"} for i in range(10)]
    first = captures.capture(messages)
    # a new lineage: a copy of the list as it is now, its dict items copied too (a node may change them in place)
    assert first.base is None and first.items == messages and first.items is not messages
    assert all(mine is not theirs for mine, theirs in zip(first.items, messages, strict=True))
    assert captures.capture(messages) is first  # the same list again
    assert captures.capture(list(messages)) is first  # a model's own copy of its node's messages
    grown = [*messages, {"role": "assistant", "content": "m10"}]
    second = captures.capture(grown)
    assert second.base is first and second.items == [grown[-1]] and second.size == 11  # no reference to grown
    edited = [*grown[:3], {"role": "user", "content": "edited"}, *grown[4:]]  # same length, one item replaced
    third = captures.capture(edited)
    assert third.base is None and third.items == edited
    removed = grown[:5] + grown[6:]  # shorter and not a prefix of anything captured
    assert captures.capture(removed).base is None
    short = messages[: MIN_SHARED - 1]
    assert captures.capture(short).items == short and captures.capture(short).base is None
    assert second.value() == grown and third.value() == edited

    # the writer: every capture converted to its whole list, in a part (Extended) and outside one (plain)
    for extend in (True, False):
        converter = Converter()
        converter.extend = extend
        made = [converter.convert(f, dict) for f in (first, second, third)]
        assert [m.flat() if type(m) is Extended else m for m in made] == [messages, grown, edited]
        assert (type(made[1]) is Extended) is extend
        # converted captures are cut (no reference to the user's lists any more) and still read in full
        assert first.items is None and second.base is None and second.value() == grown
        later = captures.capture([*grown, {"role": "user", "content": "m11"}])
        assert later.base is second
        assert flat_list(converter.convert(later, dict)) == [*grown, {"role": "user", "content": "m11"}]
        captures = Captures()  # captured afresh for the next mode
        first, second, third = captures.capture(messages), captures.capture(grown), captures.capture(edited)


def test_a_lineage_of_captures_holds_one_copy_of_the_list_and_branches_keep_theirs():
    """A conversation captured at every step: the entries remembered share one copy of its items (the longest), not
    one conversation-sized copy each; a capture that branches off an older entry (two nodes extending the same
    state differently) still finds it, and every capture reads back as its own list."""
    captures = Captures()
    conversation = [f"m{i}" for i in range(MIN_SHARED)]
    steps = [captures.capture(conversation)]
    lists = [list(conversation)]
    for i in range(40):
        conversation = [*conversation, f"m{MIN_SHARED + i}"]  # a new list at every step, as add_messages makes
        steps.append(captures.capture(conversation))
        lists.append(conversation)
    assert all(later.base is earlier for earlier, later in itertools.pairwise(steps))
    assert len({id(entry[0]) for entry in captures._recent}) == 1  # one copy for the lineage
    assert captures._recent[0][0] == lists[-1]
    # two branches off step 30's list: each extends that capture, neither the other's
    base = lists[30]
    left = captures.capture([*base, "left"])
    right = captures.capture([*base, "right"])
    assert left.base is steps[30] and right.base is steps[30]
    assert left.value() == [*base, "left"] and right.value() == [*base, "right"]
    assert captures.capture([*base, "left", "more"]).base is left
    assert captures.capture(lists[-1]) is steps[-1]  # the lineage's tip, still found whole
    assert all(step.value() == items for step, items in zip(steps, lists, strict=True))
    # a list whose early items differ from every entry's: a new lineage
    edited = list(lists[-1])
    edited[2] = "changed"
    assert captures.capture([*edited, "x"]).base is None


def flat_list(value: object) -> object:
    return value.flat() if type(value) is Extended else value


def test_lists_read_as_text_are_written_in_shared_runs_with_the_same_json(monkeypatch):
    """The export reads a long trace's lists as their items' JSON texts and writes each run of ``BLOCK_ITEMS`` items
    as one fragment: the JSON is the values' own, byte for byte, and lists with the same start share its runs
    (built once), also after the runs kept were dropped."""
    converter = Converter()
    converter.extend = True
    steps = 3 * BLOCK_ITEMS + 10
    made = _convert_steps(converter, steps)
    packer, blobs = Packer(dumps), {}
    packed = [packer.pack(m, blobs) for m in made]
    heads = [p[REF] for p in packed if isinstance(p, dict) and REF in p]
    nodes = {h: (prev, data) for h, (prev, data) in blobs.items()}
    values = materialize(nodes, heads)
    texts = materialize(nodes, heads, as_text=True)
    assert all(type(item) is bytes for item in texts[heads[-1]])
    blocks = TextBlocks()
    ready = {head: blocks.ready(texts[head]) for head in heads}
    for head in heads:
        assert orjson.dumps({"messages": ready[head]}) == orjson.dumps({"messages": values[head]})
    longest, shorter = ready[heads[-1]], ready[heads[-20]]  # 2 whole runs in common
    assert len(longest) == 4 and longest[:2] == shorter[:2]
    assert all(a is b for a, b in zip(longest[:2], shorter[:2], strict=True))  # the same fragments
    monkeypatch.setattr(sharing, "BLOCKS_KEPT_BYTES", 1)  # every run kept is dropped at the next one
    again = TextBlocks()
    for head in reversed(heads):
        assert orjson.dumps(again.ready(texts[head])) == orjson.dumps(values[head])


def test_a_run_with_an_item_that_is_not_text_keeps_its_items_one_by_one():
    """A missing node's marker (or an item orjson refused) is not JSON text: its run is written item by item."""
    items = [orjson.dumps({"n": n}) for n in range(BLOCK_ITEMS + 3)]
    items[5] = "<missing shared list abc>"
    ready = TextBlocks().ready(items)
    assert len(ready) == BLOCK_ITEMS + 1  # the first run item by item, the 3 after it as one fragment
    expected = [{"n": n} for n in range(BLOCK_ITEMS + 3)]
    expected[5] = "<missing shared list abc>"
    assert orjson.loads(orjson.dumps(ready)) == expected


def test_a_state_object_is_captured_as_its_fields_and_messages_and_langgraph_commands_are_kept_as_they_are():
    """``Captures(fields_of=state_fields)``, as the handler makes it: a pydantic model or a dataclass (a LangGraph
    state schema) becomes its fields, its growing list captured as the one before plus its new items; the same
    JSON as the object converted whole. A message (a pydantic model too), a document, a Command (a dataclass the
    handler reads to find a resume) and text stay as they are."""
    from dataclasses import dataclass

    from langchain_core.documents import Document
    from langchain_core.messages import AIMessage, HumanMessage
    from langgraph.types import Command, Interrupt
    from pydantic import BaseModel

    from lftrace.serialize import json_bytes, state_fields

    class State(BaseModel):
        messages: list[object]
        turns: int = 0

    @dataclass
    class Plain:
        messages: list[object]
        note: str = "n"

    captures = Captures(fields_of=state_fields)
    conversation: list[object] = [HumanMessage(f"m{i}") for i in range(MIN_SHARED + 2)]
    first = captures.freeze(State(messages=conversation))
    conversation = [*conversation, AIMessage("next")]
    second = captures.freeze(State(messages=conversation, turns=1))
    assert type(first) is dict and type(second) is dict and second["turns"] == 1
    assert type(second["messages"]) is Frozen and second["messages"].base is first["messages"]
    assert second["messages"].items == conversation[-1:]  # only what the step added, the rest shared
    as_object = State(messages=conversation, turns=1)
    assert json_bytes(sharing.thaw(second)) == json_bytes(as_object)  # as the writer writes each

    plain = captures.freeze(Plain(messages=conversation))
    assert type(plain) is dict and plain["note"] == "n" and type(plain["messages"]) is Frozen

    kept = [
        AIMessage("hi"),
        Document(page_content="doc"),
        Command(resume="yes"),
        Interrupt(value="ask"),
        "text",
        3,
    ]
    for value in kept:
        assert captures.freeze(value) is value


def test_a_list_that_grows_inside_a_state_fields_dict_is_captured_as_the_one_it_extends():
    """``state["scratch"]["history"]`` (a list one level down) is captured as a top-level list is: the capture
    before it and the items the step added; thawed and converted, it is the list again."""
    from lftrace.serialize import json_bytes, state_fields

    captures = Captures(fields_of=state_fields)
    history = [f"step {i}" for i in range(MIN_SHARED + 3)]
    first = captures.freeze({"n": 1, "scratch": {"history": history, "last": 1}})
    history = [*history, "one more"]
    state = {"n": 2, "scratch": {"history": history, "last": 2, "short": [1, 2]}}
    second = captures.freeze(state)
    captured = second["scratch"]["history"]
    assert type(captured) is Frozen and captured.base is first["scratch"]["history"]
    assert captured.items == ["one more"]  # only what the step added, the rest shared
    assert second["scratch"]["short"] == [1, 2] and second["scratch"]["short"] is not state["scratch"]["short"]
    assert json_bytes(sharing.thaw(second)) == json_bytes(state)
    converted = Converter().convert(second, lambda value: orjson.loads(orjson.dumps(value)))
    assert converted == state
    expected = orjson.loads(orjson.dumps(state))
    state["scratch"]["history"].sort(reverse=True)  # a node changing it in place after the callback
    state["scratch"]["history"].append("later")
    assert orjson.loads(json_bytes(sharing.thaw(second)) or b"") == expected  # as it was given


def test_thaw_rebuilds_only_the_containers_on_the_way_to_a_captured_list():
    """The writer thaws every captured input before writing it: a list captured four levels down
    (``state["team"]["agents"][0]["notes"]``) is a plain list again, in a rebuilt dict; the containers with no
    captured list below them are the handler's copies as they are, not copied again."""
    from lftrace.serialize import json_bytes, state_fields

    captures = Captures(fields_of=state_fields)
    notes = [f"note {i}" for i in range(MIN_SHARED + 2)]
    state = {
        "team": {"agents": [{"notes": notes, "name": "a"}, {"name": "b", "tools": [{"n": 1}]}]},
        "args": {"query": "q", "options": {"k": [1, 2]}},
    }
    frozen = captures.freeze(state)
    assert type(frozen["team"]["agents"][0]["notes"]) is Frozen
    thawed = sharing.thaw(frozen)
    assert thawed == state and json_bytes(thawed) == json_bytes(state)
    assert type(thawed["team"]["agents"][0]["notes"]) is list
    assert thawed["team"] is not frozen["team"] and thawed["team"]["agents"][0] is not frozen["team"]["agents"][0]
    assert thawed["args"] is frozen["args"]  # nothing captured below it
    assert thawed["team"]["agents"][1] is frozen["team"]["agents"][1]
    assert frozen["args"] is not state["args"]  # still the handler's own copy


def test_threads_capturing_through_one_handler_each_read_back_their_own_lists():
    """Two threads of the program capture through the same ``Captures`` (one handler on a thread pool): one extends a
    conversation both started from, the other branches off it at every step. Each capture reads back as the list it
    captured, whatever the interleaving."""
    import threading

    captures = Captures()
    start = [f"m{i}" for i in range(MIN_SHARED)]
    captures.capture(start)
    results: list[tuple[object, list[str]]] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        mine = list(start)
        for i in range(300):
            mine = [*mine, f"{name}{i}"]
            branch = [*start, f"{name}-branch{i}"]
            got = [(captures.capture(mine), mine), (captures.capture(branch), branch)]
            with lock:
                results.extend(got)

    threads = [threading.Thread(target=worker, args=(name,)) for name in ("a", "b")]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # the threads take turns every few bytecodes
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert len(results) == 1200
    assert all(frozen.value() == items for frozen, items in results)
    # shared where an entry was still remembered (the other thread's entries push a thread's out of the 32)
    assert sum(frozen.base is not None for frozen, _ in results) >= 300


def test_a_message_s_remembered_json_text_takes_its_own_size_not_orjsons_working_buffer():
    # The serializer remembers a message's JSON text for the rest of the trace (a long run's whole conversation);
    # orjson.dumps hands back a 4 KB buffer for any short text.
    import tracemalloc

    from langchain_core.messages import HumanMessage

    from lftrace import serialize

    messages = [HumanMessage(f"question {i}", id=f"message-{i}") for i in range(300)]
    serialize.forget()
    try:
        first = [serialize.json_bytes({"messages": [m]}) for m in messages]  # met once: remembered
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            again = [serialize.json_bytes({"messages": [m]}) for m in messages]  # met again: its text is made
            del again
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert serialize.json_bytes({"messages": [messages[-1]]}) == first[-1]
    finally:
        serialize.forget()
    assert orjson.loads(first[7])["messages"][0]["content"] == "question 7"
    assert held / len(messages) < 400, f"{held / len(messages):.0f} bytes held per remembered text"


def test_lists_read_back_as_text_for_the_export_hold_each_item_in_its_own_length():
    import tracemalloc

    items = [{"role": "user", "content": f"message {i}"} for i in range(300)]
    nodes = {"n1": (None, orjson.dumps(items))}
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        built = materialize(nodes, {"n1"}, as_text=True)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    texts = built["n1"]
    assert [orjson.loads(t) for t in texts] == items
    longest = max(len(t) for t in texts)
    assert held / len(texts) < longest + 150, f"{held / len(texts):.0f} bytes held per item of at most {longest}"
