"""Retrieval-augmented generation: an in-memory retriever, a prompt and a model, taking a plain question.

    lftrace run sample_graphs/rag.py:chain --input "How does lftrace store traces?"

The retriever ranks a few built-in documents by the words they share with the question: deterministic,
offline, and no vector store dependency (langchain_core's ``InMemoryVectorStore`` needs numpy).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnablePassthrough

try:
    from sample_graphs._models import get_chat_model
except ImportError:  # loaded by file path from outside the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from sample_graphs._models import get_chat_model

_WORD_RE = re.compile(r"[a-z0-9]+")
_STOPWORDS = {"a", "an", "the", "is", "are", "what", "how", "does", "do", "of", "to", "in", "and", "it", "for", "with"}


DOCUMENTS = [
    Document(
        page_content="Langfuse is an open-source LLM engineering platform. It records traces of LLM calls "
        "so teams can monitor cost and latency and debug their applications.",
        metadata={"source": "langfuse.md"},
    ),
    Document(
        page_content="LangGraph builds stateful agents as graphs of nodes. Each node updates a shared state "
        "and edges decide which node runs next.",
        metadata={"source": "langgraph.md"},
    ),
    Document(
        page_content="lftrace stores traces in a local SQLite file. It exports them to Langfuse or any OTLP "
        "backend when keys are configured.",
        metadata={"source": "lftrace.md"},
    ),
    Document(
        page_content="LangChain callbacks report every chain, model and tool run. A callback handler turns "
        "them into nested spans of a trace.",
        metadata={"source": "callbacks.md"},
    ),
    Document(
        page_content="Short-lived scripts must call flush before they exit. Otherwise buffered traces may "
        "never reach the backend.",
        metadata={"source": "flush.md"},
    ),
]


def content_words(text: str) -> set[str]:
    return {word for word in _WORD_RE.findall(text.lower()) if word not in _STOPWORDS}


class KeywordRetriever(BaseRetriever):
    """The ``k`` documents sharing the most words with the query (ties keep the documents' order)."""

    documents: list[Document]
    k: int = 2

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        wanted = content_words(query)
        ranked = sorted(self.documents, key=lambda doc: -len(wanted & content_words(doc.page_content)))
        return ranked[: self.k]


retriever = KeywordRetriever(documents=DOCUMENTS, k=2)


def format_docs(docs: list[Document]) -> str:
    return "\n\n".join(doc.page_content for doc in docs)


prompt = ChatPromptTemplate.from_template(
    "Answer the question based only on the following context.\n\nContext:\n{context}\n\nQuestion: {question}"
)
llm = get_chat_model(temperature=0)
chain = {"context": retriever | format_docs, "question": RunnablePassthrough()} | prompt | llm | StrOutputParser()
