# Langfuse docs, example 1 (constructor arguments, an LCEL chain), verbatim but for the last lines.
from langfuse import Langfuse, get_client
from langfuse.langchain import CallbackHandler
from langchain_openai import ChatOpenAI
from langchain_core.prompts import ChatPromptTemplate

Langfuse(public_key="your-public-key", secret_key="your-secret-key",
         host="https://cloud.langfuse.com")  # optional: defaults to https://cloud.langfuse.com
langfuse = get_client()
langfuse_handler = CallbackHandler()

llm = ChatOpenAI(model_name="gpt-4o")
prompt = ChatPromptTemplate.from_template("Tell me a joke about {topic}")
chain = prompt | llm
response = chain.invoke({"topic": "cats"}, config={"callbacks": [langfuse_handler]})
print(response.content)
langfuse.flush()  # short-lived applications
print("TRACE_ID", langfuse_handler.last_trace_id)
