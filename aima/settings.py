"""Process settings: one `Settings` object, read from `AIMA_*` environment variables.

Two profiles share one code path. ``embedded`` (the default) keeps everything under
``AIMA_DATA_DIR``: SQLite, a local object folder, Milvus Lite, a disk-backed document store,
an in-process cache and bus. ``cluster`` talks to PostgreSQL, S3, Milvus, MongoDB, Redis and
NATS JetStream, and needs their addresses. Every adapter is chosen here, never by code edits.
Runtime knobs that admins change without a redeploy belong to the configuration service, not here.
"""

from __future__ import annotations

import json
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

from aima.model_settings import ModelsSettings

ENV_PREFIX = "AIMA_"

Profile = Literal["embedded", "cluster"]


class SettingsError(ValueError):
    """A setting is missing or invalid; the message is one line that names the variable."""

    def __init__(self, setting: str, reason: str) -> None:
        self.setting = setting
        self.reason = reason
        super().__init__(f"invalid setting {setting}: {reason}")


class Settings(BaseSettings):
    """All connection settings of one AIMA process (see module docstring)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        validate_default=True,
        env_nested_delimiter="__",
        populate_by_name=True,
    )

    profile: Profile = "embedded"
    service_name: str = "aima"
    data_dir: Path = Path(".aima")

    # relational store: SQLite file (embedded) or PostgreSQL through psycopg 3 (cluster)
    database_url: str | None = None
    database_pool_size: int = Field(default=5, ge=1, le=100)

    # object store: a local folder (embedded) or any S3 API (cluster)
    object_store: Literal["local", "s3"] | None = None
    objects_path: Path | None = None
    s3_endpoint_url: str | None = None
    s3_bucket: str = "aima"
    s3_region: str = "us-east-1"
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_part_size: int = Field(default=8 * 1024 * 1024, ge=5 * 1024 * 1024)
    presign_secret: SecretStr | None = None
    public_base_url: str = "http://127.0.0.1:8080"

    # vector store: Milvus Lite file (embedded) or a Milvus server (cluster)
    vector_uri: str | None = None
    vector_token: SecretStr | None = None

    # document store: litemongo folder (embedded) or MongoDB (cluster)
    documents_uri: str | None = None
    documents_db: str = "aima"

    # cache and locks: in-process (embedded) or Redis (cluster)
    cache_url: str | None = None

    # event bus: in-process (embedded), NATS JetStream (cluster), or a Knative Broker over HTTP
    # (``http``: publishes to ``sink_url``, which a SinkBinding sets as ``K_SINK``; Triggers deliver)
    bus: Literal["memory", "nats", "http"] | None = None
    sink_url: str | None = Field(default=None, validation_alias=AliasChoices("AIMA_SINK_URL", "K_SINK"))
    nats_url: str = "nats://127.0.0.1:4222"
    nats_stream: str = "AIMA"
    nats_subject_root: str = Field(default="aima", pattern=r"^[A-Za-z0-9_-]+$")
    bus_max_deliver: int = Field(default=5, ge=1, le=100)
    bus_backoff: list[float] = Field(default_factory=lambda: [0.5, 2.0, 10.0, 30.0])
    bus_ack_wait: float = Field(default=30.0, gt=0)
    bus_dedupe_window: float = Field(default=120.0, gt=0)
    # how a function receives its events: its durable bus consumer, or CloudEvents at POST / (a
    # Knative Trigger); one path per deployment, never both in one process
    delivery: Literal["bus", "http"] = "bus"
    # seconds one call of a function's core may take, by function (default: its spec's timeout);
    # a step past it is given back and retried with the bus' backoff
    step_timeouts: dict[str, float] = Field(default_factory=dict)

    # identity and tokens (secrets stay here, never in the configuration service)
    jwt_issuer: str = "aima"
    jwt_audience: str = "aima-api"
    access_token_ttl: int = Field(default=900, ge=30, le=86400)
    refresh_token_ttl: int = Field(default=30 * 86400, ge=300)
    signing_key_lifetime: int = Field(default=30 * 86400, ge=3600)
    key_encryption_secret: SecretStr | None = None
    bootstrap_admin_username: str | None = None
    bootstrap_admin_password: SecretStr | None = None
    bootstrap_tenant: str = "default"
    oidc_issuer: str | None = None
    oidc_jwks_url: str | None = None
    oidc_audience: str | None = None
    oidc_algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    oidc_role_claim: str = "roles"
    oidc_role_map: dict[str, str] = Field(
        default_factory=lambda: {"aima-admin": "admin", "aima-user": "user", "aima-guest": "guest"}
    )
    oidc_tenant: str = "default"
    oidc_client_id: str | None = None
    """The gateway's client at the issuer: with it the review workspace offers OIDC sign-in
    (authorization code with PKCE, exchanged by the gateway; docs/security.md)."""
    oidc_client_secret: SecretStr | None = None
    """A confidential client's secret (client_secret_basic); unset for a public client."""
    oidc_scopes: str = "openid profile"
    oidc_display_name: str = "single sign-on"
    oidc_redirect_url: str | None = None
    """The callback registered at the issuer; by default the gateway's own URL as the browser reached
    it plus ``/api/v1/auth/oidc/callback`` (set it behind a proxy that rewrites the host)."""

    # the api gateway
    cors_origins: list[str] = Field(default_factory=list)
    max_request_bytes: int = Field(default=1024 * 1024, ge=1024)
    rate_limit_per_user: int = Field(default=600, ge=1)
    rate_limit_per_address: int = Field(default=1200, ge=1)
    rate_limit_window: int = Field(default=60, ge=1)
    rate_limit_fail_open: bool = True
    # seconds the gateway keeps a caller's user record and case memberships (0: read them per request);
    # changes made through the same gateway apply at once, those made elsewhere within this time
    access_cache_ttl: float = Field(default=2.0, ge=0, le=60)
    function_urls: dict[str, str] = Field(default_factory=dict)

    # telemetry
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True
    otlp_endpoint: str | None = None
    health_timeout: float = Field(default=2.0, gt=0)

    # models, one block per task: AIMA_MODELS__<TASK>__<FIELD> (aima/model_settings.py)
    models: ModelsSettings = Field(default_factory=ModelsSettings)

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must be a sqlite:// or postgresql+psycopg:// URL")
        if value is not None and value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value

    @field_validator("cache_url")
    @classmethod
    def _known_cache(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("memory://", "redis://", "rediss://")):
            raise ValueError("must be memory:// or a redis:// URL")
        return value

    @field_validator("documents_uri")
    @classmethod
    def _known_documents(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("litemongo://", "mongodb://", "mongodb+srv://")):
            raise ValueError("must be litemongo:///PATH or a mongodb:// URL")
        return value

    @field_validator("nats_url")
    @classmethod
    def _known_nats(cls, value: str) -> str:
        if not value.startswith(("nats://", "tls://")):
            raise ValueError("must be a nats:// URL")
        return value

    @model_validator(mode="after")
    def _fill_profile_defaults(self) -> Settings:
        """Embedded fills every address under data_dir; cluster requires them."""
        if self.bus == "http" and not self.sink_url:
            raise ValueError("AIMA_SINK_URL (or K_SINK): required when AIMA_BUS=http")
        if self.bus == "http" and self.delivery != "http":
            raise ValueError(
                "AIMA_DELIVERY=http: required when AIMA_BUS=http (a Trigger delivers the events)"
            )
        if self.profile == "embedded":
            root = self.data_dir
            self.database_url = self.database_url or f"sqlite:///{root / 'aima.db'}"
            self.object_store = self.object_store or "local"
            self.objects_path = self.objects_path or root / "objects"
            self.vector_uri = self.vector_uri or str(root / "vectors.db")
            self.documents_uri = self.documents_uri or f"litemongo://{(root / 'documents').absolute()}"
            self.cache_url = self.cache_url or "memory://"
            self.bus = self.bus or "memory"
            if self.key_encryption_secret is None:
                self.key_encryption_secret = SecretStr(_embedded_secret(root))
            return self
        missing = [
            name
            for name in ("database_url", "vector_uri", "documents_uri", "cache_url")
            if getattr(self, name) is None
        ]
        if missing:
            raise ValueError(f"{_env(missing[0])}: required in the cluster profile")
        self.object_store = self.object_store or "s3"
        self.bus = self.bus or "nats"
        if self.key_encryption_secret is None:
            raise ValueError(f"{_env('key_encryption_secret')}: required in the cluster profile")
        if self.object_store == "local" and self.objects_path is None:
            raise ValueError(f"{_env('objects_path')}: required when AIMA_OBJECT_STORE=local")
        return self


