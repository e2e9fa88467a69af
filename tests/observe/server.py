"""Serving the app with uvicorn on 127.0.0.1 (a free port) and the engine, each on a thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from coordinator.engine import Coordinator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@contextmanager
def engine_running(coord: Coordinator) -> Iterator[Coordinator]:
    stop = threading.Event()
    thread = threading.Thread(target=coord.run, kwargs={"stop": stop.is_set}, daemon=True)
    thread.start()
    try:
        yield coord
    finally:
        stop.set()
        thread.join(60)
