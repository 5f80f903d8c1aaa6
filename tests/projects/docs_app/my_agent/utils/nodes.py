"""The nodes of LangGraph's documented application structure, with a scripted model (offline, with usage)."""

import os

from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, SystemMessage
from langgraph.prebuilt import ToolNode

from my_agent.utils.tools import tools

USAGE = {"input_tokens": 42, "output_tokens": 9, "total_tokens": 51}
model = FakeMessagesListChatModel(
    responses=[
        AIMessage(
            "", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "call-1"}], usage_metadata=USAGE
        ),
        AIMessage("Sunny in Paris.", usage_metadata=USAGE),
    ]
)


def should_continue(state):
    return "tools" if state["messages"][-1].tool_calls else "end"


def call_model(state):
    persona = os.environ.get("AGENT_PERSONA", "(no persona: the project's env was not read)")
    return {"messages": [model.invoke([SystemMessage(persona), *state["messages"]])]}


tool_node = ToolNode(tools)
