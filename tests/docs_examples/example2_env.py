# Langfuse docs, example 2 (keys from .env), with example 1's chain so that it runs.
from langfuse.langchain import CallbackHandler
from langchain_openai import ChatOpenAI
from langchain_core.prompts import ChatPromptTemplate

chain = ChatPromptTemplate.from_template("Answer: {input}") | ChatOpenAI(model_name="gpt-4o")
langfuse_handler = CallbackHandler()
chain.invoke({"input": "<user_input>"}, config={"callbacks": [langfuse_handler]})
print("TRACE_ID", langfuse_handler.last_trace_id)