def _embedded_secret(root: Path) -> str:
    """A random secret kept in the embedded data folder (mode 0600), created on first use."""
    path = root / "secret.key"
    if not path.exists():
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def _env(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _env_of(loc: tuple[int | str, ...], *, unknown: bool = False) -> str:
    """The variable of an error location: nested model fields join with ``__``
    (``AIMA_MODELS__TRANSCRIBER__THREADS``); list indexes and dict keys belong to their field."""
    parts: list[str] = []
    model: type[BaseModel] | None = Settings
    for index, part in enumerate(loc):
        last_unknown = unknown and index == len(loc) - 1
        if (
            model is None
            or not isinstance(part, str)
            or (part not in model.model_fields and not last_unknown)
        ):
            break
        parts.append(part)
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return _env("__".join(parts) or str(loc[0]))


def _unparsable(prefix: str) -> str:
    """The variable under ``prefix`` (itself or ``prefix__...``) whose JSON-looking value does not parse."""
    for name in sorted(os.environ):
        upper, value = name.upper(), os.environ[name].strip()
        if (upper == prefix or upper.startswith(prefix + "__")) and value[:1] in ("[", "{"):
            try:
                json.loads(value)
            except ValueError:
                return upper
    return prefix


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment (plus overrides); raise `SettingsError` on a bad value."""
    try:
        return Settings(**overrides)
    except SourceError as exc:  # a list, dict or nested-block value that is not JSON
        field = str(exc).partition('field "')[2].partition('"')[0]
        return _raise(_unparsable(_env(field)), "not valid JSON")
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = first.get("loc") or ()
        message = str(first.get("msg", "invalid"))
        if loc:
            unknown = first.get("type") == "extra_forbidden"
            return _raise(_env_of(loc, unknown=unknown), "not a known setting" if unknown else message)
        # model-level errors carry the variable name at the start of the message
        message = message.removeprefix("Value error, ")
        name, _, reason = message.partition(": ")
        return _raise(name, reason or message)


def _raise(setting: str, reason: str) -> Settings:
    raise SettingsError(setting, reason.removeprefix("Value error, "))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
