"""Typed settings: environment first (``SMSD_`` prefix, ``__`` for nesting), then the TOML file in
``SMSD_CONFIG``.

Examples: ``SMSD_REDIS_URL=redis://localhost:6379/0``, ``SMSD_INFOCLOUD__API_KEY=...``,
``SMSD_INFOCLOUD__BASE_URL=http://127.0.0.1:8800``. Templates, routing and limits usually live in the
TOML file (see ``config/example.toml``). Secrets are ``SecretStr`` and print as ``**********``.

``Settings`` has one section per registered vendor (``providers/vendors.py``), made by
:func:`settings_model`; reach one with ``settings.vendor("tencent")`` (a ``VendorSettings``) or
``settings.vendor("tencent", TencentSettings)`` (typed). ``load_settings`` turns every bad setting, from
the environment or the TOML file, into one ``SettingsError`` naming each (``SMSD_LIMITS__OTP: ...`` or
``templates.login_code.text: ...``), never a traceback.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeVar, overload
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, create_model, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings import SettingsError as SourceError
from redis.connection import parse_url

from config.api import ApiSettings
from config.campaign import CampaignSettings
from config.limits import DEFAULT_LIMITS, LimitRule, parse_rules
from config.returnpath import BreakerSettings, OptoutSettings, PushSettings, WebhookSettings
from config.sections import DAY_S, RetrySettings, TtlSeconds, VendorSettings
from config.templates import TemplateBase, template_model
from providers.descriptor import VendorDescriptor
from providers.vendors import LOAD_ERRORS, PLUGIN_ENV, VENDORS

__all__ = [
    "KINDS",
    "PROVIDERS",
    "Kind",
    "RetrySettings",
    "Settings",
    "SettingsBase",
    "SettingsError",
    "VendorSettings",
    "get_settings",
    "load_settings",
    "settings_model",
]

Kind = Literal["otp", "notify", "marketing"]
KINDS: tuple[str, ...] = ("otp", "notify", "marketing")
PROVIDERS: tuple[str, ...] = tuple(VENDORS)
"""Every registered vendor's name, in registry order."""
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
REDIS_SCHEMES = ("redis", "rediss", "unix")
S = TypeVar("S", bound=VendorSettings)


class SettingsError(Exception):
    """The configuration is invalid. The message names every offending setting."""


def _log_level(value: Any) -> Any:
    if isinstance(value, str) and value.strip().upper() in LOG_LEVELS:
        return value.strip().upper()
    raise ValueError(f"must be one of {', '.join(LOG_LEVELS)} (any case)")


def check_redis_url(value: str) -> str:
    """``value`` if Redis (and Celery) can connect by it: ``redis://``, ``rediss://`` or ``unix://``."""
    scheme, sep, _ = value.partition("://")
    if not sep or scheme not in REDIS_SCHEMES:
        example = value if re.fullmatch(r"[\w.\-]+:[0-9]{1,5}", value, re.ASCII) else "localhost:6379"
        raise ValueError(f"must start with redis://, rediss:// or unix://: write redis://{example}/0")
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - property access validates the port
    except ValueError:
        raise ValueError("has a port that is not a number in 0..65535") from None
    try:
        parse_url(value)  # type: ignore[no-untyped-call]  # redis-py's own reading, query arguments included
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    if scheme == "unix":
        if not parts.path:
            raise ValueError("unix:// needs a socket path, e.g. unix:///run/redis.sock")
        return value
    if not parts.hostname:
        raise ValueError("has no host, e.g. redis://localhost:6379/0")
    db = parts.path.strip("/")
    if db and not (db.isascii() and db.isdigit() and int(db) < 2**16):
        raise ValueError(f"database {db!r} is not a number, e.g. redis://localhost:6379/0")
    return value


def _route_check(vendor_names: tuple[str, ...]) -> AfterValidator:
    """The check of one kind's route: registered providers, each once, at least one."""

    def check(names: tuple[str, ...]) -> tuple[str, ...]:
        if not names:
            raise ValueError("an empty list: name at least one provider")
        unknown = [name for name in names if name not in vendor_names]
        if unknown:
            raise ValueError(f"unknown provider {unknown[0]!r} (expected {', '.join(vendor_names)})")
        if len(set(names)) != len(names):
            raise ValueError("a provider is listed twice")
        return names

    return AfterValidator(check)


def _kind(value: str) -> str:
    if value not in KINDS:
        raise ValueError(f"unknown kind {value!r} (expected one of {', '.join(KINDS)})")
    return value


KindKey = Annotated[str, AfterValidator(_kind)]
Limits = Annotated[tuple[LimitRule, ...], BeforeValidator(parse_rules)]


