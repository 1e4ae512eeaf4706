"""The one typed configuration object of Fathom.

Environment (``FATHOM_*``) > ``.env`` > defaults. Every process (ingress, replicas,
Ray jobs) builds one ``Settings()`` and passes it down; tests pass keyword arguments.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_RATE = r"^[1-9][0-9]*/(second|minute|hour|day)$"  # a v3 rate limit: requests per fixed window


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FATHOM_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    # --- storage -----------------------------------------------------------------
    data_dir: Path = Path("./data")
    database_url: str = ""  # empty: SQLite file under data_dir
    blob_backend: Literal["local", "s3"] = "local"
    blob_root: Path | None = None  # local backend; empty: data_dir / "blobs"
    s3_endpoint_url: str | None = None  # S3-compatible endpoint (MinIO, moto, ...)
    s3_bucket: str = "fathom"
    s3_region: str = "us-east-1"
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None

    # --- HTTP ----------------------------------------------------------------------
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    public_url: str = ""  # base URL clients reach; empty: http://{http_host}:{http_port}
    # Browser origins (scheme://host[:port]) whose pages may call both APIs, comma-separated in
    # the environment; "*" for any (then without credentials). Empty: no CORS headers at all.
    cors_allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    ui_test_hooks: bool = False  # the pages expose their state on window.fathomTest (browser tests only)

    # --- Ray -------------------------------------------------------------------------
    ray_address: str | None = None  # None: start a local head (make run)
    ray_head_port: int = 6380  # 6379 is often Redis
    ray_head_num_cpus: int | None = Field(None, ge=1)  # logical CPUs of make run's head; None: see cluster.local
    ray_dashboard_agent_port: int = 52365  # Ray's default; each head on one machine needs its own
    ray_client_server_port: int = 10001  # Ray's default; likewise
    ray_metrics_export_port: int = 8080  # Ray's Prometheus endpoint on the head (Ray's default; likewise)
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8265
    dashboard_url: str = ""  # Jobs API; empty: http://{dashboard_host}:{dashboard_port}
    use_gpu: bool | None = None  # None: use GPUs when the cluster has them
    detector_gpu_fraction: float = Field(0.25, gt=0, le=1)
    transcriber_gpu_fraction: float = Field(0.25, gt=0, le=1)
    train_num_workers: int = Field(2, ge=0)  # default Ray Train workers per job

    # --- limits ------------------------------------------------------------------------
    max_upload_bytes: int = 500 * 1024 * 1024
    max_audio_seconds: float = 4 * 3600.0
    upload_url_expiry_s: int = 3600
    upload_grace_s: int = Field(600, ge=0)  # unconfirmed uploads expire this long after their URL does
    download_url_expiry_s: int = 3600
    min_training_audio_s: float = 300.0  # detector training prerequisite (5 min)

    # --- dispatch ------------------------------------------------------------------------
    dispatch_poll_s: float = 0.25  # between claims while work keeps arriving
    dispatch_idle_poll_s: float = 2.0  # polls back off to this while none does (confirms wake them)
    dispatch_max_in_flight: int = 64
    lease_s: float = 120.0  # a claimed file not finished by then is claimed again
    max_attempts: int = 5
    preprocess_max_files: int = 256  # dataset files grouped into one Ray Data run

    # --- webhooks --------------------------------------------------------------------------
    # Delay before each retry after a failed attempt (Standard Webhooks' schedule: immediately, 5 s,
    # 5 min, 30 min, 2 h, 5 h, 10 h, 10 h); one attempt more than delays, each delay jittered.
    webhook_retry_schedule_s: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0]
    )
    webhook_retry_jitter: float = Field(0.1, ge=0, le=0.5)  # each delay +- this fraction
    webhook_timeout_s: float = Field(15.0, gt=0)  # one delivery attempt, connect to last byte
    webhook_lease_s: float = Field(60.0, gt=0)  # a claimed delivery not recorded by then is sent again
    webhook_disable_after_s: float = Field(5 * 86400.0, gt=0)  # an endpoint failing this long is disabled
    webhook_allow_http: bool = False  # plain http:// endpoint URLs (tests, make run)
    # Networks endpoints may resolve into although private, loopback or link-local (e.g. 127.0.0.0/8);
    # comma-separated in the environment. Empty: public addresses only.
    webhook_allowed_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # --- v3 custom STT -----------------------------------------------------------------------
    stt_min_training_hours: float = Field(5.0, ge=0)  # train-split audio needed by POST .../run
    stt_finetune_epochs: int = Field(15, ge=1, le=100)  # epochs of one custom-model training run
    stt_finetune_batch_size: int = Field(8, ge=1)  # utterances per Ray Train worker and step
    stt_ssl_bundle: str | None = None  # e.g. WAV2VEC2_BASE: fine-tune from its local weights (never downloaded)
    stt_custom_model_limit: int | None = Field(None, ge=0)  # models in status 3|4 per organization
    # without its own limit (organizations.custom_model_limit); None: unlimited
    stt_max_audio_bytes: int = Field(200 * 1024 * 1024, gt=0)  # one multipart audio_file (data, transcription)
    stt_max_transcript_bytes: int = Field(1024 * 1024, gt=0)  # one transcript_file (the decoder's own cap is 1 MiB)
    # Fixed-window limits per organization, "N/second|minute|hour|day" (the vendor's are per account).
    stt_rate_model_creation: str = Field("10/hour", pattern=_RATE)
    stt_rate_training_starts: str = Field("5/hour", pattern=_RATE)
    stt_rate_status_checks: str = Field("100/minute", pattern=_RATE)  # GETs of models, data, lists
    stt_rate_data_uploads: str = Field("50/hour", pattern=_RATE)
    stt_rate_log_retrieval: str = Field("20/hour", pattern=_RATE)
    stt_rate_model_changes: str = Field("100/minute", pattern=_RATE)  # updates and deletions
    stt_rate_transcription: str = Field("120/minute", pattern=_RATE)  # POST /api/v3/stt
    # Each key's limit in every bucket: this share of its organization's (at least 1); below 1 no key
    # can spend the whole organization's window.
    stt_rate_key_share: float = Field(1.0, gt=0, le=1)

    @field_validator("webhook_retry_schedule_s", "webhook_allowed_networks", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = json.loads(value) if value.lstrip().startswith("[") else [v for v in value.split(",") if v.strip()]
        return value

    @field_validator("webhook_retry_schedule_s")
    @classmethod
    def _check_schedule(cls, delays: list[float]) -> list[float]:
        if any(d < 0 for d in delays):
            raise ValueError("webhook retry delays must be >= 0 seconds")
        return delays

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _check_networks(cls, networks: list[str]) -> list[str]:
        import ipaddress

        try:
            return [str(ipaddress.ip_network(n.strip(), strict=False)) for n in networks]
        except ValueError as e:
            raise ValueError(f"webhook_allowed_networks: {e}") from None

    @field_validator("cors_allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = json.loads(value) if value.lstrip().startswith("[") else value.split(",")
        return value

    @field_validator("cors_allowed_origins")
    @classmethod
    def _check_origins(cls, origins: list[str]) -> list[str]:
        """Browsers send ``Origin`` as scheme://host[:port]; anything else would never match."""
        cleaned = []
        for origin in (o.strip().rstrip("/") for o in origins):
            if not origin:
                continue
            parts = urlsplit(origin)
            if origin != "*" and (parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query):
                raise ValueError(f"CORS origin {origin!r} must be '*' or scheme://host[:port], e.g. https://dashboard.example.com")
            cleaned.append(origin)
        return cleaned

    @model_validator(mode="after")
    def _fill_derived(self) -> "Settings":
        self.data_dir = self.data_dir.resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'fathom.db').resolve()}"
        if self.blob_root is None:
            self.blob_root = self.data_dir / "blobs"
        self.blob_root = self.blob_root.resolve()
        if not self.public_url:
            self.public_url = f"http://{self.http_host}:{self.http_port}"
        self.public_url = self.public_url.rstrip("/")
        if not self.dashboard_url:
            self.dashboard_url = f"http://{self.dashboard_host}:{self.dashboard_port}"
        if self.blob_backend == "s3" and not self.s3_bucket:
            raise ValueError("FATHOM_S3_BUCKET is required with FATHOM_BLOB_BACKEND=s3")
        return self

    def to_env(self) -> dict[str, str]:
        """FATHOM_* variables that rebuild these settings in another process (Ray jobs)."""
        env: dict[str, str] = {}
        for name, value in self.model_dump(mode="json").items():
            if value is None:
                continue
            field = getattr(self, name)
            if isinstance(field, SecretStr):
                value = field.get_secret_value()
            if isinstance(value, list):
                value = ",".join(str(v) for v in value)
            env[f"FATHOM_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
        return env
