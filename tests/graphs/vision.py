"""A vision app as LangChain's multimodal how-to writes one: a chat model asked about an image sent inline
(an OpenAI-style ``image_url`` data URI, LangChain's standard base64 block, an Anthropic-style block)."""

from __future__ import annotations

import base64
import random
from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from sample_graphs._models import FakeChatModel

PNG = b"\x89PNG\r\n\x1a\n" + random.Random(7).randbytes(30_000)  # what a screenshot weighs, give or take
JPEG = b"\xff\xd8\xff\xe0" + random.Random(8).randbytes(12_000)
PNG_B64 = base64.b64encode(PNG).decode()
JPEG_B64 = base64.b64encode(JPEG).decode()


def question(text: str = "What is in these pictures?") -> dict[str, Any]:
    return {
        "messages": [
            HumanMessage(
                content=[
                    {"type": "text", "text": text},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
                    {"type": "image", "source_type": "base64", "mime_type": "image/jpeg", "data": JPEG_B64},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
                ]
            )
        ]
    }


def build_graph() -> Any:
    llm = FakeChatModel()

    def look(state: MessagesState) -> dict[str, Any]:
        return {"messages": [llm.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("look", look)
    builder.add_edge(START, "look")
    builder.add_edge("look", END)
    return builder.compile()


graph = build_graph()
