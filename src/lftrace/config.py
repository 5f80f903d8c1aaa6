"""Settings: constructor argument > environment variable > ``.env`` > default, resolved once, here.

Every environment variable lftrace reads is a constant in this module; the
README's configuration table lists the same names (a test keeps them in step).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlparse, urlunparse

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
MEDIA_UPLOAD_ENABLED = "LANGFUSE_MEDIA_UPLOAD_ENABLED"  # false: images/files stay inline (data URIs) in the data
# lftrace's own
STORE = "LFTRACE_STORE"
DOTENV = "LFTRACE_DOTENV"  # 0/false: never read .env (read from the real environment only)
ALLOW_INSECURE_HTTP = "LFTRACE_ALLOW_INSECURE_HTTP"  # true: send keys over plain http to a non-local host
EXPORT_COST = "LFTRACE_EXPORT_COST"  # true: export lftrace's own cost (default: usage only, Langfuse prices)
EXPORT_PROCESS = "LFTRACE_EXPORT_PROCESS"  # true/false: export from a helper process / a thread (unset: by CPUs)
# OpenTelemetry exporter names (the OTel SDKs read the same ones)
OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
OTLP_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
OTLP_HEADERS = "OTEL_EXPORTER_OTLP_HEADERS"
OTLP_TRACES_HEADERS = "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
OTLP_COMPRESSION = "OTEL_EXPORTER_OTLP_COMPRESSION"
LANGFUSE_COMPRESSION = "LANGFUSE_OTEL_COMPRESSION"  # SDK 5: Langfuse's requests only, over the OTEL_* ones
LANGFUSE_EXPORT_PATH = "LANGFUSE_OTEL_TRACES_EXPORT_PATH"  # SDK 5: where on the host the spans go
PROMPT_CACHE_TTL = "LANGFUSE_PROMPT_CACHE_DEFAULT_TTL_SECONDS"  # how long get_prompt keeps a prompt by default
OTLP_TRACES_COMPRESSION = "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"

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
    MEDIA_UPLOAD_ENABLED,
    STORE,
    DOTENV,
    ALLOW_INSECURE_HTTP,
    EXPORT_COST,
    EXPORT_PROCESS,
    OTLP_ENDPOINT,
    OTLP_TRACES_ENDPOINT,
    OTLP_HEADERS,
    OTLP_TRACES_HEADERS,
    OTLP_COMPRESSION,
    OTLP_TRACES_COMPRESSION,
    LANGFUSE_COMPRESSION,
    LANGFUSE_EXPORT_PATH,
    PROMPT_CACHE_TTL,
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


# Variables that only the real environment may set: a .env in the current directory (maybe from a cloned repo)
# must not be able to turn its own loading off/on or allow plain-http key sending.
_ENVIRONMENT_ONLY = (DOTENV, ALLOW_INSECURE_HTTP)
# env var name -> the file it was copied from into os.environ (a .env, or a langgraph.json's env: for the CLI)
_FROM_DOTENV: dict[str, Path] = {}
_ANNOUNCED: set[str] = set()


def dotenv_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """False when LFTRACE_DOTENV is 0/false/no/off in the real environment."""
    value = (os.environ if environ is None else environ).get(DOTENV)
    return value is None or value.strip().lower() not in _FALSE - {""}


def dotenv_path() -> Path | None:
    """The ``.env`` lftrace reads (the current directory's), None when there is none or loading is off."""
    path = Path.cwd() / ".env"
    return path if dotenv_enabled() and path.is_file() else None


def read_dotenv(path: Path | None = None) -> dict[str, str]:
    """Values of ``.env`` in the current directory (never overriding the real environment); {} when turned off."""
    if path is None:
        path = dotenv_path()
        if path is None:
            return {}
    if not path.is_file():
        return {}
    from dotenv import dotenv_values  # small, but only needed when a .env exists

    return {k: v for k, v in dotenv_values(path).items() if v is not None and k not in _ENVIRONMENT_ONLY}


def load_dotenv_into_environ() -> Path | None:
    """For the CLI: copy ``.env`` values into ``os.environ`` where unset, remembering which came from it (so
    settings can say so). Returns the file read, None when there is none or LFTRACE_DOTENV=0."""
    path = dotenv_path()
    if path is None:
        return None
    fill_environ(read_dotenv(path), path)
    return path


def fill_environ(values: Mapping[str, str], source: Path) -> None:
    """Copy ``values`` (read from ``source``: a ``.env`` or a ``langgraph.json``) into ``os.environ`` where unset.

    The real environment wins; the variables only the real environment may set are left out.
    """
    for key, value in values.items():
        if key not in os.environ and key not in _ENVIRONMENT_ONLY:
            os.environ[key] = value
            _FROM_DOTENV[key] = source


def redact_url(url: str) -> str:
    """``url`` safe to print or store: a password in it and secret-looking query values shown as ``***``."""
    try:
        parsed = urlparse(url)
    except ValueError:
        return url
    netloc = parsed.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostport}" if ":" in userinfo else f"***@{hostport}"
    query = parsed.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_PARAM.search(k) for k, _ in pairs):
            query = urlencode([(k, "***" if _SECRET_PARAM.search(k) else v) for k, v in pairs], safe="*")
    if netloc == parsed.netloc and query == parsed.query:
        return url
    return urlunparse(parsed._replace(netloc=netloc, query=query))


