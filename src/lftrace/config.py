"""Settings: constructor argument > environment variable > ``.env`` > default, resolved once, here.

Every environment variable lftrace reads is a constant in this module; the
README's configuration table lists the same names (a test keeps them in step).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from .errors import ConfigError

# Langfuse SDK names (the official SDK reads the same ones)
PUBLIC_KEY = "LANGFUSE_PUBLIC_KEY"
SECRET_KEY = "LANGFUSE_SECRET_KEY"
BASE_URL = "LANGFUSE_BASE_URL"
HOST = "LANGFUSE_HOST"  # older name of LANGFUSE_BASE_URL, still accepted
ENVIRONMENT = "LANGFUSE_TRACING_ENVIRONMENT"
RELEASE = "LANGFUSE_RELEASE"
SAMPLE_RATE = "LANGFUSE_SAMPLE_RATE"
TRACING_ENABLED = "LANGFUSE_TRACING_ENABLED"
FLUSH_AT = "LANGFUSE_FLUSH_AT"
FLUSH_INTERVAL = "LANGFUSE_FLUSH_INTERVAL"
TIMEOUT = "LANGFUSE_TIMEOUT"
DEBUG = "LANGFUSE_DEBUG"
# lftrace's own
STORE = "LFTRACE_STORE"
# OpenTelemetry exporter names (the OTel SDKs read the same ones)
OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
OTLP_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
OTLP_HEADERS = "OTEL_EXPORTER_OTLP_HEADERS"
OTLP_TRACES_HEADERS = "OTEL_EXPORTER_OTLP_TRACES_HEADERS"

ALL_ENV_VARS = (
    PUBLIC_KEY,
    SECRET_KEY,
    BASE_URL,
    HOST,
    ENVIRONMENT,
    RELEASE,
    SAMPLE_RATE,
    TRACING_ENABLED,
    FLUSH_AT,
    FLUSH_INTERVAL,
    TIMEOUT,
    DEBUG,
    STORE,
    OTLP_ENDPOINT,
    OTLP_TRACES_ENDPOINT,
    OTLP_HEADERS,
    OTLP_TRACES_HEADERS,
)

DEFAULT_BASE_URL = "https://cloud.langfuse.com"
_ENVIRONMENT_RE = re.compile(r"^[a-z0-9_-]{1,40}$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def default_store_path() -> Path:
    """``<user data dir>/lftrace/traces.db`` (XDG on Linux, the usual places elsewhere)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "lftrace" / "traces.db"


def resolve_store(
    argument: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    dotenv: Mapping[str, str] | None = None,
) -> Path:
    """The store path alone, as ``Settings.resolve`` picks it: argument > LFTRACE_STORE > ``.env`` > default.

    ``lftrace list``/``show`` need only this: a bad unrelated setting (say LANGFUSE_SAMPLE_RATE=abc) must not
    stop them.
    """
    if argument is not None and argument != "":
        return Path(argument).expanduser()
    env = os.environ if environ is None else environ
    value = env.get(STORE) or (read_dotenv() if dotenv is None else dotenv).get(STORE)
    return Path(value).expanduser() if value else default_store_path()


def mask_secret(value: str | None) -> str:
    """``sk-lf-1234abcd...`` -> ``sk-lf-...abcd``: enough to tell keys apart, never enough to use one."""
    if not value:
        return "(not set)"
    prefix = ""
    for known in ("sk-lf-", "pk-lf-"):
        if value.startswith(known):
            prefix = known
    tail = value[-4:] if len(value) >= 12 else ""
    return f"{prefix}...{tail}" if tail else f"{prefix}***"


def read_dotenv(path: Path | None = None) -> dict[str, str]:
    """Values of ``.env`` in the current directory (never overriding the real environment)."""
    path = path or Path.cwd() / ".env"
    if not path.is_file():
        return {}
    from dotenv import dotenv_values  # small, but only needed when a .env exists

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def parse_headers(text: str | None) -> dict[str, str]:
    """``k1=v1,k2=v2`` (values URL-encoded), the OTEL_EXPORTER_OTLP_HEADERS format."""
    headers: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"{OTLP_HEADERS}: '{key.strip()}' is not key=value (expected e.g. 'authorization=Bearer%20token')"
            )
        headers[unquote(key.strip()).lower()] = unquote(value.strip())
    return headers


