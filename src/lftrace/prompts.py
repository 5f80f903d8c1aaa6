"""Langfuse prompt management with the SDK's names: ``get_prompt``, ``create_prompt``, ``update_prompt``.

Prompts live where the traces go: in Langfuse (its public prompts API) when Langfuse keys are configured, else
in the local store, which ``lftrace serve`` offers to the official SDK on the same API. What comes back is a
``TextPromptClient`` or ``ChatPromptClient`` as the SDK's: ``compile(**values)`` fills ``{{variables}}``
(and a chat prompt's placeholders), ``get_langchain_prompt()`` gives LangChain's ``{variable}`` form, and
``metadata={"langfuse_prompt": prompt}`` on a LangChain prompt links the generations made from it.

A prompt fetched from Langfuse is kept ``cache_ttl_seconds`` (60 by default; 0 fetches every time); once stale
it is still returned while a background thread fetches it again. A prompt that cannot be fetched (and is not
cached) gives the ``fallback`` (``is_fallback=True``: it links nothing), else the error. No LangChain at import.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import ExitStatus, InputError, LftraceError

log = logging.getLogger("lftrace")

DEFAULT_TTL_S = 60


_VARIABLE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_LANGCHAIN_VARIABLE = re.compile(r"\{\{\s*(\w+)\s*\}\}")


class PromptNotFound(LftraceError):
    """No prompt of that name (with that version or label)."""

    exit_code = ExitStatus.NOT_FOUND


# -- templates ---------------------------------------------------------------------------------------------


def variables_of(text: str) -> list[str]:
    """The ``{{name}}`` variables of a template, in order (names stripped of spaces)."""
    return [match.group(1).strip() for match in _VARIABLE.finditer(text)]


def compile_text(text: str, values: Mapping[str, Any]) -> str:
    """``{{name}}`` replaced by ``str(values[name])`` (None: empty); variables not given stay as they are."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        if name not in values:
            return match.group(0)
        value = values[name]
        return "" if value is None else str(value)

    return _VARIABLE.sub(fill, text)


def langchain_text(text: str) -> str:
    """A Langfuse template as a LangChain f-string template: ``{{name}}`` -> ``{name}``, and the braces of JSON
    in it (a ``{`` whose next non-blank character is a quote, with its ``}``) doubled so LangChain keeps them."""
    out: list[str] = []
    json_braces: list[bool] = []  # for each open single "{": is it JSON's?
    i, n = 0, len(text)
    while i < n:
        pair = text[i : i + 2]
        if pair in ("{{", "}}"):  # a variable's braces (or already escaped ones): as they are
            out.append(pair)
            i += 2
            continue
        char = text[i]
        if char == "{":
            after = text[i + 1 :].lstrip()[:1]
            json_braces.append(after in ("'", '"'))
            out.append("{{" if json_braces[-1] else "{")
        elif char == "}":
            out.append("}}" if json_braces and json_braces.pop() else "}")
        else:
            out.append(char)
        i += 1
    return _LANGCHAIN_VARIABLE.sub(r"{\1}", "".join(out))


# -- prompt clients --------------------------------------------------------------------------------------


class _PromptClient:
    def __init__(self, data: Mapping[str, Any], is_fallback: bool = False) -> None:
        self.name: str = data["name"]
        self.version: int = int(data.get("version") or 0)
        self.config: Any = data.get("config") if data.get("config") is not None else {}
        self.labels: list[str] = list(data.get("labels") or [])
        self.tags: list[str] = list(data.get("tags") or [])
        self.commit_message: str | None = data.get("commitMessage")
        self.is_fallback = is_fallback

    def __repr__(self) -> str:
        fallback = ", fallback" if self.is_fallback else ""
        return f"{type(self).__name__}(name={self.name!r}, version={self.version}{fallback})"


class TextPromptClient(_PromptClient):
    def __init__(self, data: Mapping[str, Any], is_fallback: bool = False) -> None:
        super().__init__(data, is_fallback)
        self.prompt: str = data["prompt"]

    def compile(self, **values: Any) -> str:
        return compile_text(self.prompt, values)

    @property
    def variables(self) -> list[str]:
        return variables_of(self.prompt)

    def get_langchain_prompt(self, **values: Any) -> str:
        """For ``PromptTemplate.from_template``; ``values`` given here are filled in first."""
        return langchain_text(compile_text(self.prompt, values) if values else self.prompt)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TextPromptClient) and _same(self, other) and self.prompt == other.prompt

    __hash__ = None  # type: ignore[assignment]


