"""A reference for delivery: the minimal sender, formrelay's worker's yardstick.

One process, one `smtplib` connection, and nothing else: it sends the messages it is given,
the exact bytes formrelay's worker sent (envelope sender, recipients and data, as the mail
sink received them), one after the other with `sendmail`, to the same sink. What it leaves
out is all the worker does beyond that: claiming deliveries, building each message,
recording each outcome. It runs at the worker's priority (FORMRELAY_WORKER_NICE, lowered
the way `formrelay worker` lowers its own), so that on a busy machine both get the same
share of the CPU.

    python -m bench.reference_send MESSAGES.json HOST PORT

MESSAGES.json is a list of `[sender, [recipient, ...], data in base64]`; the last line
printed is a JSON object with the messages sent and the rate between the first and the
last, counted as the worker's `sent_at` times are.
"""

from __future__ import annotations

import base64
import json
import smtplib
import sys
import time
from pathlib import Path
from typing import Any

Envelope = tuple[str, list[str], bytes]


def load(path: Path) -> list[Envelope]:
    return [
        (sender, list(recipients), base64.b64decode(data))
        for sender, recipients, data in json.loads(path.read_text())
    ]


def dump(messages: list[Envelope], path: Path) -> None:
    path.write_text(
        json.dumps(
            [
                [sender, recipients, base64.b64encode(data).decode()]
                for sender, recipients, data in messages
            ]
        )
    )


def send(messages: list[Envelope], host: str, port: int) -> dict[str, Any]:
    """Send every message over one connection; the rate from the first send to the last."""
    done: list[float] = []
    with smtplib.SMTP(host, port, timeout=30) as conn:
        conn.ehlo()
        for sender, recipients, data in messages:
            conn.sendmail(sender, recipients, data)
            done.append(time.monotonic())
    span = done[-1] - done[0] if len(done) > 1 else 0.0
    return {
        "messages": len(done),
        "bytes": sum(len(data) for _, _, data in messages),
        "rate_per_s": (len(done) - 1) / span if span > 0 else 0.0,
    }


if __name__ == "__main__":
    from formrelay.settings import load_settings
    from formrelay.worker.priority import lower_priority

    lower_priority(load_settings().worker_nice)
    print(json.dumps(send(load(Path(sys.argv[1])), sys.argv[2], int(sys.argv[3]))))
