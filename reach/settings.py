"""Settings: one pydantic-settings model.

Sources, strongest first: explicit arguments, ``REACH_*`` environment variables,
``reach.toml`` in the project folder, the embedded defaults below. The defaults make a fresh
project work with no service at all: SQLite, outbox transports, Prefect's ephemeral mode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class Settings(BaseSettings):
    """Everything an operator can configure. Each field is documented for `reach.toml`."""

    model_config = SettingsConfigDict(env_prefix="REACH_", extra="forbid", validate_default=True)

    project_dir: Path = Field(
        default=Path("."),
        description="The marketer's project folder (segments/, campaigns/, journeys/, templates/).",
    )
    database_url: str = Field(
        default="sqlite:///reach.db",
        description="SQLAlchemy URL. A relative SQLite path is taken inside the project folder. "
        "Production: postgresql+psycopg://user@host/db.",
    )
    email_transport: str = Field(
        default="outbox",
        description="'outbox' writes one .eml per message under outbox/email/; "
        "'smtp://user:pass@host:port?starttls=true&pool=4&max_per_second=50' sends over SMTP.",
    )
    sms_transport: str = Field(
        default="outbox",
        description="'outbox' appends JSON lines under outbox/sms/; "
        "'twilio://SID:TOKEN@api.twilio.com?from=+15550100' uses a Twilio-compatible API.",
    )
    webhook_transport: str = Field(
        default="outbox",
        description="Journey `webhook` steps: 'outbox' appends the calls under "
        "outbox/webhook/; 'webhook' really POSTs them (signed, retried).",
    )
    outbox_dir: Path = Field(
        default=Path("outbox"),
        description="Where outbox transports write, relative to the project folder.",
    )
    tracking_base_url: str = Field(
        default="http://127.0.0.1:8787",
        description="Public base URL of `reach serve`; tracked links and the pixel point here.",
    )
    tracking_writer: Literal["auto", "process", "thread"] = Field(
        default="auto",
        description="Where `reach serve` writes tracking batches: 'process' in a child "
        "process per worker (frees the worker's core for requests), 'thread' in the worker "
        "itself; 'auto' is process except on SQLite.",
    )
    secret_key: str = Field(
        default="",
        description="Signs tracking and unsubscribe tokens. `reach init` writes a random one.",
    )
    old_secret_keys: list[str] = Field(
        default_factory=list,
        description="Earlier secret keys still accepted for tokens in mails already sent.",
    )
    api_key: str = Field(
        default="",
        description="Key for POST /events and /reports on the tracking server "
        "(header X-Reach-Key). Empty: those routes are refused.",
    )
    metrics_token: str = Field(
        default="",
        description="Bearer token GET /metrics asks for (Prometheus: authorization: "
        "{credentials: ...}). Empty: /metrics is open; the tracking server faces the "
        "internet, so set one or keep /metrics off the public proxy.",
    )
    unsubscribe_mailto: str = Field(
        default="",
        description="Mailbox for mailto: List-Unsubscribe (e.g. unsubscribe@acme.test); "
        "empty: derived from the From address's domain.",
    )
    physical_address: str = Field(
        default="Reach Demo Ltd, 1 Example Street, Springfield",
        description="Postal address shown in every email footer (CAN-SPAM).",
    )
    batch_size: int = Field(
        default=1000, ge=1, le=50_000,
        description="Contacts per send batch (one Prefect task each).",
    )
    tick_processes: int = Field(
        default=0, ge=0, le=64,
        description="Processes one journey tick may use on PostgreSQL when many contacts are "
        "due (helpers claim batches beside it); 0 means one per core. SQLite: always 1.",
    )
    max_sms_segments: int = Field(
        default=3, ge=1, le=10, description="SMS longer than this many segments fail validation."
    )
    resend_unknown: bool = Field(
        default=False,
        description="Resend messages whose outcome is unknown after a crash (may duplicate).",
    )
    error_threshold: float = Field(
        default=0.2, gt=0, le=1,
        description="Pause a campaign when this share of the last `error_window` attempts failed.",
    )
    error_window: int = Field(default=200, ge=10, description="Attempts the error rate looks at.")
    max_attempts: int = Field(
        default=5, ge=1, description="Attempts per message before it is marked failed."
    )
    retry_base_seconds: float = Field(
        default=10.0, ge=0,
        description="Backoff base for transient send errors: attempt n waits up to "
        "base × 2^(n-1) seconds (full jitter).",
    )
    retry_wait_seconds: float = Field(
        default=60.0, ge=0,
        description="A run waits this long at most for retries that come due, then leaves "
        "them to the next `reach run` / `reach tick`.",
    )
    tick_starts_scheduled: bool = Field(
        default=True,
        description="`reach tick` starts campaigns whose `schedule:` is due. Set false when "
        "`reach deploy` put the schedules on a Prefect server, so they start only there "
        "(the ledger makes a double start harmless, but it is wasted work).",
    )
    now: str | None = Field(
        default=None,
        description="ISO 8601 time that replaces the clock everywhere (tests, simulations).",
    )
    sample_contacts: Path = Field(
        default=Path("contacts.csv"),
        description="CSV whose first rows templates are checked against by `reach validate`.",
    )
    attributes: list[str] = Field(
        default_factory=list,
        description="Custom contact attributes segments may use; others are errors. "
        "Empty: any attribute is accepted.",
    )
    log_level: str = Field(default="WARNING", description="Log level of Reach and Prefect.")

    @field_validator("old_secret_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = _toml_file.get("path")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file is not None and toml_file.exists():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    # Derived values -----------------------------------------------------------------
    @property
    def resolved_database_url(self) -> str:
        """The database URL with a relative SQLite path anchored in the project folder."""
        url = self.database_url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str((self.project_dir / url[len(prefix):]).resolve())
        return url

    @property
    def resolved_outbox_dir(self) -> Path:
        folder = self.outbox_dir
        return folder if folder.is_absolute() else self.project_dir / folder

    @property
    def journal_dir(self) -> Path:
        """Where senders on this machine journal their in-flight messages (see
        ``campaigns.journal``); per machine, never shared."""
        return self.project_dir / ".reach-cache" / "inflight"

    @property
    def signing_keys(self) -> list[str]:
        """The current key first, then the old ones still accepted."""
        return [k for k in [self.secret_key, *self.old_secret_keys] if k]


_toml_file: dict[str, Path | None] = {"path": None}


def load_settings(project_dir: Path | str | None = None, **overrides: Any) -> Settings:
    """Settings for the project in ``project_dir`` (default: the current directory)."""
    root = Path(project_dir or ".").resolve()
    _toml_file["path"] = root / "reach.toml"
    try:
        settings = Settings(project_dir=root, **overrides)
    finally:
        _toml_file["path"] = None
    if settings.now:
        import os

        # One clock for every stage, including subprocesses the command starts.
        os.environ.setdefault("REACH_NOW", settings.now)
    return settings
