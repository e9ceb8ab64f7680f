"""Text that goes on one line: headers, subjects, display names, what a terminal shows."""

from __future__ import annotations

import re

# C0 and C1 control characters and DEL: never part of a name, a URL or a header.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Those, and Unicode's line and paragraph separators: whatever can break or fake a line.
LINE_BREAKERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(value: str) -> str:
    """`value` on one line: control characters and line breaks become spaces, and runs of
    whitespace one space, trimmed."""
    return " ".join(LINE_BREAKERS.sub(" ", value).split())
