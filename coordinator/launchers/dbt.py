"""The `dbt` kind: dbt build of a selection of a dbt project, run as a detached child process.

    kind: dbt
    outputs: [shop.main.orders, reporting.customers]
    settings:
      project_dir: dbt/shop
      select: ["+orders", customers]
      datasets: {customers: reporting.customers}

The child (coordinator/dbtjob.py) runs dbt-core's programmatic runner and reports each declared
output with its own status, so a model built beside one whose tests failed is announced built
while the failed one holds its downstream. Its artifacts, dbt's log and the parse it checked the
outputs against stay in the run's folder. dbt's anonymous usage statistics are switched off.
"""

from __future__ import annotations

from coordinator.dbtjob import SETTINGS_ENV
from coordinator.kinds.dbt import DbtSettings
from coordinator.launchers.child import ChildLauncher


class DbtLauncher(ChildLauncher):
    kind = "dbt"
    settings_model = DbtSettings
    module = "coordinator.dbtjob"
    settings_env = SETTINGS_ENV
    quiet_env = {"DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_USE_COLORS": "false"}
