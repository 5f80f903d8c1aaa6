from typing import TypedDict

from langgraph.graph import StateGraph


class Echo(TypedDict):
    text: str


def make_graph(config):
    """A factory taking the run's config, as langgraph.json allows."""
    prefix = config.get("configurable", {}).get("prefix", "")

    def echo(state: Echo) -> Echo:
        return {"text": prefix + state["text"]}

    builder = StateGraph(Echo)
    builder.add_node("echo", echo)
    builder.set_entry_point("echo")
    return builder.compile()
