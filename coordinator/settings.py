"""The one settings object, read from the environment (prefix COORD_) and an optional .env file.

Built once at start-up and passed down; nothing else in the project reads the environment
for configuration. Secrets are SecretStr so they never appear in logs or reprs.

Lists and maps are JSON (COORD_SPARK_CONF='{"spark.sql.shuffle.partitions": "8"}'); the alert
webhooks also take one URL or a comma-separated list, the way such a variable is usually set.
A COORD_ variable (or keyword) that names no setting, and a value that does not fit, are one
SettingsError: a line per problem naming the variable, its value and what is allowed
(coordinator/settings_problems.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, SecretStr, StringConstraints, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

from coordinator.errors import SettingsError
from coordinator.fivetran import ConnectorRule
from coordinator.settings_problems import (
    describe,
    dotenv_names,
    no_nul,
    state_scheme,
    topic_name,
    unknown_names,
)
from coordinator.tokens import TokenEntry

# Kafka's rule for a topic name: a name it refuses, the consumer subscribes to nothing, silently
Topic = Annotated[str, AfterValidator(topic_name)]
# the state store's columns: coord_dead_letters.consumer_group is varchar(255); a lease id
# NAME#EPOCH goes into coord_runs.owner (200), so the name leaves room for '#' and a 19-digit epoch
ConsumerGroup = Annotated[str, StringConstraints(min_length=1, max_length=255), AfterValidator(no_nul)]
InstanceName = Annotated[str, StringConstraints(min_length=1, max_length=180), AfterValidator(no_nul)]


class Settings(BaseSettings):
    # an empty variable counts as unset (COORD_STATE_URL= in a compose file means "the default");
    # unknown names are refused by __init__, where .env's other tools' variables stay allowed;
    # no float may be inf or nan: a TTL or timeout of inf never expires, nan compares false to all
    model_config = SettingsConfigDict(
        env_prefix="COORD_",
        env_file=".env",
        env_ignore_empty=True,
        frozen=True,
        extra="ignore",
        allow_inf_nan=False,
    )

    home: Path = Field(default=Path(".coord"), description="Folder for the embedded defaults' files")

    # Event bus
    bus: Literal["local", "kafka"] = "local"
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    # extra librdkafka settings (SASL user and password...): secrets, read with kafka_security_config()
    kafka_security: dict[str, SecretStr] = Field(default_factory=dict)
    topic_events: Topic = "coord.completions"
    topic_dead_letter: Topic = "coord.dead-letter"
    consumer_group: ConsumerGroup = "coordinator"
    schema_registry_url: str | None = None
    # a completion event with its envelope is a few hundred bytes (one with columns, more): a
    # smaller bound dead-letters every message, so it is at least 1 KiB
    max_event_bytes: int = Field(default=1_000_000, ge=1024)
    # A dead letter the dead-letter topic has not taken after this long is booked in the state store
    # instead (coord_dead_letters, state 'unwritable') and the loop moves on (coordinator/deadletter.py)
    dead_letter_timeout_s: float = Field(default=10.0, gt=0)
    # The bus unreachable for longer than this is an error that stops `run`, `serve` and `publish`
    bus_unreachable_s: float = Field(default=30.0, gt=0)
    # glibc malloc arenas of a process on the Kafka bus (coordinator/bus/kafka_memory.py): with its
    # default, librdkafka's threads make resident memory creep up for good; 0 leaves glibc's default
    malloc_arena_max: int = Field(default=2, ge=0)

    # State store (SQLAlchemy URL); default is a SQLite file under `home`
    # a URL may carry a password: read it with resolved_state_url(); SQLite or PostgreSQL only
    state_url: Annotated[SecretStr, AfterValidator(state_scheme)] | None = None

    # Engine: this instance's name (owner of the runs it launches; distinct per instance when several
    # share one PostgreSQL store) and the largest batch of events taken off the bus at once
    # (librdkafka's consume() takes at most 1,000,000 messages at once)
    instance_name: InstanceName = "coordinator"
    batch_max_events: int = Field(default=1000, ge=1, le=1_000_000)
    # High availability: each instance's lease is renewed every lease_renew_s and expires
    # lease_ttl_s after the last renewal, when a live instance adopts its runs; on SIGTERM or
    # Ctrl-C running jobs get shutdown_grace_s to finish before they are left to be adopted
    lease_ttl_s: float = Field(default=30.0, gt=0)
    lease_renew_s: float = Field(default=3.0, gt=0)
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    # Retention (coordinator/retention.py): how long events, attempts and finished runs are kept
    # (the lineage of current versions and unfinished runs always are); the loop prunes in slices of
    # at most retention_slice_s, a pass every retention_every_s (0: only `coord prune` prunes)
    retention_events_days: float = Field(default=30.0, gt=0)
    retention_attempts_days: float = Field(default=30.0, gt=0)
    retention_runs_days: float = Field(default=30.0, gt=0)
    retention_every_s: float = Field(default=300.0, ge=0)
    retention_slice_s: float = Field(default=0.02, gt=0)

    # Engines
    spark_master: str = "local[*]"
    spark_submit: str | None = None
    spark_conf: dict[str, str] = Field(
        default_factory=dict, description="--conf defaults for every spark job (a job's conf wins)"
    )
    mlflow_tracking_uri: str | None = None
    # How often `coord serve` reads the aliases its score jobs re-run on (scoring/watching.py)
    registry_poll_s: float = Field(default=30.0, gt=0)

    # Product database the reverse-ETL pushes write to (SQLAlchemy URL); default: SQLite under `home`
    product_db_url: SecretStr | None = None

    # HTTP side
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8765, ge=0, le=65535)  # 0: a free port the system picks
    api_token: SecretStr | None = None  # the legacy shared token: one admin token named "api"
    # Scoped tokens (coordinator/auth.py): `coord token create` prints the {name, hash, scopes}
    # entry to put here (a JSON list) or as a line of the tokens file
    tokens: list[TokenEntry] = Field(default_factory=list)
    tokens_file: Path | None = None
    # Reads (UI, /api, /metrics) without a token, honoured only when the server binds a loopback
    # address; `coord demo` turns it on
    anonymous_reads: bool = False
    webhook_secret: SecretStr | None = None
    # Fivetran webhooks: connector id -> the datasets a sync of that connector completes and the
    # partition its data belongs to (coordinator/fivetran.py; COORD_FIVETRAN_CONNECTORS='{"app_db":
    # {"datasets": ["fivetran.app.users"], "partition": "daily", "offset": "-1d"}}')
    fivetran_connectors: dict[str, ConnectorRule] = Field(default_factory=dict)
    # Observe: Slack-compatible webhook URLs that get alerts (COORD_ALERT_WEBHOOKS=https://hooks/1,
    # a comma-separated list or a JSON list),
    # the UI's address for links in them, and an OpenLineage endpoint for run events (none: off)
    alert_webhooks: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    public_url: str | None = None
    lineage_url: SecretStr | None = None
    lineage_namespace: str = "coordinator"

    def __init__(self, **values: Any) -> None:
        env = {**dotenv_names(self.model_config.get("env_file")), **os.environ}
        problems = unknown_names(type(self), values, env)
        try:
            super().__init__(**values)
        except (ValidationError, SourceError) as exc:
            problems += describe(exc, type(self), values, env)
        if problems:
            raise SettingsError("\n".join(problems))

    @field_validator("alert_webhooks", mode="before")
    @classmethod
    def _webhook_list(cls, value: Any) -> Any:
        """A JSON list, or one URL, or URLs separated by commas."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a JSON list ({exc})") from None
        return [url.strip() for url in text.split(",") if url.strip()]

    @field_validator("alert_webhooks")
    @classmethod
    def _webhook_urls(cls, value: list[SecretStr]) -> list[SecretStr]:
        from coordinator.secrets import mask_url

        urls = [url.get_secret_value() for url in value]
        bad = [url for url in urls if not url.startswith(("http://", "https://"))]
        if bad:
            raise ValueError(
                f"{mask_url(bad[0])!r} is not an http(s) URL; "
                "give a URL, URLs separated by commas, or a JSON list"
            )
        return value

    def resolved_public_url(self) -> str:
        return (self.public_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    def resolved_state_url(self) -> str:
        if self.state_url is not None:
            return self.state_url.get_secret_value()
        return f"sqlite:///{(self.home / 'state.db').resolve()}"

    def resolved_mlflow_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    def resolved_product_db_url(self) -> str:
        if self.product_db_url is not None:
            return self.product_db_url.get_secret_value()
        return f"sqlite:///{(self.home / 'product.db').resolve()}"

    def kafka_security_config(self) -> dict[str, str]:
        """The extra librdkafka settings in clear, for the clients that need them."""
        return {key: value.get_secret_value() for key, value in self.kafka_security.items()}

    def alert_webhook_urls(self) -> list[str]:
        return [url.get_secret_value() for url in self.alert_webhooks]
