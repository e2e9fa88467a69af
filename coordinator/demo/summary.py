"""What a finished demo reports: the runs and their durations, rows pushed, where the scores are.

Built from the state store (runs) and the product database (the pushed table), so it says what
really happened; printed as rich tables for people or as one JSON object (`--json`) for scripts.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from rich.console import Console
from rich.table import Table


class RunSummary(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    job: str
    kind: str  # the job's kind: el, dbt, spark, score, reverse_etl...
    partition: str | None
    state: str
    seconds: float | None = None
    attempts: int = 1
    error: str | None = None


class DemoSummary(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    succeeded: bool
    home: str
    product_db: str  # SQLAlchemy URL of the product database (password masked)
    table: str
    latest_day: str
    runs_launched: int  # runs this invocation started (0: everything was done already)
    rows_pushed: int  # rows written to the product database by this invocation
    rows_in_table: int
    users_scored_latest_day: int
    sample: list[dict[str, object]] = []  # the first rows of the table for the latest day
    runs: list[RunSummary]
    seconds: float
    look: str  # a command that shows the results

    def print(self, console: Console) -> None:
        table = Table(title="runs", title_justify="left")
        for name, justify in (
            ("job", "left"),
            ("kind", "left"),
            ("partition", "left"),
            ("state", "left"),
            ("seconds", "right"),
            ("attempts", "right"),
        ):
            table.add_column(name, justify=justify)
        for run in self.runs:
            style = {"succeeded": "green", "failed": "red", "blocked": "red"}.get(run.state, "")
            table.add_row(
                run.job,
                run.kind,
                run.partition or "-",
                f"[{style}]{run.state}[/]" if style else run.state,
                "" if run.seconds is None else f"{run.seconds:.1f}",
                str(run.attempts),
            )
        console.print(table)
        for run in self.runs:
            if run.error:
                console.print(f"[red]{run.job}[{run.partition}]: {run.error}[/]")
        verdict = "[green]journey complete[/]" if self.succeeded else "[bold red]journey did not complete[/]"
        console.print(f"{verdict} in {self.seconds:.0f} s")
        if not self.runs_launched:
            console.print(
                "nothing new to do: these events were processed before (durations above are "
                "from then); export changed data, e.g. --seed 8, to see only changed rows pushed"
            )
        console.print(
            f"rows pushed now: [bold]{self.rows_pushed}[/] "
            f"(table {self.table} holds {self.rows_in_table} rows; "
            f"{self.users_scored_latest_day} users scored for {self.latest_day})"
        )
        if self.sample:
            rows = Table(title=f"{self.table}, first rows for {self.latest_day}", title_justify="left")
            for name, value in self.sample[0].items():
                rows.add_column(name, justify="right" if isinstance(value, int | float) else "left")
            for row in self.sample:
                rows.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.values()))
            console.print(rows)
        console.print(f"product database: {self.product_db}")
        console.print(f"look at the results:\n  {self.look}")
