from langgraph.graph import MessagesState


class AgentState(MessagesState):
    pass
