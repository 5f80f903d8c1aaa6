"""Graphs that use LangGraph's runtime features as its guides write them: the runtime context (``context_schema``,
``Runtime[Context]``), the functional API (``@entrypoint``/``@task``) with an interrupt, node retries
(``RetryPolicy``), custom streaming (``get_stream_writer``), a deferred node and routing with ``Command``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.config import get_stream_writer
from langgraph.func import entrypoint, task
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command, RetryPolicy, interrupt
from pydantic import BaseModel


@dataclass
class Context:
    user_id: str
    tone: str = "plain"


class State(TypedDict, total=False):
    question: str
    answer: str


def respond(state: State, runtime: Runtime[Context]) -> State:
    return {"answer": f"[{runtime.context.tone}] {runtime.context.user_id} asked {state['question']}"}


async def respond_async(state: State, runtime: Runtime[Context]) -> State:
    await asyncio.sleep(0)
    return respond(state, runtime)


def _graph(node, context_schema):
    builder = StateGraph(State, context_schema=context_schema)
    builder.add_node("respond", node)
    builder.add_edge(START, "respond")
    builder.add_edge("respond", END)
    return builder.compile()


graph = _graph(respond, Context)
async_graph = _graph(respond_async, Context)  # async-only: lftrace runs it with ainvoke


class Settings(BaseModel):
    user_id: str
    max_words: int = 10


def clip(state: State, runtime: Runtime[Settings]) -> State:
    words = state["question"].split()[: runtime.context.max_words]
    return {"answer": f"{runtime.context.user_id}: {' '.join(words)}"}


pydantic_graph = _graph(clip, Settings)


@task
def draft(topic: str) -> str:
    return f"An essay about {topic}"


@entrypoint(checkpointer=InMemorySaver())
def essay_workflow(topic: str) -> dict:
    essay = draft(topic).result()
    approved = interrupt({"essay": essay, "action": "approve?"})
    return {"essay": essay, "approved": approved}


# A node with a RetryPolicy that fails twice before it succeeds, reporting progress with get_stream_writer(), and
# a deferred node after it (LangGraph's how-to features: node retries, custom streaming, deferred execution).
_attempts = {"n": 0}


def flaky(state: State) -> State:
    _attempts["n"] += 1
    get_stream_writer()({"progress": f"attempt {_attempts['n']}"})
    if _attempts["n"] < 3:
        raise ConnectionError(f"transient failure {_attempts['n']}")
    return {"answer": f"ok after {_attempts['n']} attempts"}


def finish(state: State) -> State:
    return {"answer": state["answer"] + "!"}


_retrying = StateGraph(State)
_retrying.add_node("flaky", flaky, retry_policy=RetryPolicy(max_attempts=5, initial_interval=0.01, jitter=False))
_retrying.add_node("finish", finish, defer=True)
_retrying.add_edge(START, "flaky")
_retrying.add_edge("flaky", "finish")
_retrying.add_edge("finish", END)
retrying_graph = _retrying.compile()


# A node that routes with a Command (update + goto), as LangGraph's "Command" how-to writes it.
class Count(TypedDict, total=False):
    x: int


def bump(state: Count) -> Command[Literal["double"]]:
    return Command(update={"x": state["x"] + 1}, goto="double")


def double(state: Count) -> Count:
    return {"x": state["x"] * 2}


_commanding = StateGraph(Count)
_commanding.add_node("bump", bump)
_commanding.add_node("double", double)
_commanding.add_edge(START, "bump")
_commanding.add_edge("double", END)
command_graph = _commanding.compile()


# A multi-agent handoff, as LangGraph's "multi-agent" how-to writes it: a node inside the "alice" subgraph hands
# over to "bob", a node of the parent graph (Command.PARENT: LangGraph raises it up as ParentCommand).
class Team(TypedDict, total=False):
    log: list[str]


def alice_works(state: Team) -> Command:  # no Literal: "bob" is not a node of this subgraph
    return Command(goto="bob", update={"log": [*state.get("log", []), "alice"]}, graph=Command.PARENT)


def bob(state: Team) -> Team:
    return {"log": [*state["log"], "bob"]}


_alice = StateGraph(Team)
_alice.add_node("alice_works", alice_works)
_alice.add_edge(START, "alice_works")
_team = StateGraph(Team)
_team.add_node("alice", _alice.compile())
_team.add_node("bob", bob)
_team.add_edge(START, "alice")
_team.add_edge("bob", END)
handoff_graph = _team.compile()
