"""Settings: the only module that reads the environment (``LOOPML_*``) or ``loopml.toml``."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)


class _TomlSource(PydanticBaseSettingsSource):
    """Reads ``loopml.toml`` from the working directory (lowest priority after defaults)."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        super().__init__(settings_cls)
        self._data: dict[str, Any] = {}
        if path.is_file():
            with path.open("rb") as f:
                raw = tomllib.load(f)
            self._data = {k.lower(): v for k, v in raw.get("loopml", raw).items()}

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


class Settings(BaseSettings):
    """Where loopml keeps its metadata and artifacts, and how it talks to them.

    >>> s = Settings(home="/tmp/lm")
    >>> s.resolved_uri()
    'sqlite:////tmp/lm/loopml.db'
    """

    model_config = SettingsConfigDict(env_prefix="LOOPML_", extra="ignore", frozen=True)

    home: Path = Field(default=Path(".loopml"), description="Folder for the embedded store.")
    uri: str | None = Field(
        default=None, description="sqlite:///…, postgresql+psycopg://…, or http(s)://server"
    )
    artifacts: str | None = Field(default=None, description="file://…, s3://…, memory://…")
    token: str | None = None
    s3_endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint")
    metric_flush_interval: float = Field(default=0.5, gt=0, le=60)
    metric_buffer_size: int = Field(default=100_000, ge=100, le=10_000_000)
    user: str | None = Field(default=None, description="Actor recorded on runs and audit events")
    host: str = Field(default="127.0.0.1", description="Where `loopml server` binds")
    port: int = Field(default=5100, ge=0, le=65535)
    auth: bool = Field(default=False, description="Require credentials (forced off-loopback)")
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Host names both servers answer to besides localhost, 127.0.0.1, [::1] and"
        " the bind address (comma-separated)",
    )
    login_max_failures: int = Field(
        default=5, ge=1, le=1000, description="Failed sign-ins per account before a lockout"
    )
    login_max_address_failures: int = Field(
        default=20, ge=1, le=100_000, description="Failed sign-ins per client address"
    )
    login_failure_window_s: float = Field(
        default=900, ge=60, le=86_400, description="How long a failed sign-in counts"
    )
    background_jobs: bool = Field(default=False, description="Run periodic jobs (`loopml up`)")
    max_request_bytes: int = Field(default=64 * 2**20, ge=1024)
    max_artifact_bytes: int = Field(default=8 * 2**30, ge=1024)
    webhook_allow_private: bool = Field(
        default=False,
        description="Let webhooks reach loopback, private and link-local addresses"
        " (tests, on-premise receivers)",
    )
    webhook_timeout: float = Field(default=5.0, gt=0, le=60)
    trust_pickled_models: bool = Field(
        default=False,
        description="Load pickle-based model packages whose digest this platform recorded",
    )
    # the inference server (`loopml serve`); a deployment's own settings override these
    serve_port: int = Field(default=5101, ge=0, le=65535, description="`loopml serve` port")
    serve_max_batch_size: int = Field(default=1024, ge=1, le=100_000)  # rows per predict call
    serve_max_wait_ms: float = Field(default=2.0, ge=0, le=1000)
    serve_max_concurrency: int = Field(default=64, ge=1, le=10_000)
    serve_max_queue: int = Field(default=256, ge=0, le=100_000)
    serve_timeout_s: float = Field(default=10.0, gt=0, le=600)
    serve_max_request_bytes: int = Field(default=8 * 2**20, ge=1024)
    serve_memory_limit_mb: int | None = Field(default=None, ge=64, description="per process")
    serve_cpu_limit_s: int | None = Field(default=None, ge=1, description="CPU seconds/process")
    serve_cpus_per_worker: int = Field(
        default=1, ge=0, le=4096, description="CPUs each worker binds its threads to; 0: unbound"
    )
    serve_memory_budget_mb: int = Field(
        default=256, ge=16, le=1_048_576,
        description="estimated memory of the requests read and decoded at once, per worker",
    )  # fmt: skip
    serve_auth_cache_s: float = Field(
        default=5.0, ge=0, le=300, description="how long `serve --auth` trusts a checked token"
    )
    prediction_log_flush_s: float = Field(default=5.0, gt=0, le=3600)
    prediction_log_sample_rate: float = Field(default=1.0, ge=0, le=1)
    # the prediction log's retention: a deployment keeps its log this long unless it says
    # otherwise, never less than the floor (the EU AI Act's six months for high-risk systems)
    predlog_retention_days: int = Field(default=180, ge=1, le=36_500)
    predlog_retention_floor_days: int = Field(default=180, ge=1, le=36_500)
    predlog_jobs_interval_s: float = Field(
        default=3600, gt=0, le=7 * 86_400, description="`loopml up`: prune and compact period"
    )

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _host_names(cls, v: Any) -> Any:
        """``a.example, b.example`` (the environment's form) or a list; names only, no ports."""
        items = v.split(",") if isinstance(v, str) else v
        if not isinstance(items, (list, tuple, set, frozenset)):
            return v
        names = tuple(str(item).strip().lower() for item in items if str(item).strip())
        for name in names:
            if any(c in name for c in "/@ \t") or (name.count(":") == 1 and "]" not in name):
                raise ValueError(
                    f"allowed_hosts: {name!r} is not a host name: give names such as "
                    "ml.example.com or 10.0.0.5, comma-separated, without scheme or port"
                )
        return names

    @field_validator("home", mode="after")
    @classmethod
    def _absolute_home(cls, v: Path) -> Path:
        return v.expanduser().absolute()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls, Path("loopml.toml")))

    def resolved_uri(self) -> str:
        return self.uri or f"sqlite:///{self.home / 'loopml.db'}"

    def resolved_artifacts(self) -> str:
        return self.artifacts or (self.home / "artifacts").as_uri()

    def resolved_user(self) -> str:
        if self.user:
            return self.user
        import getpass

        try:
            return getpass.getuser()
        except Exception:  # no passwd entry in some containers
            return "unknown"
