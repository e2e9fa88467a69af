"""Write a few days of the website app's export (users, events) and announce each day on the bus.

What the app does after each night's export: write the tables, then say "app.export, partition
D, is complete" as producer "app". The bus is the one the settings name (COORD_BUS,
COORD_KAFKA_BOOTSTRAP_SERVERS, ...), so a coordinator serving this example's pipeline
(`coord serve examples/website_scores/pipeline.yaml`) loads each day at the 06:00 tick after
it, once its export is announced. `--ticks` announces the days' ticks too, as `coord demo`
does, to run the journey for past days at once.

    python examples/website_scores/generate.py --export data/app_export --days 3 --users 2000
"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

from coordinator.bus.factory import open_bus
from coordinator.demo.landing import days_ending, export, publish_all, ticks
from coordinator.demo.settings import DEFAULT_END_DAY, example_dir
from coordinator.publish import Publisher
from coordinator.settings import Settings
from coordinator.spec import load_spec


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, required=True, help="the app's export folder (APP_EXPORT)")
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument(
        "--end", type=date.fromisoformat, default=DEFAULT_END_DAY, help="the last day (YYYY-MM-DD)"
    )
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--ticks", action="store_true", help="announce the days' schedule ticks too")
    parser.add_argument("--no-publish", action="store_true", help="write the export only")
    args = parser.parse_args(argv)
    days = days_ending(args.end, args.days)
    exported = export(args.export, days, args.users, args.seed)
    for day in exported:
        print(f"app.export[{day.partition}]: {day.rows} rows in {day.folder}")
    if not args.no_publish:
        events = [day.event() for day in exported]
        if args.ticks:
            events += ticks(load_spec(example_dir() / "pipeline.yaml"), days)
        settings = Settings()
        with Publisher(open_bus(settings), settings) as publisher:
            print(f"published {publish_all(publisher, events)} events")


if __name__ == "__main__":
    main()
