"""The `el` kind: a dlt pipeline of the user's project, run as a detached child process.

    kind: el
    outputs: [raw.orders, raw.customers]
    settings:
      source: shop_sources:shop            # module:function, given partition/window_start/window_end
      destination: {type: duckdb, path: lake/shop.duckdb}
      dataset_name: raw

The child (coordinator/eljob.py) survives a coordinator restart like every process kind and is
re-attached, not re-run. It reports one output per table loaded (rows, columns, location); a
failed run's error is the one line the child found for it (a failed load job's own message),
not the last line dlt happened to log. dlt's anonymous telemetry is switched off in the child.
"""

from __future__ import annotations

from coordinator.eljob import SETTINGS_ENV
from coordinator.kinds.el import ElSettings
from coordinator.launchers.child import ChildLauncher


class ElLauncher(ChildLauncher):
    kind = "el"
    settings_model = ElSettings
    module = "coordinator.eljob"
    settings_env = SETTINGS_ENV
    quiet_env = {"RUNTIME__DLTHUB_TELEMETRY": "false"}
