"""glibc's malloc arenas capped in a process that runs librdkafka's threads.

glibc gives a thread that allocates while another holds the lock an arena of its own, up to
eight per core, and keeps each arena's freed memory for that arena. librdkafka runs several
threads per client (its main thread, one per broker, the consumer's fetcher) and allocates and
frees every message buffer on them; the coordinator has a consumer, producers and admin clients.
Measured on Kafka + PostgreSQL (bench/memory.py, 300,000 events, one run each): with glibc's
default the serving process's resident memory rose ~5 MB per 100,000 events without end, all of
it memory malloc held free (what malloc had handed out stayed level at ~24 MB, Python's own
allocations level too, and malloc_trim gave none of it back); with two arenas it levelled off at
~128 MB after 100,000 events. The queue librdkafka pre-fetches into was not the cause: bounding it
to 2 MB changed nothing.

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