class ChatPromptClient(_PromptClient):
    def __init__(self, data: Mapping[str, Any], is_fallback: bool = False) -> None:
        super().__init__(data, is_fallback)
        self.prompt: list[dict[str, Any]] = [_chat_entry(entry) for entry in data["prompt"]]

    def compile(self, **values: Any) -> list[dict[str, Any]]:
        """The messages with their variables filled; a placeholder given a list of messages is replaced by them
        (their content compiled too), one not given is kept (``{"type": "placeholder", "name": ...}``)."""
        out: list[dict[str, Any]] = []
        unresolved = []
        for entry in self.prompt:
            if entry["type"] == "message":
                out.append({"role": entry["role"], "content": compile_text(entry["content"], values)})
                continue
            name = entry["name"]
            if name not in values:
                out.append(dict(entry))
                unresolved.append(name)
                continue
            given = values[name]
            if not isinstance(given, list):
                log.warning("lftrace: placeholder %r must be a list of chat messages, got %s", name, type(given))
                out.append({"role": "NOT_GIVEN", "content": str(given)})
                continue
            for message in given:
                if isinstance(message, Mapping):
                    content = compile_text(str(message.get("content", "")), values)
                    out.append({**message, "role": message.get("role", "NOT_GIVEN"), "content": content})
                else:
                    out.append({"role": "NOT_GIVEN", "content": str(message)})
        if unresolved:
            log.warning("lftrace: placeholders %s were not given to compile()", unresolved)
        return out

    @property
    def variables(self) -> list[str]:
        return [name for entry in self.prompt if entry["type"] == "message" for name in variables_of(entry["content"])]

    def get_langchain_prompt(self, **values: Any) -> list[Any]:
        """For ``ChatPromptTemplate.from_messages``: (role, template) pairs, and a ``MessagesPlaceholder`` for each
        placeholder not given here."""
        messages: list[Any] = []
        for entry in self.compile(**values):
            if entry.get("type") == "placeholder":
                from langchain_core.prompts import MessagesPlaceholder

                messages.append(MessagesPlaceholder(variable_name=entry["name"]))
            elif "role" in entry and "content" in entry:
                messages.append((entry["role"], langchain_text(entry["content"])))
        return messages

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ChatPromptClient) and _same(self, other) and self.prompt == other.prompt

    __hash__ = None  # type: ignore[assignment]


PromptClient = TextPromptClient | ChatPromptClient


def _same(a: _PromptClient, b: _PromptClient) -> bool:
    return a.name == b.name and a.version == b.version and a.config == b.config


def _chat_entry(entry: Any) -> dict[str, Any]:
    if isinstance(entry, Mapping) and entry.get("type") == "placeholder":
        return {"type": "placeholder", "name": str(entry["name"])}
    if isinstance(entry, Mapping) and "role" in entry and "content" in entry:
        return {"type": "message", "role": str(entry["role"]), "content": str(entry["content"])}
    raise InputError(f"a chat prompt's message needs a role and a content (or is a placeholder): {entry!r}")


def prompt_client(data: Mapping[str, Any], is_fallback: bool = False) -> PromptClient:
    """The client of a prompt in Langfuse's JSON (``Prompt``: name, version, type, prompt, config, labels, ...)."""
    return ChatPromptClient(data, is_fallback) if data.get("type") == "chat" else TextPromptClient(data, is_fallback)


def check_new_prompt(name: str, prompt: Any, type: str | None) -> str:
    """The type of a prompt about to be created, after checking it fits (InputError says why not)."""
    if not isinstance(name, str) or not name.strip():
        raise InputError("a prompt needs a name")
    kind = type or "text"
    if kind not in ("text", "chat"):
        raise InputError(f"prompt type {kind!r}: give 'text' or 'chat'")
    if kind == "text" and not isinstance(prompt, str):
        raise InputError(f"prompt {name!r}: a text prompt is a string (give type='chat' for a list of messages)")
    if kind == "chat":
        if not isinstance(prompt, list):
            raise InputError(f"prompt {name!r}: a chat prompt is a list of messages")
        for entry in prompt:
            _chat_entry(entry)
    return kind