_SECRET_PARAM = re.compile(r"key|token|secret|passw|pwd|auth|sig|session|credential", re.IGNORECASE)
_URL_IN_TEXT = re.compile(r"https?://[^\s'\"<>]+")


def redact_urls(text: str) -> str:
    """Every URL inside ``text`` (an error message, a server's answer) through ``redact_url``."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group()), text)


def is_loopback_host(host: str | None, *, subdomains: bool = True) -> bool:
    """``localhost`` (or, with ``subdomains``, a name under it), 127.0.0.0/8 or ::1: this machine. Where it guards
    access (`lftrace serve` without keys binds only to this machine) a name under localhost, which a hosts file
    may point anywhere, does not count."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or (subdomains and host.endswith(".localhost")):
        return True
    import ipaddress  # only here: `show` and `list` import this module

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback(url: str) -> bool:
    """The URL's host is this machine (a local collector, Phoenix, `lftrace serve`)."""
    try:
        return is_loopback_host(urlparse(url).hostname)
    except ValueError:
        return False


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


DEFAULT_OTLP_PATH = "/api/public/otel/v1/traces"


@dataclass(frozen=True)
class Settings:
    public_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    base_url: str = DEFAULT_BASE_URL
    environment: str = "default"
    release: str | None = None
    sample_rate: float = 1.0
    tracing_enabled: bool = True
    media_upload_enabled: bool = True  # take media out of the data (media.py): stored once, uploaded to Langfuse
    flush_at: int = 512
    flush_interval: float = 5.0
    timeout: float = 5.0
    debug: bool = False
    store: Path = field(default_factory=default_store_path)
    otlp_endpoint: str | None = None  # full URL of an OTLP/HTTP traces endpoint
    otlp_headers: dict[str, str] = field(default_factory=dict, repr=False)
    # request bodies: "gzip", "none", or None: gzip unless the endpoint is on this machine (loopback), where
    # compressing only costs the traced program CPU (a long run's requests are hundreds of MB before gzip)
    otlp_compression: str | None = None
    # Langfuse's own: headers sent with every request to it (the SDK's additional_headers: a proxy's token, ...),
    # its compression (otel_compression / LANGFUSE_OTEL_COMPRESSION; None: otlp_compression's), its OTLP path
    langfuse_headers: dict[str, str] = field(default_factory=dict, repr=False)
    langfuse_compression: str | None = None
    langfuse_otlp_path: str = DEFAULT_OTLP_PATH
    prompt_cache_ttl: int = 60  # seconds get_prompt keeps a prompt from Langfuse unless told (0: fetch every time)
    export_cost: bool = (
        False  # send the local cost estimate with exported spans (Langfuse then uses it, not its prices)
    )
    # commit and deliver from a helper process (export_process.py), off the program's CPU; None: with 2 CPUs or more
    export_process: bool | None = None
    # where the values came from: the .env read (None: none, or LFTRACE_DOTENV=0), and what to tell the user
    dotenv: Path | None = field(default=None, compare=False)
    sources: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    notices: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @property
    def langfuse_enabled(self) -> bool:
        """Export to Langfuse only when both keys are set (like the official SDK)."""
        return bool(self.public_key and self.secret_key)

    @property
    def streams_parts(self) -> bool:
        """A long run's parts are sent while it runs: there is a backend, and delivery is (or moves, at a long
        run's first part) in the export helper, unless LFTRACE_EXPORT_PROCESS=false."""
        return (self.langfuse_enabled or bool(self.otlp_endpoint)) and self.export_process is not False

    @property
    def langfuse_otlp_url(self) -> str:
        return self.base_url.rstrip("/") + self.langfuse_otlp_path

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
        shown = shown.replace(repr(self.base_url), repr(redact_url(self.base_url)))
        if self.otlp_endpoint:
            shown = shown.replace(repr(self.otlp_endpoint), repr(redact_url(self.otlp_endpoint)))
        return (
            f"Settings(public_key={mask_secret(self.public_key)!r}, secret_key={mask_secret(self.secret_key)!r}, "
            f"{shown}, otlp_headers={ {k: '***' for k in self.otlp_headers} }, "
            f"langfuse_headers={ {k: '***' for k in self.langfuse_headers} })"
        )

    def masked(self) -> dict[str, Any]:
        """Every setting, printable: keys and header values masked."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["public_key"] = mask_secret(self.public_key)
        out["secret_key"] = mask_secret(self.secret_key)
        out["otlp_headers"] = {k: "***" for k in self.otlp_headers}
        out["langfuse_headers"] = {k: "***" for k in self.langfuse_headers}
        out["store"] = str(self.store)
        out["base_url"] = redact_url(self.base_url)
        out["otlp_endpoint"] = redact_url(self.otlp_endpoint) if self.otlp_endpoint else None
        out["dotenv"] = str(self.dotenv) if self.dotenv else None
        out.pop("sources", None)
        out.pop("notices", None)
        return out

    def announce(self) -> None:
        """Say the notices (a .env deciding where traces go) on stderr, each once per process."""
        for notice in self.notices:
            if notice not in _ANNOUNCED:
                _ANNOUNCED.add(notice)
                logging.getLogger("lftrace").warning(notice)

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
        real = os.environ if environ is None else environ
        dotenv_file = dotenv_path() if dotenv is None else None
        from_file = read_dotenv(dotenv_file) if dotenv_file is not None else dict(dotenv or {})
        env = dict(from_file)
        env.update(real)
        sources: dict[str, str] = {}  # setting -> "argument" | "environment" | ".env (path)"

        def origin(env_name: str) -> str:
            if env_name in real and env_name not in _FROM_DOTENV:
                return "environment"
            path = _FROM_DOTENV.get(env_name) or dotenv_file
            if path is not None and path.suffix == ".json":  # the "env" mapping of a langgraph.json
                return f"{path.name} ({path})"
            return f".env ({path})" if path else ".env"

        def pick(name: str, *env_names: str) -> tuple[Any, str] | None:
            if name in args:
                sources[name] = "argument"
                return args[name], name
            for env_name in env_names:
                value = env.get(env_name)
                if value not in (None, ""):
                    sources[name] = origin(env_name)
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
        for name, env_name in (
            ("tracing_enabled", TRACING_ENABLED),
            ("debug", DEBUG),
            ("media_upload_enabled", MEDIA_UPLOAD_ENABLED),
            ("export_cost", EXPORT_COST),
            ("export_process", EXPORT_PROCESS),
        ):
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
        got = pick("otlp_compression", OTLP_TRACES_COMPRESSION, OTLP_COMPRESSION)
        if got:
            values["otlp_compression"] = _compression(got)
        got = pick("langfuse_compression", LANGFUSE_COMPRESSION)
        if got:  # as the SDK: a value it cannot use is passed over for the OTEL_* variables (with a warning here)
            try:
                values["langfuse_compression"] = _compression(got)
            except ConfigError as exc:
                logging.getLogger("lftrace").warning("lftrace: %s; ignored", exc)
        got = pick("langfuse_otlp_path", LANGFUSE_EXPORT_PATH)
        if got:
            values["langfuse_otlp_path"] = _otlp_path(got)
        got = pick("prompt_cache_ttl", PROMPT_CACHE_TTL)
        if got:
            values["prompt_cache_ttl"] = _number(got, int, low=0)
        if "langfuse_headers" in args:
            values["langfuse_headers"] = {str(k): str(v) for k, v in dict(args["langfuse_headers"]).items()}
        if "otlp_headers" in args:
            values["otlp_headers"] = {str(k).lower(): str(v) for k, v in dict(args["otlp_headers"]).items()}
        else:
            headers = parse_headers(env.get(OTLP_HEADERS))
            headers.update(parse_headers(env.get(OTLP_TRACES_HEADERS)))
            values["otlp_headers"] = headers
            for env_name in (OTLP_TRACES_HEADERS, OTLP_HEADERS):
                if env.get(env_name):
                    sources["otlp_headers"] = origin(env_name)
        used_dotenv = any(src.startswith(".env") for src in sources.values())
        values["dotenv"] = _dotenv_named(sources) or (dotenv_file if used_dotenv else None)
        values["sources"] = sources
        settings = cls(**values)
        allow_http = _boolean((real.get(ALLOW_INSECURE_HTTP, "false"), ALLOW_INSECURE_HTTP))
        _check_key_transport(settings, allow_http)
        return replace(settings, notices=_trust_notices(settings))


def _dotenv_named(sources: Mapping[str, str]) -> Path | None:
    """The .env file named in ``sources`` (the CLI loads it into the environment first), if any."""
    for src in sources.values():
        if src.startswith(".env (") and src.endswith(")"):
            return Path(src[len(".env (") : -1])
    return None


def _check_key_transport(settings: Settings, allow_http: bool) -> None:
    """Refuse to send keys in the clear over the network: plain http is fine to this machine only."""
    if allow_http:
        return
    checks = []
    if settings.langfuse_enabled:
        checks.append((settings.base_url, settings.sources.get("base_url", BASE_URL), "the Langfuse keys"))
    if settings.otlp_endpoint and settings.otlp_headers:
        checks.append((settings.otlp_endpoint, settings.sources.get("otlp_endpoint", OTLP_ENDPOINT), "its headers"))
    for url, source, what in checks:
        if urlparse(url).scheme == "http" and not is_loopback(url):
            raise ConfigError(
                f"{redact_url(url)} (from {source}) is plain http to another machine: {what} would cross the "
                f"network unencrypted; use https, or set {ALLOW_INSECURE_HTTP}=true in the environment if this "
                "network is trusted"
            )


def _trust_notices(settings: Settings) -> tuple[str, ...]:
    """What the user must hear about where traces and keys go when a .env decides it."""
    notices = []
    src = settings.sources
    exporting = [
        ("base_url", settings.base_url, ("public_key", "secret_key"), "LANGFUSE_BASE_URL", settings.langfuse_enabled),
        ("otlp_endpoint", settings.otlp_endpoint, ("otlp_headers",), "the OTLP endpoint", bool(settings.otlp_endpoint)),
    ]
    for key, url, secret_keys, label, enabled in exporting:
        where = src.get(key, "")
        if not enabled or not url or not where.startswith(".env"):
            continue
        secrets_from = sorted({src[k] for k in secret_keys if k in src and not src[k].startswith(".env")})
        if secrets_from:
            notices.append(
                f"lftrace: {label} {redact_url(url)} comes from {where} but the keys from the "
                f"{' and '.join(secrets_from)}: traces and keys go to that host (set it in the environment, or "
                f"{DOTENV}=0 to ignore .env)"
            )
        else:
            notices.append(f"lftrace: traces go to {redact_url(url)} ({label} from {where})")
    return tuple(notices)


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


def _otlp_path(got: tuple[Any, str]) -> str:
    """A path on Langfuse's host (``api/public/otel/v1/traces``, a proxy's ``/langfuse/otel``), as ``/...``."""
    value, source = got
    path = "/" + str(value).strip().lstrip("/")
    if path == "/" or any(c in path for c in "?# ") or "://" in path:
        raise ConfigError(f"{source}: '{value}' is not a path on the Langfuse host (e.g. /api/public/otel/v1/traces)")
    return path


def _compression(got: tuple[Any, str]) -> str:
    value, source = got
    text = str(value).strip().lower()
    if text in ("gzip", "none"):
        return text
    raise ConfigError(f"{source}: '{value}' is not a compression lftrace sends (use gzip or none)")


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
