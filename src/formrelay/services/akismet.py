"""Akismet's comment-check, optional (AKISMET_API_KEY): its verdict marks a submission spam.

Akismet unreachable, slow or answering anything but "true" or "false" means not spam (a
message is never held back because a third party is away), and is logged.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from collections.abc import Sequence
from urllib.parse import urlencode

log = logging.getLogger("formrelay.akismet")


def akismet_says_spam(
    *,
    url: str,
    api_key: str,
    blog: str,
    fields: Sequence[tuple[str, str]],
    reply_to: str | None,
    remote_addr: str | None,
    user_agent: str | None,
    referrer: str | None,
    timeout: float,
) -> bool:
    """Ask Akismet whether this submission is spam; False when it cannot say."""
    content = "\n\n".join(f"{name}: {value}" for name, value in fields if value.strip())
    data = {
        "api_key": api_key,
        "blog": blog,
        "user_ip": remote_addr or "",
        "user_agent": user_agent or "",
        "referrer": referrer or "",
        "comment_type": "contact-form",
        "comment_content": content,
        "comment_author_email": reply_to or "",
    }
    request = urllib.request.Request(
        url,
        data=urlencode(data).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            verdict = str(response.read(64).decode("ascii", "replace")).strip()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        log.warning("Akismet did not answer; taking the submission for not spam: %s", exc)
        return False
    if verdict not in ("true", "false"):
        log.warning("Akismet answered %r; taking the submission for not spam", verdict[:64])
    return verdict == "true"
