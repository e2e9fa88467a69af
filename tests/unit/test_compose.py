"""docker-compose.yml must stay valid; checked with whichever compose CLI the machine has."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.conftest import missing

ROOT = Path(__file__).resolve().parents[2]


def compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_file_is_valid() -> None:
    command = compose_command()
    if command is None:
        missing("docker compose", "neither `docker compose` nor `docker-compose` is installed")
    result = subprocess.run([*command, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_compose_names_the_whole_stack() -> None:
    import yaml

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert {"kafka", "postgres", "mlflow", "spark-master", "spark-worker", "coordinator"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
