"""Land a few days of the website's raw EL tables (users, events) and announce them on the bus.

What an EL tool such as Fivetran does after each sync: write the tables, then say "dataset D,
partition P is complete" — here with producer "fivetran". The bus is the one the settings name
(COORD_BUS, COORD_KAFKA_BOOTSTRAP_SERVERS, ...), so a coordinator running this example's
pipeline (`coord run examples/website_scores/pipeline.yaml`) picks the events up.

    python examples/website_scores/generate.py --lake data/lake --days 3 --users 2000
"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

from coordinator.bus.factory import open_bus
from coordinator.demo.landing import days_ending, land, publish_landed
from coordinator.demo.settings import DEFAULT_END_DAY
from coordinator.publish import Publisher
from coordinator.settings import Settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", type=Path, required=True, help="root folder of the data lake")
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--end", type=date.fromisoformat, default=DEFAULT_END_DAY,
                        help="the last day (YYYY-MM-DD)")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-publish", action="store_true", help="write the tables only")
    args = parser.parse_args(argv)
    landed = land(args.lake, days_ending(args.end, args.days), args.users, args.seed)
    for table in landed:
        print(f"{table.dataset}[{table.partition}]: {table.row_count} rows in {table.location}")
    if not args.no_publish:
        settings = Settings()
        with Publisher(open_bus(settings), settings) as publisher:
            print(f"published {publish_landed(publisher, landed)} completion events")


if __name__ == "__main__":
    main()
