"""A chain that raises: the README's example of a failed run (the trace is saved with the error, exit 1).

lftrace run sample_graphs/failing.py:chain -i go
"""

from __future__ import annotations

from langchain_core.runnables import RunnableLambda


def check_budget(text: str) -> str:
    raise ZeroDivisionError("no budget left")


chain = RunnableLambda(lambda text: text) | RunnableLambda(check_budget)
