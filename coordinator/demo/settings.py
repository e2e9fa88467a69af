"""The demo's options and the settings it runs with: the embedded defaults under one home folder.

Everything the environment sets (COORD_BUS=kafka, COORD_STATE_URL, COORD_MLFLOW_TRACKING_URI,
COORD_PRODUCT_DB_URL, ...) is kept, so the same command runs on the real stack; only the home
folder — where the embedded defaults keep their files and the lake lives — is the demo's own.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from coordinator.settings import Settings

DEFAULT_HOME = Path(".coord/demo")
# A fixed last day: the journey is the same whenever it runs, so running it again is a no-op.
DEFAULT_END_DAY = date(2025, 6, 3)
# A day of the demo's Spark job is a few seconds of work in a JVM that lives no longer: compiled by
# C1 alone (no C2 warm-up that never pays back) with the serial collector (no GC threads), it ends
# sooner on fewer cores. Measured: one day of user_features on local[2], 18-20 s of CPU → 10-11 s.
QUICK_LOCAL_JVM = {"spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"}


def example_dir() -> Path:
    """examples/website_scores beside the package in a checkout, else under the current folder
    (an installed package, as in the Docker image, whose working folder holds examples/)."""
    beside = Path(__file__).resolve().parents[2] / "examples" / "website_scores"
    return beside if beside.is_dir() else Path.cwd() / "examples" / "website_scores"


class DemoOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    home: Path = DEFAULT_HOME
    days: int = Field(default=3, ge=1, le=30)
    users: int = Field(default=2000, ge=10, le=1_000_000)
    seed: int = 7
    end_day: date = DEFAULT_END_DAY
    timeout_s: float = Field(default=1800.0, gt=0)
    spec_path: Path = Field(default_factory=lambda: example_dir() / "pipeline.yaml")

    @property
    def lake(self) -> Path:
        return (self.home / "lake").resolve()

    @property
    def app_export(self) -> Path:
        """Where the app writes its daily export (the journey's source)."""
        return (self.home / "app_export").resolve()


def demo_settings(options: DemoOptions, **overrides: object) -> Settings:
    """The environment's settings with the demo's home folder (and any explicit overrides); reads
    need no token, as the demo is looked at on this machine (honoured on a loopback address only).
    A local Spark given no --conf defaults gets the quick JVM (a cluster's are its own)."""
    settings = Settings(home=options.home.resolve(), **{"anonymous_reads": True, **overrides})
    if not settings.spark_conf and settings.spark_master.startswith("local"):
        settings = settings.model_copy(update={"spark_conf": QUICK_LOCAL_JVM})
    return settings
