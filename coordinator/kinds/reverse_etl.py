"""The `reverse_etl` kind's settings (a push), validated when the spec loads (extra keys are errors).

    settings:
      source: {input: scores.churn}        # or {parquet: "dir/{partition}"}, {sql: "…", url: "…"}, {spark: t}
      destination: {url: "postgresql://...", table: user_scores}
      mode: upsert                         # insert | upsert | update | mirror
      key: [user_id]

The push engine (coordinator/push) reads these as they are; coordinator/push/config.py names
them for its own modules.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from coordinator.identifiers import destination_names, dialect_of, name_problems

Mode = Literal["insert", "upsert", "update", "mirror"]


class SourceSettings(BaseModel):
    """Exactly one of: `input` (the location of an input dataset's completion event), `parquet`
    (a path or URI, may contain {partition}), `sql` (a query, with `url`), `spark` (a table
    name or a query run on the Spark session)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: str | None = None
    parquet: str | None = None
    sql: str | None = None
    url: str | None = None
    spark: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SourceSettings:
        given = [n for n in ("input", "parquet", "sql", "spark") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError(f"give exactly one of input, parquet, sql, spark (got {given or 'none'})")
        if self.sql and not self.url:
            raise ValueError("a sql source needs `url` (a SQLAlchemy URL)")
        return self


# the destination settings only some destinations read
READ_BY = {
    "db_schema": ("postgresql",),
    "table": ("postgresql", "mysql", "sqlite"),
    "format": ("kafka",),
    "bootstrap_servers": ("kafka",),
}


class DestinationSettings(BaseModel):
    """`url`: postgresql://…, mysql://… (or mariadb://), sqlite:///file.db, kafka://topic
    (or kafka://host:port/topic). `password` overrides the URL's password (keep it in the
    environment: the spec loader interpolates ${VAR})."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    url: str
    table: str | None = None
    db_schema: str | None = Field(default=None, alias="schema")
    password: SecretStr | None = None
    format: Literal["json", "avro"] = "json"  # Kafka values
    bootstrap_servers: str | None = None  # Kafka, when not in the URL

    @property
    def scheme(self) -> str:
        return self.url.split(":", 1)[0].split("+", 1)[0].lower()

    @model_validator(mode="after")
    def _table_for_sql(self) -> DestinationSettings:
        if self.scheme != "kafka" and not self.table:
            raise ValueError("a database destination needs `table`")
        try:
            urlsplit(self.url).port  # noqa: B018 - parsing it is the check
        except ValueError as exc:
            raise ValueError(f"the destination URL's port is not a port number ({exc})") from None
        if self.scheme == "sqlite" and urlsplit(self.url).path in ("", "/", "/:memory:"):
            raise ValueError("an in-memory SQLite destination keeps nothing: give a file (sqlite:///path.db)")
        dialect = dialect_of(self.url)  # "" for a scheme no destination has: PushSettings says so
        for field, readers in READ_BY.items():  # a value set for nobody: else accepted and ignored
            if (
                dialect
                and dialect not in readers
                and getattr(self, field) != type(self).model_fields[field].default
            ):
                shown = "schema" if field == "db_schema" else field
                raise ValueError(f"`{shown}` has no meaning for a {dialect} destination")
        names = destination_names(self.url, self.table, self.db_schema)
        problems = name_problems(dialect_of(self.url), names)
        if problems:  # as the database will keep them (coordinator/identifiers.py)
            raise ValueError("; ".join(problems))
        return self


class PushSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    source: SourceSettings
    destination: DestinationSettings
    mode: Mode = "upsert"
    key: list[str] = Field(min_length=1)
    columns: dict[str, str] | None = None  # source name → destination name (only these are pushed)
    create_table: bool = False
    max_rejected_fraction: float = Field(default=0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _column_names_fit(self) -> PushSettings:
        """The mapped column names (or, unmapped, the key's) as the destination will keep them
        (coordinator/identifiers.py); names that come from the source are checked at push time."""
        if not dialect_of(self.destination.url):
            raise ValueError(
                f"unsupported destination URL scheme {self.destination.scheme!r} "
                "(postgresql, mysql, mariadb, sqlite, kafka)"
            )
        columns = self.columns or {}
        targets = list(columns.values()) or list(self.key)
        doubled = sorted({c for c in targets if targets.count(c) > 1})
        if columns and doubled:
            raise ValueError(f"columns maps several source columns to {', '.join(map(repr, doubled))}")
        dialect = dialect_of(self.destination.url)
        if dialect == "kafka":  # record fields: JSON takes any name, Avro its own
            if self.destination.format != "avro":
                return self
            dialect = "avro"
        problems = name_problems(dialect, [("column", c) for c in targets])
        if problems:
            raise ValueError("; ".join(problems))
        return self
