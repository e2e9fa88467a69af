"""The project's exceptions: one root, each named for what it means and carrying its data.

    CoordinatorError
    ├── SettingsError              a required setting is missing or invalid
    ├── SpecError                  a pipeline spec is invalid (file, line, message per problem)
    ├── EventError                 an event cannot be decoded or is invalid (reason)
    │   └── SchemaVersionError     the header names a schema version this build does not know
    ├── BusError                   the event bus failed (driver errors are mapped to this);
    │                              `retriable`: whether the same call may succeed later
    ├── StoreError                 the state store failed (driver errors are mapped to this)
    ├── ContractViolation          input columns break a job's contract (dataset, partition, columns)
    ├── LaunchError                a launcher could not start, watch or stop a job
    │   └── JobFailed              the job ran and failed (exit code, error line)
    ├── JobArgumentError           inside a launched job: its arguments name no such input/output
    ├── ScoringError               a model could not be resolved or applied
    │   └── SignatureMismatch      the input table does not fit the model's signature (columns)
    └── PushError                  a reverse-ETL push failed; the destination is unchanged
        ├── DestinationMismatch    destination columns/types do not match (per-column problems)
        ├── TooManyRejects         more rejected rows than the job allows (counts per reason)
        └── PushOutcomeUnknown     COMMIT was sent, its answer lost: the destination may hold the
                                   push; the next push reconciles by its marker (push id)

Driver exceptions (confluent-kafka, SQLAlchemy, psycopg, pymysql, py4j) never cross an
adapter's edge: each adapter maps them into one of these.
"""

from __future__ import annotations

from collections.abc import Sequence


class CoordinatorError(Exception):
    """Root of every error the project raises on purpose."""


class SettingsError(CoordinatorError):
    pass


class SpecProblem:
    """One problem in a spec file, located by file and line (1-based; 0 when unknown)."""

    __slots__ = ("file", "line", "message")

    def __init__(self, file: str, line: int, message: str) -> None:
        self.file, self.line, self.message = file, line, message

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"

    def __repr__(self) -> str:
        return f"SpecProblem({self})"


class SpecError(CoordinatorError):
    def __init__(self, problems: Sequence[SpecProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class EventError(CoordinatorError):
    """An event that cannot be accepted; `reason` is a short machine-friendly tag."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class SchemaVersionError(EventError):
    pass


class BusError(CoordinatorError):
    """The bus failed. `retriable` says whether trying again may help: True for a broker away or
    slow (transport errors, timeouts, a coordinator moving), False for what will fail the same way
    each time (bad configuration, authentication, a fatal producer, a message the broker refuses
    as too large). The adapters decide, from their driver's own classification; a caller that
    retries should retry only these, and stop with the message otherwise."""

    def __init__(self, message: str, *, retriable: bool = True) -> None:
        self.retriable = retriable
        super().__init__(message)


class StoreError(CoordinatorError):
    pass


class ContractViolation(CoordinatorError):
    def __init__(self, dataset: str, partition: str | None, columns: Sequence[str], detail: str = "") -> None:
        self.dataset, self.partition, self.columns = dataset, partition, list(columns)
        where = f"{dataset}[{partition}]" if partition else dataset
        super().__init__(f"contract violated by {where}: {detail or ', '.join(self.columns)}")


class LaunchError(CoordinatorError):
    pass


class JobFailed(LaunchError):
    def __init__(self, message: str, exit_code: int | None = None) -> None:
        self.exit_code = exit_code
        super().__init__(message)


class JobArgumentError(CoordinatorError, ValueError):
    """Raised inside a job (coordinator/sparkjob.py) whose arguments do not give what it asks for."""


class ScoringError(CoordinatorError):
    pass


class SignatureMismatch(ScoringError):
    def __init__(self, model: str, columns: Sequence[str], detail: str = "") -> None:
        self.model, self.columns = model, list(columns)
        super().__init__(f"input does not fit the signature of {model}: {detail or ', '.join(self.columns)}")


class PushError(CoordinatorError):
    pass


class DestinationMismatch(PushError):
    def __init__(self, table: str, problems: Sequence[str]) -> None:
        self.table, self.problems = table, list(problems)
        super().__init__(f"destination {table} does not match the source: " + "; ".join(self.problems))


class TooManyRejects(PushError):
    def __init__(self, rejected: int, total: int, allowed_fraction: float, reasons: dict[str, int]) -> None:
        self.rejected, self.total, self.reasons = rejected, total, reasons
        self.allowed_fraction = allowed_fraction
        detail = ", ".join(f"{reason}: {n}" for reason, n in sorted(reasons.items()))
        super().__init__(
            f"{rejected} of {total} rows rejected (more than {allowed_fraction:.2%} allowed): {detail}"
        )


class PushOutcomeUnknown(PushError):
    """COMMIT was sent and its answer never came: the destination may hold this push or not.

    Carries the destination, the push id whose marker tells (the next push reads it) and why;
    see coordinator/push/destinations/failure.py for how the next push reconciles."""

    def __init__(self, destination: str, push_id: str, detail: str, next_push: str = "") -> None:
        self.destination, self.push_id, self.detail = destination, push_id, detail
        super().__init__(
            f"push {push_id} into {destination}: COMMIT was sent but its answer was lost ({detail}); "
            f"outcome unknown; {next_push or 'the next push reconciles by its marker'}"
        )
