"""Prompt management with the SDK's names (``get_prompt``, ``create_prompt``, ``update_prompt``).

Templates are checked against the official SDK's prompt clients; prompts live in the local store without keys,
in Langfuse's prompts API with keys (a real ``lftrace serve`` subprocess plays Langfuse), and the official SDK
runs unchanged against ``lftrace serve``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder, PromptTemplate

from lftrace import Langfuse
from lftrace.errors import BackendError, ConfigError, InputError
from lftrace.langchain import CallbackHandler
from lftrace.prompts import ChatPromptClient, PromptNotFound, TextPromptClient
from serve_process import ServeProcess
from support.fake_models import ToolCallingFakeModel

TEMPLATES = [
    "As a {{criticlevel}} critic, do you like {{movie}}?",
    "{{ spaced }} and {{missing}} and {{a}}{{a}}",
    'Answer as JSON: {"answer": "{{answer}}", "n": {"k": 1}}',
    "Single braces stay LangChain variables: {language}; none: {{}}",
    "No variables at all.",
    "{{unclosed",
]


@pytest.mark.parametrize("template", TEMPLATES)
def test_text_templates_compile_as_the_official_sdk_s(template):
    from langfuse.api import Prompt_Text
    from langfuse.model import TextPromptClient as Official

    data = {"name": "p", "version": 3, "prompt": template, "config": {"t": 1}, "labels": ["production"], "tags": []}
    ours, theirs = TextPromptClient({**data, "type": "text"}), Official(Prompt_Text(**data, type="text"))
    values = {"criticlevel": "expert", "movie": "Dune 2", "spaced": 1, "a": None, "answer": "yes"}
    assert ours.compile(**values) == theirs.compile(**values)
    assert ours.compile() == theirs.compile()
    assert ours.variables == theirs.variables
    assert ours.get_langchain_prompt() == theirs.get_langchain_prompt()
    assert ours.get_langchain_prompt(movie="Up") == theirs.get_langchain_prompt(movie="Up")
    assert (ours.name, ours.version, ours.config, ours.labels) == ("p", 3, {"t": 1}, ["production"])


def test_chat_templates_and_placeholders_compile_as_the_official_sdk_s():
    from langfuse.api import Prompt_Chat
    from langfuse.model import ChatPromptClient as Official

    messages = [
        {"role": "system", "content": "You are a {{role}} assistant."},
        {"type": "placeholder", "name": "history"},
        {"role": "user", "content": '{{question}} as JSON: {"a": 1}'},
    ]
    data = {"name": "chat", "version": 1, "prompt": messages, "config": {}, "labels": [], "tags": []}
    ours, theirs = ChatPromptClient({**data, "type": "chat"}), Official(Prompt_Chat(**data, type="chat"))
    history = [{"role": "user", "content": "hi {{role}}"}, {"role": "assistant", "content": "hello", "name": "bot"}]
    assert ours.compile(role="kind", question="Why?", history=history) == theirs.compile(
        role="kind", question="Why?", history=history
    )
    assert ours.compile(role="kind") == theirs.compile(role="kind")  # the placeholder is kept
    assert ours.variables == theirs.variables == ["role", "question"]
    assert ours.get_langchain_prompt(history=history) == theirs.get_langchain_prompt(history=history)
    unresolved = ours.get_langchain_prompt()
    assert isinstance(unresolved[1], MessagesPlaceholder) and unresolved[1].variable_name == "history"
    assert [m for i, m in enumerate(unresolved) if i != 1] == [
        m for i, m in enumerate(theirs.get_langchain_prompt()) if i != 1
    ]


def test_prompts_live_in_the_local_store_without_keys_and_link_their_generations(isolated_env):
    langfuse = Langfuse(public_key="")
    first = langfuse.create_prompt(
        name="movie-critic",
        prompt="As a {{criticlevel}} critic, do you like {{movie}}?",
        labels=["production"],
        tags=["reviews"],
        config={"model": "gpt-4o-mini", "temperature": 0.2},
    )
    assert (first.version, first.labels, first.tags, first.is_fallback) == (
        1,
        ["production", "latest"],
        ["reviews"],
        False,
    )
    second = langfuse.create_prompt(name="movie-critic", prompt="Do you like {{movie}}?", commit_message="shorter")
    assert (second.version, second.labels, second.tags, second.commit_message) == (
        2,
        ["latest"],
        ["reviews"],
        "shorter",
    )
    assert langfuse.get_prompt("movie-critic").version == 1  # "production" by default
    assert langfuse.get_prompt("movie-critic", label="latest").version == 2
    assert langfuse.get_prompt("movie-critic", version=1).labels == ["production"]  # "latest" moved on

    promoted = langfuse.update_prompt(name="movie-critic", version=2, new_labels=["production"])
    assert promoted.labels == ["latest", "production"]
    assert langfuse.get_prompt("movie-critic").compile(movie="Dune 2") == "Do you like Dune 2?"
    assert langfuse.get_prompt("movie-critic", version=1).labels == []

    with pytest.raises(PromptNotFound, match="no prompt 'nope' labelled 'production' in the local store"):
        langfuse.get_prompt("nope")
    with pytest.raises(InputError, match="is a text prompt: a new version must be one too"):
        langfuse.create_prompt(name="movie-critic", type="chat", prompt=[{"role": "user", "content": "x"}])
    with pytest.raises(ValueError, match="not both"):
        langfuse.get_prompt("movie-critic", version=1, label="production")
    fallback = langfuse.get_prompt("nope", fallback="Offline {{movie}}")
    assert fallback.is_fallback and fallback.compile(movie="Up") == "Offline Up"

    # a LangChain prompt made from it links its generation to the prompt; a fallback links nothing
    for prompt in (langfuse.get_prompt("movie-critic"), fallback):
        template = PromptTemplate.from_template(prompt.get_langchain_prompt(), metadata={"langfuse_prompt": prompt})
        (template | ToolCallingFakeModel()).invoke({"movie": "Dune 2"}, config={"callbacks": [CallbackHandler()]})
        langfuse.flush()
        (generation,) = [o for o in langfuse.get_trace("last").observations if o.type == "GENERATION"]
        linked = (generation.prompt_name, generation.prompt_version)
        assert linked == (("movie-critic", 2) if prompt is not fallback else (None, None))

    chat = langfuse.create_prompt(
        name="support",
        type="chat",
        prompt=[{"role": "system", "content": "You help with {{product}}."}, {"type": "placeholder", "name": "chat"}],
        labels=["production"],
    )
    template = ChatPromptTemplate.from_messages(langfuse.get_prompt("support", type="chat").get_langchain_prompt())
    filled = template.invoke({"product": "lftrace", "chat": [("user", "hi")]}).to_messages()
    assert [(m.type, m.content) for m in filled] == [("system", "You help with lftrace."), ("human", "hi")]
    assert chat.variables == ["product"]


_OFFICIAL_PROMPT_APP = """
import sys
from langfuse import Langfuse

