# Langfuse docs, example 3 (a LangGraph chatbot, streamed), verbatim but for the last line.
from typing import Annotated
from langchain_openai import ChatOpenAI
from langchain.messages import HumanMessage
from typing_extensions import TypedDict
from langgraph.graph import StateGraph
from langgraph.graph.message import add_messages

class State(TypedDict):
    messages: Annotated[list, add_messages]

graph_builder = StateGraph(State)
llm = ChatOpenAI(model="gpt-4o", temperature=0.2)

def chatbot(state: State):
    return {"messages": [llm.invoke(state["messages"])]}

graph_builder.add_node("chatbot", chatbot)
graph_builder.set_entry_point("chatbot")
graph_builder.set_finish_point("chatbot")
graph = graph_builder.compile()

from langfuse.langchain import CallbackHandler
langfuse_handler = CallbackHandler()
for s in graph.stream({"messages": [HumanMessage(content="What is Langfuse?")]},
                      config={"callbacks": [langfuse_handler]}):
    print(s)
print("TRACE_ID", langfuse_handler.last_trace_id)
