"""State shapes and graph shapes from LangGraph's guides: a Pydantic state, a subgraph, parallel branches,
an interrupt inside a subgraph. No model: each runs in milliseconds."""

import operator
from typing import Annotated, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import interrupt
from pydantic import BaseModel


# -- Pydantic state -----------------------------------------------------------------------------------------
class Order(BaseModel):
    item: str
    quantity: int = 1
    total: float = 0.0


def price(state: Order):
    return {"total": 2.5 * state.quantity}


pydantic_builder = StateGraph(Order)
pydantic_builder.add_node("price", price)
pydantic_builder.add_edge(START, "price")
pydantic_builder.add_edge("price", END)
pydantic_graph = pydantic_builder.compile()


# -- a subgraph as a node, sharing the state's keys ---------------------------------------------------------
class ParentState(TypedDict):
    question: str
    notes: Annotated[list, operator.add]
    answer: str


def research(state: ParentState):
    return {"notes": [f"looked up {state['question']}"]}


def summarise(state: ParentState):
    return {"notes": ["summarised"]}


sub_builder = StateGraph(ParentState)
sub_builder.add_node("research", research)
sub_builder.add_node("summarise", summarise)
sub_builder.add_edge(START, "research")
sub_builder.add_edge("research", "summarise")
researcher = sub_builder.compile()


def write_answer(state: ParentState):
    return {"answer": " / ".join(state["notes"])}


parent_builder = StateGraph(ParentState)
parent_builder.add_node("researcher", researcher)
parent_builder.add_node("write_answer", write_answer)
parent_builder.add_edge(START, "researcher")
parent_builder.add_edge("researcher", "write_answer")
parent_builder.add_edge("write_answer", END)
subgraph_graph = parent_builder.compile()


# -- parallel branches (fan-out, fan-in) --------------------------------------------------------------------
class FanState(TypedDict):
    aggregate: Annotated[list, operator.add]


def node(name):
    def run(state: FanState):
        return {"aggregate": [name]}

    return run


fan_builder = StateGraph(FanState)
for name in ("a", "b", "c", "d"):
    fan_builder.add_node(name, node(name))
fan_builder.add_edge(START, "a")
fan_builder.add_edge("a", "b")
fan_builder.add_edge("a", "c")
fan_builder.add_edge("b", "d")
fan_builder.add_edge("c", "d")
fan_builder.add_edge("d", END)
parallel_graph = fan_builder.compile()


# -- an interrupt inside a subgraph, two interrupts in one step ---------------------------------------------
def approve(state: MessagesState):
    answer = interrupt({"question": "approve the plan?", "plan": state["messages"][-1].content})
    return {"messages": [{"role": "user", "content": f"approved: {answer}"}]}


inner = StateGraph(MessagesState)
inner.add_node("approve", approve)
inner.add_edge(START, "approve")
outer = StateGraph(MessagesState)
outer.add_node("review", inner.compile())
outer.add_edge(START, "review")
outer.add_edge("review", END)
nested_interrupt_graph = outer.compile(checkpointer=InMemorySaver())


def ask_legal(state: MessagesState):
    return {"messages": [{"role": "user", "content": f"legal: {interrupt('legal ok?')}"}]}


def ask_finance(state: MessagesState):
    return {"messages": [{"role": "user", "content": f"finance: {interrupt('budget ok?')}"}]}


two = StateGraph(MessagesState)
two.add_node("ask_legal", ask_legal)
two.add_node("ask_finance", ask_finance)
two.add_edge(START, "ask_legal")
two.add_edge(START, "ask_finance")
two_interrupts_graph = two.compile(checkpointer=InMemorySaver())