langfuse = Langfuse(public_key="pk-lf-any", secret_key="sk-lf-any", base_url=sys.argv[1])
langfuse.create_prompt(name="serve-critic", prompt="Do you like {{movie}}?", labels=["production"], config={"m": 1})
langfuse.create_prompt(name="serve-critic", prompt="v2 {{movie}}", labels=["staging"])
langfuse.create_prompt(
    name="serve-chat", type="chat", prompt=[{"role": "system", "content": "Be {{tone}}"}], labels=["production"]
)
prompt = langfuse.get_prompt("serve-critic")
staging = langfuse.get_prompt("serve-critic", label="staging")
chat = langfuse.get_prompt("serve-chat", type="chat")
print("TEXT", prompt.version, prompt.compile(movie="Up"), prompt.config, sorted(prompt.labels))
print("STAGING", staging.version, staging.compile(movie="Up"))
print("CHAT", type(chat).__name__, chat.compile(tone="brief"))
langfuse.update_prompt(name="serve-critic", version=2, new_labels=["production"])
print("PROMOTED", langfuse.get_prompt("serve-critic", cache_ttl_seconds=0).version)
listed = langfuse.api.prompts.list()
print("LIST", sorted((p.name, tuple(p.versions)) for p in listed.data))
missing = langfuse.get_prompt("serve-nope", fallback="fallback {{x}}")
print("FALLBACK", missing.is_fallback)
"""


@pytest.fixture
def server(tmp_path):
    with ServeProcess(tmp_path / "serve.db") as proc:
        yield proc


def test_the_official_sdk_s_prompt_management_works_against_lftrace_serve(server, tmp_path):
    ran = server.run_sdk_program(tmp_path / "prompt_app.py", _OFFICIAL_PROMPT_APP, quiet=False)  # logs the fallback
    lines = dict(line.split(" ", 1) for line in ran.stdout.strip().splitlines())
    assert lines["TEXT"] == "1 Do you like Up? {'m': 1} ['production']"
    assert lines["STAGING"] == "2 v2 Up"
    assert lines["CHAT"] == "ChatPromptClient [{'role': 'system', 'content': 'Be brief'}]"
    assert lines["PROMOTED"] == "2"
    assert lines["LIST"] == "[('serve-chat', (1,)), ('serve-critic', (1, 2))]"
    assert lines["FALLBACK"] == "True"  # a 404 from serve, as from Langfuse


def test_with_langfuse_keys_prompts_come_from_langfuse_cached_and_kept_while_it_is_down(
    isolated_env, tmp_path, monkeypatch
):
    with ServeProcess(tmp_path / "langfuse.db") as langfuse_server:  # plays Langfuse: its prompts API
        langfuse = Langfuse(public_key="pk-lf-any", secret_key="sk-lf-any", base_url=langfuse_server.url, timeout=2)
        created = langfuse.create_prompt(name="remote", prompt="Hi {{name}}", labels=["production"])
        assert created.version == 1
        assert langfuse.get_prompt("remote", cache_ttl_seconds=1).compile(name="Ada") == "Hi Ada"
        from langfuse.api.client import LangfuseAPI  # what the official SDK sees on the same server

        api = LangfuseAPI(base_url=langfuse_server.url, username="pk-lf-any", password="sk-lf-any")
        assert api.prompts.get("remote").prompt == "Hi {{name}}"
        # a prompt in a folder: its name is one URL-encoded path segment
        langfuse.create_prompt(name="team/critic", prompt="v1", labels=["production"])
        langfuse.create_prompt(name="team/critic", prompt="v2")
        assert langfuse.update_prompt(name="team/critic", version=2, new_labels=["production"]).version == 2
        assert langfuse.get_prompt("team/critic", cache_ttl_seconds=0).prompt == "v2"
        assert api.prompts.get("team/critic", label="latest").version == 2
        # the default time a prompt is kept: 60 s, or LANGFUSE_PROMPT_CACHE_DEFAULT_TTL_SECONDS
        langfuse.create_prompt(name="kept", prompt="one", labels=["production"])
        assert langfuse.get_prompt("kept").prompt == "one"
        api.prompts.create(request={"name": "kept", "prompt": "two", "labels": ["production"], "type": "text"})
        assert langfuse.get_prompt("kept").prompt == "one"  # changed elsewhere: this process keeps its copy
        monkeypatch.setenv("LANGFUSE_PROMPT_CACHE_DEFAULT_TTL_SECONDS", "0")
        fresh = Langfuse(public_key="pk-lf-any", secret_key="sk-lf-any", base_url=langfuse_server.url, timeout=2)
        assert fresh.get_prompt("kept").prompt == "two" and fresh.get_prompt("kept").version == 2
        monkeypatch.setenv("LANGFUSE_PROMPT_CACHE_DEFAULT_TTL_SECONDS", "a minute")
        with pytest.raises(ConfigError, match="LANGFUSE_PROMPT_CACHE_DEFAULT_TTL_SECONDS"):
            Langfuse(public_key="pk-lf-any", secret_key="sk-lf-any", base_url=langfuse_server.url)
        monkeypatch.delenv("LANGFUSE_PROMPT_CACHE_DEFAULT_TTL_SECONDS")
        fresh.shutdown()
    assert not Path(isolated_env).exists() or Langfuse(public_key="").store.get_prompt("remote") is None  # not local

    # Langfuse is down: the cached copy is served (stale after 1 s: still served, refreshed in the background)
    assert langfuse.get_prompt("remote", cache_ttl_seconds=1).compile(name="Bo") == "Hi Bo"
    time.sleep(1.1)
    assert langfuse.get_prompt("remote", cache_ttl_seconds=1).version == 1
    with pytest.raises(BackendError, match="cannot connect to Langfuse"):
        langfuse.get_prompt("remote", cache_ttl_seconds=0, max_retries=0)  # no cache: the error
    offline = langfuse.get_prompt("other", max_retries=0, fallback="Hello {{name}}")
    assert offline.is_fallback and offline.compile(name="Cy") == "Hello Cy"


def _lftrace(*args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None):
    command = [str(Path(sys.executable).parent / "lftrace"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=cwd, env=env, input=stdin)


def test_lftrace_prompts_creates_lists_and_shows_them(isolated_env, tmp_path):
    (tmp_path / "critic.txt").write_text("As a {{criticlevel}} critic, do you like {{movie}}?\n")
    (tmp_path / "support.json").write_text(
        '[{"role": "system", "content": "You help with {{product}}."}, {"type": "placeholder", "name": "chat"}]'
    )
    made = _lftrace(
        "prompts", "movie-critic", "--create", "critic.txt", "--label", "production", "--tag", "reviews",
        "--config", '{"model": "gpt-4o-mini"}', cwd=tmp_path,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == "created movie-critic version 1 (production, latest)"
    assert (
        _lftrace("prompts", "support", "--create", "support.json", "--label", "production", cwd=tmp_path).returncode
        == 0
    )
    second = _lftrace("prompts", "movie-critic", "--create", "-", "-m", "shorter", cwd=tmp_path, stdin="v2 {{movie}}\n")
    assert second.stdout.strip() == "created movie-critic version 2 (latest)"

    listed = _lftrace("prompts", cwd=tmp_path)  # piped: tab-separated
    assert listed.stdout.splitlines() == [
        "name\ttype\tversions\tlabels\ttags",
        "movie-critic\ttext\t1,2\tproduction,latest\treviews",
        "support\tchat\t1\tproduction,latest\t",
    ]
    shown = _lftrace("prompts", "movie-critic", cwd=tmp_path)  # the "production" version, as get_prompt gives it
    assert shown.stdout.splitlines() == [
        "movie-critic  version 1  text  labels production  tags reviews",
        'config {"model": "gpt-4o-mini"}',
        "As a {{criticlevel}} critic, do you like {{movie}}?",
    ]
    chat = _lftrace("prompts", "support", cwd=tmp_path)
    assert chat.stdout.splitlines()[1:] == ["system: You help with {{product}}.", "[placeholder chat]"]
    latest = json.loads(_lftrace("prompts", "movie-critic", "--label", "latest", "--json", cwd=tmp_path).stdout)
    assert (latest["version"], latest["prompt"], latest["commitMessage"]) == (2, "v2 {{movie}}", "shorter")
    # what the SDK sees is the same store
    assert Langfuse(public_key="").get_prompt("movie-critic", version=2).compile(movie="Up") == "v2 Up"


@pytest.mark.parametrize(
    ("args", "code", "why"),
    [
        (["prompts", "nope"], 4, "no prompt 'nope' labelled 'production' in the local store"),
        (["prompts", "--create", "critic.txt"], 2, "--create makes a version of a prompt: name it"),
        (["prompts", "p", "--create", "missing.txt"], 2, "cannot read missing.txt"),
        (["prompts", "p", "--create", "critic.txt", "--config", "[1]"], 2, "--config must be a JSON object"),
        (["prompts", "p", "--label", "a", "--label", "b"], 2, "show one version"),
    ],
)
def test_lftrace_prompts_mistakes_are_one_line(isolated_env, tmp_path, args, code, why):
    (tmp_path / "critic.txt").write_text("hi")
    ran = _lftrace(*args, cwd=tmp_path)
    assert ran.returncode == code, ran.stderr
    (line,) = ran.stderr.strip().splitlines()
    assert why in line


def test_lftrace_prompts_with_langfuse_keys_manages_langfuse_s_prompts(tmp_path):
    with ServeProcess(tmp_path / "langfuse.db") as langfuse_server:
        env = {
            **os.environ,
            "LANGFUSE_PUBLIC_KEY": "pk-lf-any",
            "LANGFUSE_SECRET_KEY": "sk-lf-any",
            "LANGFUSE_BASE_URL": langfuse_server.url,
        }
        (tmp_path / "p.txt").write_text("Hello {{name}}")
        made = _lftrace("prompts", "greeting", "--create", "p.txt", "--label", "production", cwd=tmp_path, env=env)
        assert made.returncode == 0, made.stderr
        listed = _lftrace("prompts", "--json", cwd=tmp_path, env=env)
        assert [(p["name"], p["versions"]) for p in json.loads(listed.stdout)] == [("greeting", [1])]
        from langfuse.api.client import LangfuseAPI

        api = LangfuseAPI(base_url=langfuse_server.url, username="pk-lf-any", password="sk-lf-any")
        assert api.prompts.get("greeting").prompt == "Hello {{name}}"  # in "Langfuse", not in a local store
    down = _lftrace("prompts", cwd=tmp_path, env=env)
    assert down.returncode == 6 and "cannot connect to Langfuse" in down.stderr