class SettingsBase(BaseSettings):
    """All of smsdispatch's settings but the vendor sections, which :func:`settings_model` adds.
    See README "Configuration". Times are in seconds."""

    model_config = SettingsConfigDict(
        env_prefix="SMSD_", env_nested_delimiter="__", extra="forbid", frozen=True, allow_inf_nan=False
    )
    vendor_names: ClassVar[tuple[str, ...]] = ()

    redis_url: str | None = Field(
        None,
        description="broker, results and state: redis://, rediss:// or unix:///path; unset: "
        "redis://127.0.0.1:6379/0 (`smsdispatch demo` embeds its own)",
    )
    config: Path | None = Field(None, description="TOML file with templates, routing and limits")
    retention_s: TtlSeconds = Field(7 * DAY_S, description="how long recipient state is kept")
    idempotency_ttl_s: TtlSeconds = Field(
        DAY_S, description="a send with the same idempotency key within this returns the first one's answer"
    )
    events_maxlen: int = Field(1_000_000, gt=0, le=10**9, description="approximate cap of the events stream")
    visibility_timeout_s: TtlSeconds = Field(
        60, description="a dead worker's tasks run again after this (every task is far shorter)"
    )
    worker_prefetch: int = Field(
        4, ge=1, le=1000, description="tasks a worker process reserves ahead (Celery's prefetch multiplier)"
    )
    bulk_threshold: int = Field(1000, ge=1, le=10**9, description="sends with more recipients go to sms.bulk")
    log_level: Annotated[str, BeforeValidator(_log_level)] = Field(
        "INFO", description="DEBUG, INFO, WARNING, ERROR or CRITICAL (any case)"
    )
    log_json: bool | None = Field(None, description="unset: JSON unless stderr is a terminal")

    retry: RetrySettings = RetrySettings()
    push: PushSettings = PushSettings()
    optout: OptoutSettings = OptoutSettings()
    breaker: BreakerSettings = BreakerSettings()
    webhooks: WebhookSettings = WebhookSettings()
    campaign: CampaignSettings = CampaignSettings()
    api: ApiSettings = ApiSettings()
    limits: dict[KindKey, Limits] = Field(
        default_factory=lambda: dict(DEFAULT_LIMITS),
        description="per kind, the most messages one phone gets per window, across every worker",
    )
    templates: dict[str, TemplateBase] = Field(default_factory=dict)
    routing: dict[KindKey, tuple[str, ...]] = Field(default_factory=dict)  # made per registry: settings_model

    max_countdown_s: TtlSeconds = Field(
        20, description="longer retry waits are kept in Redis, not Celery (below the visibility timeout)"
    )
    unhealthy_s: TtlSeconds = Field(
        300,
        description="how long an auth or config refusal benches a vendor (a balance bench lasts until a poll "
        "shows credit; this long for a vendor without a balance query)",
    )
    unmatched_receipt_keep_s: TtlSeconds = Field(900, description="how long a receipt waits for its message")
    redis_outage_s: float = Field(
        30.0, ge=0, le=3600, description="Redis out of reach this long delays work instead of failing it"
    )
    redis_socket_timeout_s: float = Field(5.0, gt=0, le=300, description="one Redis command's longest wait")
    lease_grace_s: TtlSeconds = Field(
        180, description="a chunk not run this long after its turn is queued again by the lease sweep"
    )
    sweep_interval_s: float = Field(
        15.0, ge=1, le=3600, description="how often beat runs the lease and receipt-inbox sweeps"
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        return None if value is None else check_redis_url(value)

    @field_validator("limits", mode="before")
    @classmethod
    def _limits(cls, value: Any) -> Any:
        """Kinds left out keep their defaults."""
        return {**DEFAULT_LIMITS, **value} if isinstance(value, dict) else value

    @field_validator("routing")
    @classmethod
    def _routing(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        """Kinds left out try every registered vendor, in registry order."""
        return {kind: value.get(kind, cls.vendor_names) for kind in KINDS}

    @property
    def effective_redis_url(self) -> str:
        return self.redis_url or "redis://127.0.0.1:6379/0"

    @overload
    def vendor(self, name: str) -> VendorSettings: ...
    @overload
    def vendor(self, name: str, kind: type[S]) -> S: ...
    def vendor(self, name: str, kind: type[VendorSettings] = VendorSettings) -> VendorSettings:
        """Vendor ``name``'s section; with ``kind``, checked to be that section class (typed access)."""
        if name not in self.vendor_names:
            raise KeyError(f"unknown vendor {name!r} (registered: {', '.join(self.vendor_names)})")
        section = getattr(self, name)
        if not isinstance(section, kind):
            raise TypeError(f"settings.{name} is a {type(section).__name__}, not a {kind.__name__}")
        return section

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources = [init_settings, env_settings]
        path = os.environ.get("SMSD_CONFIG")
        if path:
            if not Path(path).is_file():
                raise SettingsError(f"SMSD_CONFIG: no such file: {path}")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def settings_model(vendors: Mapping[str, VendorDescriptor]) -> type[SettingsBase]:
    """The Settings model with a section per vendor of ``vendors`` (``SMSD_<VENDOR>__<FIELD>``, a
    ``[<vendor>]`` TOML table) and templates taking an entry per vendor."""
    reserved = sorted(set(vendors) & (set(SettingsBase.model_fields) | set(dir(SettingsBase))))
    if reserved:
        raise ValueError(f"vendor names {reserved} are taken by settings of their own")
    fields: dict[str, Any] = {
        name: (vendor.settings, Field(default_factory=vendor.settings)) for name, vendor in vendors.items()
    }
    template_type = template_model(vendors)
    route_type = Annotated[tuple[str, ...], _route_check(tuple(vendors))]
    fields["templates"] = (
        dict[str, template_type],  # type: ignore[valid-type]
        Field(default_factory=dict, description="logical templates by name, each in every vendor's form"),
    )
    fields["routing"] = (
        dict[KindKey, route_type],
        Field(default_factory=dict, validate_default=True, description="per kind, the providers in order"),
    )
    model: type[SettingsBase] = create_model("Settings", __base__=SettingsBase, __module__=__name__, **fields)
    model.vendor_names = tuple(vendors)
    return model


def __getattr__(name: str) -> type[VendorSettings]:
    """Old imports (``from config.settings import TencentSettings``) keep working: a vendor's section
    class lives in its vendor module now."""
    for vendor in VENDORS.values():
        if vendor.settings.__name__ == name:
            return vendor.settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    Settings = SettingsBase
else:
    Settings = settings_model(VENDORS)


def setting_name(loc: tuple[int | str, ...], environ: Mapping[str, str], toml: str | None) -> str:
    """How the user spelled the setting at ``loc``: ``SMSD_LIMITS__OTP`` when the environment set it (or
    a table above it), else its path in the TOML file (``templates.login_code.text``)."""
    keys = [str(part) for part in loc if not isinstance(part, int) and not _is_tag(str(part))]
    index = "".join(f"[{part}]" for part in loc if isinstance(part, int))
    env_name = "SMSD_" + "__".join(keys).upper()
    set_in_env = {key.upper() for key in environ}
    from_env = any("SMSD_" + "__".join(keys[:n]).upper() in set_in_env for n in range(1, len(keys) + 1))
    if from_env or not toml:
        return env_name + index
    return ".".join(keys) + index


def _is_tag(part: str) -> bool:
    """pydantic's own loc entries (``[key]``, ``function-after[...]``), which name no setting."""
    return "[" in part or "(" in part


def _error_lines(exc: ValidationError) -> list[str]:
    toml = os.environ.get("SMSD_CONFIG")
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        message = str(err["msg"]).removeprefix("Value error, ")
        lines.append(f"{setting_name(err['loc'], os.environ, toml)}: {message}")
    return lines


def load_settings(**overrides: Any) -> Settings:
    """Build Settings, turning every bad setting into one SettingsError that names each."""
    if LOAD_ERRORS:
        raise SettingsError(f"{PLUGIN_ENV}: " + "; ".join(LOAD_ERRORS))
    deep = [key for key, value in os.environ.items() if key.upper().startswith("SMSD_") and _too_deep(value)]
    if deep:
        raise _invalid(f"{deep[0]}: nested deeper than {MAX_NESTING} levels")
    toml = os.environ.get("SMSD_CONFIG")
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise _invalid(*_error_lines(exc)) from None
    except SourceError as exc:  # a value pydantic-settings cannot even decode (bad JSON in SMSD_*)
        field = re.search(r'field "(\w+)"', str(exc))
        name = f"SMSD_{field[1].upper()}" if field else "SMSD_*"
        raise _invalid(f"{name} (or a {name}__* variable): not valid JSON") from None
    except RecursionError:  # a TOML file nested deeper than its parser recurses
        raise _invalid(f"SMSD_CONFIG: {toml}: nested too deep") from None
    except ValueError as exc:  # the TOML file does not parse, or is not UTF-8
        raise _invalid(f"SMSD_CONFIG: {toml}: {exc}") from None
    except OSError as exc:  # the TOML file cannot be read
        raise _invalid(f"SMSD_CONFIG: {toml}: cannot read it ({exc.strerror})") from None


def _invalid(*lines: str) -> SettingsError:
    return SettingsError("invalid configuration:\n" + "\n".join(f"  {line}" for line in lines))


MAX_NESTING = 32
"""The deepest nesting of ``[``/``{`` in an ``SMSD_*`` value; no setting needs more than 4."""


def _too_deep(value: str) -> bool:
    """True when ``value`` nests brackets deeper than :data:`MAX_NESTING` outside JSON strings (where the
    JSON decoder would recurse that deep)."""
    depth, in_string, escaped = 0, False, False
    for char in value:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_NESTING:
                return True
        elif char in "]}":
            depth -= 1
    return False


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, loaded once. Tests call ``get_settings.cache_clear()``."""
    return load_settings()