# -- the cache of fetched prompts -------------------------------------------------------------------------


class PromptCache:
    """Prompts fetched from Langfuse, by (name, version, label); a stale one is refreshed in the background."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, int | None, str | None], tuple[PromptClient, float]] = {}
        self._refreshing: set[tuple[str, int | None, str | None]] = set()
        self._lock = threading.Lock()

    def get(
        self,
        key: tuple[str, int | None, str | None],
        fetch: Callable[[], PromptClient],
        ttl: float,
    ) -> PromptClient:
        """The cached prompt, else fetched (always when ``ttl`` is 0); a stale one is returned and refreshed in the
        background (while that fails, the stale copy stays)."""
        with self._lock:
            found = self._entries.get(key)
        if found is None or ttl <= 0:
            return self._store(key, fetch(), ttl)
        client, expires = found
        if time.monotonic() >= expires:
            self._refresh(key, fetch, ttl)
        return client

    def _store(self, key: tuple[str, int | None, str | None], client: PromptClient, ttl: float) -> PromptClient:
        if ttl > 0:
            with self._lock:
                self._entries[key] = (client, time.monotonic() + ttl)
        return client

    def _refresh(self, key: tuple[str, int | None, str | None], fetch: Callable[[], PromptClient], ttl: float) -> None:
        with self._lock:
            if key in self._refreshing:
                return
            self._refreshing.add(key)

        def work() -> None:
            try:
                self._store(key, fetch(), ttl)
            except Exception as exc:  # the stale copy stays; the next get tries again
                log.warning("lftrace: refreshing prompt %r failed: %s", key[0], exc)
            finally:
                with self._lock:
                    self._refreshing.discard(key)

        threading.Thread(target=work, name="lftrace-prompt-refresh", daemon=True).start()

    def forget(self, name: str | None = None) -> None:
        """Drop every cached prompt (or those of ``name``)."""
        with self._lock:
            for key in [k for k in self._entries if name is None or k[0] == name]:
                del self._entries[key]


def fallback_client(
    name: str, kind: str, fallback: str | Sequence[Mapping[str, Any]], version: int | None, label: str | None
) -> PromptClient:
    """What ``get_prompt(fallback=...)`` gives when the prompt cannot be had, as the SDK builds it."""
    data: dict[str, Any] = {
        "name": name,
        "type": kind,
        "prompt": fallback if kind == "text" else list(fallback),
        "version": version or 0,
        "config": {},
        "labels": [label] if label else [],
        "tags": [],
    }
    return prompt_client(data, is_fallback=True)


# -- the client's methods ---------------------------------------------------------------------------------


class PromptApi:
    """``Langfuse``'s prompt methods. Langfuse keys configured: Langfuse's prompts API; else the local store."""

    settings: Any  # config.Settings, from the client
    store: Any  # store.TraceStore, from the client
    _prompt_cache: PromptCache

    def _prompts_where(self) -> str:
        if self.settings.langfuse_enabled:
            from .config import redact_url

            return f"in Langfuse at {redact_url(self.settings.base_url)}"
        return f"in the local store {self.settings.store} (no Langfuse keys are set)"

    def get_prompt(
        self,
        name: str,
        *,
        version: int | None = None,
        label: str | None = None,
        type: str = "text",
        cache_ttl_seconds: int | None = None,
        fallback: str | Sequence[Mapping[str, Any]] | None = None,
        max_retries: int | None = None,
        fetch_timeout_seconds: int | None = None,
    ) -> PromptClient:
        """A prompt version: ``version``, else the one labelled ``label`` (default "production").

        From Langfuse, kept ``cache_ttl_seconds`` (``LANGFUSE_PROMPT_CACHE_DEFAULT_TTL_SECONDS``, else 60; 0 fetches
        every time), retried ``max_retries`` times (2,
        at most 4). When it cannot be had: a copy fetched before, else ``fallback``, else the error."""
        if version is not None and label is not None:
            raise ValueError("give a prompt's version or its label, not both")
        if not name:
            raise ValueError("a prompt needs a name")
        ttl = self.settings.prompt_cache_ttl if cache_ttl_seconds is None else cache_ttl_seconds
        try:
            if not self.settings.langfuse_enabled:
                return self._prompt_from_store(name, version, label)  # the store is the source: always current
            retries = min(max(2 if max_retries is None else max_retries, 0), 4)
            timeout = float(fetch_timeout_seconds or self.settings.timeout)
            return self._prompt_cache.get(
                (name, version, label), lambda: self._prompt_from_langfuse(name, version, label, retries, timeout), ttl
            )
        except Exception as exc:
            if not fallback:
                raise
            log.warning("lftrace: using the fallback of prompt %r: %s", name, exc)
            return fallback_client(name, type, fallback, version, label)

    def _prompt_from_store(self, name: str, version: int | None, label: str | None) -> PromptClient:
        data = self.store.get_prompt(name, version=version, label=label)
        if data is None:
            raise PromptNotFound(f"no prompt {_described(name, version, label)} {self._prompts_where()}")
        return prompt_client(data)

    def _prompt_from_langfuse(
        self, name: str, version: int | None, label: str | None, retries: int, timeout: float
    ) -> PromptClient:
        from .errors import BackendError
        from .exporters import langfuse_api

        for attempt in range(retries + 1):
            try:
                data = langfuse_api.get_prompt(self.settings, name, version=version, label=label, timeout=timeout)
                break
            except BackendError:
                if attempt == retries:
                    raise
                time.sleep(min(0.5 * 2**attempt, 10.0))
        if data is None:
            raise PromptNotFound(f"no prompt {_described(name, version, label)} {self._prompts_where()}")
        return prompt_client(data)

    def create_prompt(
        self,
        *,
        name: str,
        prompt: str | Sequence[Mapping[str, Any]],
        labels: Sequence[str] = (),
        tags: Sequence[str] | None = None,
        type: str | None = "text",
        config: Any = None,
        commit_message: str | None = None,
    ) -> PromptClient:
        """A new version of prompt ``name`` (its first when new), with ``labels`` ("production" makes it the one
        ``get_prompt(name)`` gives) and "latest"."""
        kind = check_new_prompt(name, prompt, type)
        body: Any = prompt if isinstance(prompt, str) else [dict(entry) for entry in prompt]
        if self.settings.langfuse_enabled:
            from .exporters import langfuse_api

            request = {"name": name, "prompt": body, "type": kind, "labels": list(labels), "config": config}
            request.update({"tags": list(tags) if tags is not None else None, "commitMessage": commit_message})
            data = langfuse_api.create_prompt(self.settings, request)
            self._prompt_cache.forget(name)
        else:
            data = self.store.create_prompt(
                name, kind, body, config=config, labels=labels, tags=tags, commit_message=commit_message
            )
        return prompt_client(data)

    def update_prompt(self, *, name: str, version: int, new_labels: Sequence[str] = ()) -> PromptClient:
        """Give a version more labels (a label moves from the version that had it)."""
        if self.settings.langfuse_enabled:
            from .exporters import langfuse_api

            data = langfuse_api.label_prompt(self.settings, name, version, list(new_labels))
            self._prompt_cache.forget(name)
        else:
            data = self.store.label_prompt(name, version, new_labels)
        if data is None:
            raise PromptNotFound(f"no prompt {_described(name, version, None)} {self._prompts_where()}")
        return prompt_client(data)

    def clear_prompt_cache(self) -> None:
        self._prompt_cache.forget()

    def list_prompts(self) -> list[dict[str, Any]]:
        """Every prompt (not in the SDK: ``lftrace prompts`` lists them), as Langfuse's ``PromptMeta``."""
        if self.settings.langfuse_enabled:
            from .exporters import langfuse_api

            return langfuse_api.list_prompts(self.settings)
        return list(self.store.list_prompts())


def _described(name: str, version: int | None, label: str | None) -> str:
    from .store import PROMPT_DEFAULT_LABEL

    if version is not None:
        return f"{name!r} version {version}"
    return f"{name!r} labelled {label or PROMPT_DEFAULT_LABEL!r}"