@dataclass(frozen=True)
class Settings:
    public_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    base_url: str = DEFAULT_BASE_URL
    environment: str = "default"
    release: str | None = None
    sample_rate: float = 1.0
    tracing_enabled: bool = True
    flush_at: int = 512
    flush_interval: float = 5.0
    timeout: float = 5.0
    debug: bool = False
    store: Path = field(default_factory=default_store_path)
    otlp_endpoint: str | None = None  # full URL of an OTLP/HTTP traces endpoint
    otlp_headers: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def langfuse_enabled(self) -> bool:
        """Export to Langfuse only when both keys are set (like the official SDK)."""
        return bool(self.public_key and self.secret_key)

    @property
    def langfuse_otlp_url(self) -> str:
        return self.base_url.rstrip("/") + "/api/public/otel/v1/traces"

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
        return (
            f"Settings(public_key={mask_secret(self.public_key)!r}, secret_key={mask_secret(self.secret_key)!r}, "
            f"{shown}, otlp_headers={ {k: '***' for k in self.otlp_headers} })"
        )

    def masked(self) -> dict[str, Any]:
        """Every setting, printable: keys and header values masked."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["public_key"] = mask_secret(self.public_key)
        out["secret_key"] = mask_secret(self.secret_key)
        out["otlp_headers"] = {k: "***" for k in self.otlp_headers}
        out["store"] = str(self.store)
        return out

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @classmethod
    def resolve(
        cls,
        arguments: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        dotenv: Mapping[str, str] | None = None,
    ) -> Settings:
        """Argument > environment > .env > default; invalid values raise ConfigError naming the setting."""
        args = {k: v for k, v in (arguments or {}).items() if v is not None}
        env = dict(read_dotenv() if dotenv is None else dotenv)
        env.update(os.environ if environ is None else environ)

        def pick(name: str, *env_names: str) -> tuple[Any, str] | None:
            if name in args:
                return args[name], name
            for env_name in env_names:
                value = env.get(env_name)
                if value not in (None, ""):
                    return value, env_name
            return None

        values: dict[str, Any] = {}
        for name, env_names in (("public_key", (PUBLIC_KEY,)), ("secret_key", (SECRET_KEY,)), ("release", (RELEASE,))):
            got = pick(name, *env_names)
            if got:
                values[name] = str(got[0])
        if "base_url" not in args and "host" in args:  # the SDK's older argument name
            args["base_url"] = args.pop("host")
        got = pick("base_url", BASE_URL, HOST)
        if got:
            values["base_url"] = _check_url(str(got[0]), got[1])
        got = pick("environment", ENVIRONMENT)
        if got:
            values["environment"] = _check_environment(str(got[0]), got[1])
        got = pick("sample_rate", SAMPLE_RATE)
        if got:
            values["sample_rate"] = _number(got, float, low=0.0, high=1.0)
        for name, env_name in (("tracing_enabled", TRACING_ENABLED), ("debug", DEBUG)):
            got = pick(name, env_name)
            if got:
                values[name] = _boolean(got)
        got = pick("flush_at", FLUSH_AT)
        if got:
            values["flush_at"] = _number(got, int, low=1)
        for name, env_name in (("flush_interval", FLUSH_INTERVAL), ("timeout", TIMEOUT)):
            got = pick(name, env_name)
            if got:
                values[name] = _number(got, float, low=0.0, exclusive_low=True)
        values["store"] = resolve_store(args.get("store"), env, {})
        got = pick("otlp_endpoint", OTLP_TRACES_ENDPOINT)
        if got:
            values["otlp_endpoint"] = _check_url(str(got[0]), got[1])
        elif (base := pick("otlp_base_endpoint", OTLP_ENDPOINT)) is not None:
            values["otlp_endpoint"] = _check_url(str(base[0]), base[1]).rstrip("/") + "/v1/traces"
        if "otlp_headers" in args:
            values["otlp_headers"] = {str(k).lower(): str(v) for k, v in dict(args["otlp_headers"]).items()}
        else:
            headers = parse_headers(env.get(OTLP_HEADERS))
            headers.update(parse_headers(env.get(OTLP_TRACES_HEADERS)))
            values["otlp_headers"] = headers
        return cls(**values)


def _check_url(value: str, source: str) -> str:
    parsed = urlparse(value.strip())
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{source}: '{value}' is not an http(s) URL (expected e.g. {DEFAULT_BASE_URL})")
    return value.strip().rstrip("/")


def _check_environment(value: str, source: str) -> str:
    if not _ENVIRONMENT_RE.match(value) or value.startswith("langfuse"):
        raise ConfigError(
            f"{source}: '{value}' is not a valid environment "
            "(use at most 40 lowercase letters, digits, '-' or '_', not starting with 'langfuse')"
        )
    return value


def _boolean(got: tuple[Any, str]) -> bool:
    value, source = got
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{source}: '{value}' is not a boolean (use true or false)")


def _number(
    got: tuple[Any, str],
    kind: type[int] | type[float],
    *,
    low: float | None = None,
    high: float | None = None,
    exclusive_low: bool = False,
) -> Any:
    value, source = got
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: '{value}' is not a{'n integer' if kind is int else ' number'}") from None
    too_low = low is not None and (number <= low if exclusive_low else number < low)
    if too_low or (high is not None and number > high):
        bounds = (
            f"between {low} and {high}"
            if high is not None
            else f"{'greater than' if exclusive_low else 'at least'} {low}"
        )
        raise ConfigError(f"{source}: {value!r} is out of range (must be {bounds})")
    return number
