"""One call writes a shared prefix to the prompt cache; the others wait for it to return.

A batch's items or a pattern's branches that share a marked prefix
(``orchestration.prefix``) carry ``{"prefix": {"digest": ..., "lead": ...}}``
in their task options. The lead call runs at once and, when it has returned
(whatever its outcome), sets ``keys.prefix_lead(digest)``; the API has then
written the prefix, since it caches a prefix once the response begins
(build-with-claude/prompt-caching, "How prompt caching works"). Every other
call waits on its worker, before it claims the call or reserves its tokens,
until that key is set or ``CHORUS_CACHE__LEAD_WAIT_S`` has passed; then it
reads the cache instead of writing it again. A call that waited the whole time
sets the key itself, so a lead lost with its worker costs one wait (of the
calls waiting then), never an item, and the calls after it do not wait again.
"""

from __future__ import annotations

import time

import redis
from pydantic import BaseModel

from workers import keys

# How long the mark stays: the longest TTL a prefix may be cached for (1 hour).
MARK_TTL_S = 3600
_FIRST_POLL_S = 0.05
_MAX_POLL_S = 0.5


class PrefixOption(BaseModel):
    """A call's place in its prefix group: the group's digest, and whether it leads."""

    digest: str
    lead: bool = False


def lead_returned(client: redis.Redis, digest: str) -> None:
    """The lead call of ``digest`` returned: the calls waiting for it may go."""
    client.set(keys.prefix_lead(digest), 1, ex=MARK_TTL_S)


def wait_for_lead(client: redis.Redis, digest: str, wait_s: float) -> float:
    """Wait until the lead call of ``digest`` returned, at most ``wait_s``; seconds waited.

    Raises:
        redis.RedisError: Redis cannot be reached (the task puts its work back).
    """
    started = time.monotonic()
    key = keys.prefix_lead(digest)
    pause = _FIRST_POLL_S
    while not client.exists(key):
        waited = time.monotonic() - started
        if waited >= wait_s:
            # The lead is lost (its worker died) or slow: this call goes, writing the
            # prefix itself, and the calls after it stop waiting for the lost one.
            lead_returned(client, digest)
            break
        time.sleep(min(pause, wait_s - waited))
        pause = min(pause * 2, _MAX_POLL_S)
    return time.monotonic() - started
