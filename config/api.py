"""Settings of the HTTP API (``[api]`` in the TOML file, ``SMSD_API__*``): its keys and body limits.

Keys come from ``[[api.keys]]`` tables or ``SMSD_API__KEYS`` as JSON
(``[{"name": "shop", "key": "...", "otp_only": false}]``). With no key the ``/v1`` API refuses every
call (secure by default); ``smsdispatch api`` says so at start.
"""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator, model_validator

from config.sections import Section

MIN_KEY_CHARS = 16
MAX_KEY_CHARS = 256
_TOKEN = re.compile(r"[\x21-\x7e]+")  # visible ASCII: a key travels in an HTTP header
MIB = 1024 * 1024


class ApiKey(Section):
    """One caller of ``/v1``. ``name`` is what logs and message meta show; the key itself never is."""

    name: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.\-]+$",
        description="who calls (letters, digits, _ . -): shown in logs and message meta",
    )
    key: SecretStr = Field(description=f"the bearer token: {MIN_KEY_CHARS} to {MAX_KEY_CHARS} visible ASCII")
    otp_only: bool = Field(False, description="may only send kind=otp messages and read those")

    @field_validator("key")
    @classmethod
    def _key(cls, value: SecretStr) -> SecretStr:
        """Long enough not to be guessed; the message never repeats the key."""
        text = value.get_secret_value()
        if not MIN_KEY_CHARS <= len(text) <= MAX_KEY_CHARS:
            raise ValueError(
                f"{len(text)} characters, expected {MIN_KEY_CHARS} to {MAX_KEY_CHARS} "
                "(make one with `openssl rand -hex 24`)"
            )
        if not _TOKEN.fullmatch(text):
            raise ValueError("only visible ASCII characters, no spaces (it travels in an HTTP header)")
        return value


class ApiSettings(Section):
    """Who may call ``/v1`` (bearer API keys), and how large a request may be."""

    keys: tuple[ApiKey, ...] = Field((), description="API keys; none: the /v1 API refuses every call")
    max_body_bytes: int = Field(
        32 * MIB, ge=1024, le=1024 * MIB, description="largest POST /v1/messages body"
    )
    max_upload_bytes: int = Field(
        1024 * MIB, ge=1024, le=64 * 1024 * MIB, description="largest campaign file upload"
    )

    @model_validator(mode="after")
    def _distinct(self) -> ApiSettings:
        names = [key.name for key in self.keys]
        if len(set(names)) != len(names):
            raise ValueError("keys: two keys have the same name")
        secrets = {key.key.get_secret_value() for key in self.keys}
        if len(secrets) != len(self.keys):
            raise ValueError("keys: two keys have the same key")
        return self
