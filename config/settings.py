"""Typed settings: environment first (``SMSD_`` prefix, ``__`` for nesting), then the TOML file in
``SMSD_CONFIG``.

Examples: ``SMSD_REDIS_URL=redis://localhost:6379/0``, ``SMSD_INFOCLOUD__API_KEY=...``,
``SMSD_INFOCLOUD__BASE_URL=http://127.0.0.1:8800``. Templates, routing and limits usually live in the
TOML file (see ``config/example.toml``). Secrets are ``SecretStr`` and print as ``**********``.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from config.limits import DEFAULT_LIMITS, LimitRule, parse_rules
from config.templates import TemplateConfig

Kind = Literal["otp", "notify", "marketing"]
KINDS: tuple[str, ...] = ("otp", "notify", "marketing")
PROVIDERS: tuple[str, ...] = ("infocloud", "xiaorui", "deepfinch", "tencent", "ihuyi")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VendorSettings(_Section):
    """What every vendor section has. Times are in seconds."""

    base_url: str
    connect_timeout_s: float = Field(3.0, gt=0)
    read_timeout_s: float = Field(10.0, gt=0)
    requests_per_second: float = Field(50.0, gt=0, description="shared budget across all workers")
    batch_size: int = Field(1, ge=1)
    receipt_poll_interval_s: float = Field(60.0, gt=0, description="beat pulls receipts this often")
    query_per_minute: int = Field(60, ge=1, description="receipt queries a minute, across all workers")
    receipt_page_size: int = Field(100, ge=1, description="a full page means: ask again at once")
    settle_s: int = Field(72 * 3600, gt=0, description="an unconfirmed send without receipt is failed after")

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    def configured(self) -> bool:
        """True when every credential field is set (non-empty)."""
        return all(
            getattr(self, name).get_secret_value() if isinstance(getattr(self, name), SecretStr)
            else bool(getattr(self, name))
            for name in self.credential_fields()
        )

    def credential_fields(self) -> tuple[str, ...]:
        return ()


class InfocloudSettings(VendorSettings):
    base_url: str = "https://opassapi.infocloud.com.cn"
    api_key: SecretStr = SecretStr("")
    access_key: SecretStr = SecretStr("")
    sign_method: Literal["HmacSHA256", "HmacMD5", "HmacSHA1", "HmacSHA224", "HmacSHA384", "HmacSHA512"] = (
        "HmacSHA256"
    )
    batch_size: int = Field(1000, ge=1, le=1000)
    requests_per_second: float = Field(300.0, gt=0)
    query_per_minute: int = Field(3, ge=1, description="receipt/statistics queries per minute, per account")
    receipt_poll_interval_s: float = Field(60.0, gt=0)
    balance_interval_s: float = Field(15.0, ge=15.0)
    receipt_page_size: int = Field(600, ge=1, le=600)

    def credential_fields(self) -> tuple[str, ...]:
        return ("api_key", "access_key")


class XiaoruiSettings(VendorSettings):
    base_url: str = "https://service-xiaorui.market.tencentcloudapi.example"
    secret_id: SecretStr = SecretStr("")
    secret_key: SecretStr = SecretStr("")
    account: SecretStr = SecretStr("")
    password: SecretStr = SecretStr("")
    batch_size: int = Field(500, ge=1, le=500)
    receipt_page_size: int = Field(1000, ge=10, le=10000)  # smsreport ``size`` (its default)
    extno: str = ""

    def credential_fields(self) -> tuple[str, ...]:
        return ("secret_id", "secret_key", "account", "password")


class DeepfinchSettings(VendorSettings):
    base_url: str = "https://service-deepfinch.market.tencentcloudapi.example"
    secret_id: SecretStr = SecretStr("")
    secret_key: SecretStr = SecretStr("")
    batch_size: int = Field(1, ge=1, le=1)

    def credential_fields(self) -> tuple[str, ...]:
        return ("secret_id", "secret_key")


class TencentSettings(VendorSettings):
    base_url: str = "https://yun.tim.qq.com"
    sdk_app_id: str = ""
    app_key: SecretStr = SecretStr("")
    sign: str = ""
    batch_size: int = Field(1, ge=1, le=1)
    receipt_page_size: int = Field(100, ge=1, le=100)  # pullstatus ``max``

    def credential_fields(self) -> tuple[str, ...]:
        return ("sdk_app_id", "app_key")


class IhuyiSettings(VendorSettings):
    base_url: str = "https://106.ihuyi.com"
    account: str = ""
    api_key: SecretStr = SecretStr("")
    dynamic_password: bool = True
    batch_size: int = Field(1, ge=1, le=1)

    def credential_fields(self) -> tuple[str, ...]:
        return ("account", "api_key")


class RetrySettings(_Section):
    """Backoff for transient vendor failures: full jitter over ``min(cap, base * 2**attempt)`` seconds."""

    max_attempts: int = Field(6, ge=1)
    backoff_base_s: float = Field(1.0, gt=0)
    backoff_cap_s: float = Field(60.0, gt=0)
    rate_limited_wait_s: float = Field(30.0, gt=0, description="minimum wait after a too-frequent code")


class Settings(BaseSettings):
    """All of smsdispatch's settings. See README "Configuration"."""

    model_config = SettingsConfigDict(
        env_prefix="SMSD_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    redis_url: str | None = Field(
        None, description="unset: redis://127.0.0.1:6379/0, except `smsdispatch demo`, which embeds one"
    )
    config: Path | None = Field(None, description="TOML file with templates, routing and limits")
    retention_s: int = Field(7 * 86400, gt=0, description="how long recipient state is kept")
    idempotency_ttl_s: int = Field(86400, gt=0)
    events_maxlen: int = Field(1_000_000, gt=0, description="approximate cap of the events stream")
    visibility_timeout_s: int = Field(900, gt=0, description="redelivery of unacked tasks (Redis broker)")
    worker_prefetch: int = Field(4, ge=1)
    bulk_threshold: int = Field(1000, ge=1, description="sends with more recipients go to sms.bulk")
    log_level: str = "INFO"
    log_json: bool | None = Field(None, description="unset: JSON unless stderr is a terminal")

    infocloud: InfocloudSettings = InfocloudSettings()
    xiaorui: XiaoruiSettings = XiaoruiSettings()
    deepfinch: DeepfinchSettings = DeepfinchSettings()
    tencent: TencentSettings = TencentSettings()
    ihuyi: IhuyiSettings = IhuyiSettings()
    retry: RetrySettings = RetrySettings()

    limits: dict[str, tuple[LimitRule, ...]] = Field(default_factory=lambda: dict(DEFAULT_LIMITS))
    templates: dict[str, TemplateConfig] = Field(default_factory=dict)
    routing: dict[str, tuple[str, ...]] = Field(
        default_factory=lambda: {kind: PROVIDERS for kind in KINDS},
        description="per kind, the providers to try in order",
    )

    @field_validator("limits", mode="before")
    @classmethod
    def _limits(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        merged: dict[str, Any] = dict(DEFAULT_LIMITS)
        for kind, rules in value.items():
            if kind not in KINDS:
                raise ValueError(f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
            merged[kind] = parse_rules(rules)
        return merged

    @field_validator("routing")
    @classmethod
    def _routing(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for kind, names in value.items():
            if kind not in KINDS:
                raise ValueError(f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
            unknown = [n for n in names if n not in PROVIDERS]
            if unknown:
                raise ValueError(f"{kind}: unknown provider {unknown[0]!r} (expected {', '.join(PROVIDERS)})")
        return {kind: value.get(kind, PROVIDERS) for kind in KINDS}

    max_countdown_s: int = Field(120, gt=0, description="longer retry waits are kept in Redis, not Celery")
    unhealthy_s: int = Field(300, gt=0, description="how long an auth/balance failure benches a vendor")
    unmatched_receipt_keep_s: int = Field(900, gt=0, description="how long a receipt waits for its message")

    @property
    def effective_redis_url(self) -> str:
        return self.redis_url or "redis://127.0.0.1:6379/0"

    def vendor(self, name: str) -> VendorSettings:
        section: VendorSettings = getattr(self, name)
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


class SettingsError(Exception):
    """The configuration is invalid. The message names every offending setting."""


def _env_name(loc: tuple[int | str, ...]) -> str:
    return "SMSD_" + "__".join(str(part).upper() for part in loc)


def load_settings(**overrides: Any) -> Settings:
    """Build Settings, turning validation errors into one message that names each bad setting."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = [f"  {_env_name(err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise SettingsError("invalid configuration:\n" + "\n".join(lines)) from None
    except ValueError as exc:  # a TOML file that does not parse
        raise SettingsError(f"invalid configuration: {exc}") from None


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, loaded once. Tests call ``get_settings.cache_clear()``."""
    return load_settings()
