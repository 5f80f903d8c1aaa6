"""A static breakpoint: the tool-calling agent stops before its ``tools`` node until someone lets it go on.

Compiled as LangGraph's breakpoints guide compiles it (``interrupt_before=["tools"]`` and an in-memory
checkpointer). The run returns at the breakpoint without raising; ``lftrace run`` records it as interrupted and
prints the command that continues the thread (LangGraph's ``graph.invoke(None, config)``):

    lftrace run sample_graphs/approval.py:graph --input "What is 6 times 7?"
    lftrace run sample_graphs/approval.py:graph --thread-id <printed id>
"""

from __future__ import annotations

import sys
from pathlib import Path

from langgraph.checkpoint.memory import MemorySaver

try:
    from sample_graphs.agent import TOOLS, build_agent
except ImportError:  # loaded by file path from outside the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from sample_graphs.agent import TOOLS, build_agent

graph = build_agent(
    TOOLS,
    name="approval",
    system_prompt="You are a helpful assistant. Use the tools when they help.",
    checkpointer=MemorySaver(),
    interrupt_before=["tools"],
)
