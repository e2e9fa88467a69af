"""The malloc arena cap the Kafka bus sets (coordinator/bus/kafka_memory.py), seen in glibc's own
report (malloc_info: one <heap> per arena) of a fresh interpreter whose threads all allocate at
once. Each case runs in a process of its own: the cap is process-wide and cannot be undone."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

THREADS = 6
SCRIPT = textwrap.dedent(
    f"""
    import ctypes, sys, threading
    from coordinator.bus.factory import open_bus
    from coordinator.settings import Settings

    open_bus(Settings(bus="kafka", malloc_arena_max=int(sys.argv[1])))  # connects nothing
    together = threading.Barrier({THREADS})
    kept = []

    def allocate():
        together.wait()  # all alive at once: none inherits an arena another thread let go
        kept.append([bytearray(1000) for _ in range(100)])  # past Python's small-object allocator
        together.wait()

    threads = [threading.Thread(target=allocate) for _ in range({THREADS})]
    for t in threads: t.start()
    for t in threads: t.join()
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    libc.malloc_info(0, ctypes.c_void_p.in_dll(libc, "stdout"))
    libc.fflush(None)
    """
)


def arenas(cap: int, environment: dict[str, str] | None = None) -> int:
    """Arenas of a process that opened the Kafka bus with `cap`, MALLOC_ARENA_MAX as `environment` says."""
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | (environment or {})
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(cap)], capture_output=True, text=True, timeout=60, check=True,
        env=env,
    )  # fmt: skip
    return run.stdout.count("<heap nr=")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_the_kafka_bus_caps_malloc_arenas() -> None:
    assert arenas(1) == 1
    assert arenas(2) == 2
    assert arenas(0) > 2  # glibc's default: an arena for each thread that allocated at once


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_the_environment_wins() -> None:
    assert arenas(1, {"MALLOC_ARENA_MAX": "3"}) == 3
