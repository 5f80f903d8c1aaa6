from langgraph.graph import END, StateGraph

from my_agent.utils.nodes import call_model, should_continue, tool_node
from my_agent.utils.state import AgentState

workflow = StateGraph(AgentState)
workflow.add_node("agent", call_model)
workflow.add_node("action", tool_node)
workflow.set_entry_point("agent")
workflow.add_conditional_edges("agent", should_continue, {"tools": "action", "end": END})
workflow.add_edge("action", "agent")

graph = workflow.compile()
