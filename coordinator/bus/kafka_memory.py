"""glibc's malloc arenas capped in a process that runs librdkafka's threads.

glibc gives threads malloc arenas of their own (a new one for a new thread's first allocation,
up to eight per core) and keeps what is freed in an arena for that arena. librdkafka runs several
threads per client (its main thread, one per broker, the consumer's fetcher) and allocates and
frees every message buffer on them; the coordinator has a consumer, producers and admin clients.
Measured on Kafka + PostgreSQL (bench/memory.py: a serving coordinator, one run an event, the
memory read after each chunk), over 600,000 events: with glibc's default arenas resident memory
rose 130 -> 153 MB (4.1 MB per 100,000 events after the warm-up, still rising at the end), the
memory malloc held free doubling (17 -> 35 MB) while what it had handed out stayed at ~25 MB and
Python's own objects were level, and malloc_trim gave none of it back; with two arenas, 126 -> 138
MB (2.0 MB per 100,000, 1.4 over the second half; free memory held at 15-22 MB). The queue
librdkafka pre-fetches into was not the cause: bounded to 2 MB it changed nothing.

`cap_malloc_arenas(n)` sets glibc's M_ARENA_MAX for the arenas created from then on (those that
exist stay), so it is called before the first Kafka client starts its threads. The environment's
MALLOC_ARENA_MAX, when set, is glibc's own and wins; elsewhere than glibc nothing is done.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger(__name__)
M_ARENA_MAX = -8  # mallopt's parameter number (glibc's malloc.h)


def cap_malloc_arenas(arenas: int) -> bool:
    """At most `arenas` malloc arenas for this process from now on; 0 leaves glibc's default.
    True when the cap was set (glibc only, and not when MALLOC_ARENA_MAX is in the environment)."""
    if arenas <= 0 or "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 — glibc's: musl and others have other allocators
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    done = mallopt(M_ARENA_MAX, arenas) == 1
    if not done:
        log.info("malloc arenas not capped (mallopt refused M_ARENA_MAX=%d)", arenas)
    return done
