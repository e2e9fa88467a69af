"""A driver error at a destination's edge, as the PushError that says what became of the push.

Each destination module keeps one translator per driver (postgres.py: psycopg and ADBC,
mysql.py: PyMySQL, sqlite.py: sqlite3, kafka.py: confluent-kafka) with an explicit table
from each of the driver's exception classes to a verdict; tests/unit/test_error_mapping.py
fails when a driver grows a class its table does not name. The verdict answers the one
question that decides the message: did the server answer, or is the connection gone?

    REFUSED    the server (or the local database) answered with an error
    LOST       the connection is gone; the server said nothing more
    BY_STATE   the class alone does not tell; the error's SQLSTATE / code / status does

What the push then reports, by the step that failed:

    a read (describe, the marker)     "cannot …": nothing was written
    before COMMIT was sent            rolled back: a server discards a transaction that was
                                      never committed, whether it refused a statement or lost
                                      the connection (so a rollback on a dead connection is
                                      not attempted loudly: its error says nothing new)
    COMMIT refused                    rolled back (a deferred constraint, a serialization failure)
    COMMIT sent, no answer            PushOutcomeUnknown: the server may have committed. The
                                      state file is not saved, so the next push finds either
                                      the marker of this push (committed: the push id differs
                                      from the state's, so it is a full push, which writes
                                      only rows that differ) or the previous push's marker
                                      (not committed: a diff push that sends the same rows
                                      again). Either way the destination ends equal to the
                                      source; nothing needs doing by hand.

Messages are one line: drivers' messages span several (libpq's "server closed the connection
unexpectedly\\n\\tThis probably means …") and a push's error ends up in a run record and on
a terminal.
"""

from __future__ import annotations

from collections.abc import Mapping

from coordinator.errors import PushError, PushOutcomeUnknown

REFUSED, LOST, BY_STATE = "refused", "lost", "by state"
Verdicts = Mapping[type, str]


def one_line(exc: BaseException) -> str:
    """The driver's message on one line (whitespace runs, newlines included, become one space)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def verdict(exc: BaseException, table: Verdicts) -> str:
    """The verdict of the nearest class of `exc` that `table` names; REFUSED if none does (a
    driver error the table does not know is still a PushError; the mapping test catches it)."""
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return REFUSED


def lost_sqlstate(sqlstate: str | None) -> bool:
    """SQLSTATE class 08 (connection exception) and 57P (the server shutting down, crashing,
    the database dropped, the session timed out) say the connection is gone."""
    return bool(sqlstate) and (sqlstate[:2] == "08" or sqlstate[:3] == "57P")


def read_failed(what: str, exc: BaseException, lost: bool) -> PushError:
    gone = " (the connection to the destination was lost)" if lost else ""
    return PushError(f"cannot {what}{gone}: {one_line(exc)}")


def write_failed(table: str, exc: BaseException, lost: bool, note: str = "") -> PushError:
    why = (
        "the connection was lost before COMMIT; the server discards a transaction never committed"
        if lost
        else "the destination refused a statement"
    )
    return PushError(f"push into {table!r} failed and was rolled back ({why}): {one_line(exc)}{note}")


def commit_failed(table: str, exc: BaseException, lost: bool, push_id: str, note: str = "") -> PushError:
    if lost:
        return PushOutcomeUnknown(repr(table), push_id, one_line(exc))
    return PushError(f"push into {table!r} was refused at COMMIT and rolled back: {one_line(exc)}{note}")
