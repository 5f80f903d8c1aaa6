"""The Langfuse docs' first example: a prompt piped into a chat model.

lftrace run sample_graphs/joke_chain.py:chain --input '{"topic": "cats"}'
"""

from __future__ import annotations

import sys
from pathlib import Path

from langchain_core.prompts import ChatPromptTemplate

try:
    from sample_graphs._models import get_chat_model
except ImportError:  # loaded by file path from outside the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from sample_graphs._models import get_chat_model

llm = get_chat_model()
prompt = ChatPromptTemplate.from_template("Tell me a joke about {topic}")
chain = prompt | llm
