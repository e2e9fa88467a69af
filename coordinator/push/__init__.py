"""The reverse-ETL push engine: rows from a table into a product database or a topic.

    sources.py        Parquet file/folder, SQL query or Spark table → Arrow record batches
    schema.py         destination columns/types: compatibility check, per-value rejects, casts
    diff.py           per-key content hashes (vectorised) and the state of the last push
    plan.py           what a push will write (and the dry-run rendering of it)
    rejects.py        rejected rows with reasons, and the rejects file
    destinations/     one adapter per destination: base.py + postgres, mysql, sqlite, kafka
    engine.py         `push(...)`: read → check → reject → diff → apply atomically → save state
    run.py            `python -m coordinator.push.run`, what the `reverse_etl` launcher starts

How "only changed rows" is decided (diff.py): each push hashes every row (a key hash over the
key columns, a content hash over all mapped columns) and, after the destination committed,
saves (key values, key hash, content hash) in a local Arrow IPC state file per (job,
destination). The same transaction that writes the rows also writes a one-row marker into
the destination (`_coord_push_state`: push id, mapping fingerprint, row count). The next push
trusts the state file only if its push id and fingerprint equal the marker's and the
destination still holds at least as many rows as the marker says; otherwise it is a full
push. So a first push (no state), a changed mapping, key or column types (fingerprint), a
truncated destination (row count), and a crash between commit and state save (push id) each
fall back to a full push — which still writes only rows whose content differs, because the
set-based upsert skips rows equal to what the destination holds.
"""

from coordinator.push.config import DestinationSettings, PushSettings, SourceSettings
from coordinator.push.engine import PushResult, push

__all__ = ["DestinationSettings", "PushResult", "PushSettings", "SourceSettings", "push"]
