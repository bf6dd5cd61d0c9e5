"""Every Redis key chorus writes, in one place.

Celery's and kombu's own keys (``celery-task-meta-*``, ``_kombu.*``, the
queue lists) are theirs; everything of ours starts with ``chorus:``. No key
and no value ever holds an API key: limits are keyed by a short hash of it.
"""

from __future__ import annotations

PREFIX = "chorus:"


def result(endpoint: str, call_key: str) -> str:
    """The stored envelope of a finished call (idempotency).

    ``endpoint`` is a hash of the API's base URL and key: an answer from the
    local API is never served to a call meant for the real one.
    """
    return f"{PREFIX}result:{endpoint}:{call_key}"


def claim(endpoint: str, call_key: str) -> str:
    """Held while one worker is making a call, so a duplicate waits instead of paying."""
    return f"{PREFIX}claim:{endpoint}:{call_key}"


def deliveries(task_id: str) -> str:
    """How many times a task's message has been delivered to a worker."""
    return f"{PREFIX}deliveries:{task_id}"


def limit(bucket_id: str) -> str:
    """The buckets of one limit key (a hash)."""
    return f"{PREFIX}rl:{{{bucket_id}}}:buckets"


def cooldown(bucket_id: str) -> str:
    """Until when every caller of a limit key holds back after a 429."""
    return f"{PREFIX}rl:{{{bucket_id}}}:cooldown"


def limit_stats(bucket_id: str) -> str:
    """Counters of a limit key: grants, refusals, time waited."""
    return f"{PREFIX}rl:{{{bucket_id}}}:stats"


def limit_index() -> str:
    """The set of limit keys in use, for ``chorus limits --live``."""
    return f"{PREFIX}rl:index"


def prefix_lead(digest: str) -> str:
    """Set once the call that writes a shared prefix to the prompt cache has returned."""
    return f"{PREFIX}prefix:{digest}:lead"


def vote(vote_id: str) -> str:
    """The running count of a vote's answers (a hash), for early stop."""
    return f"{PREFIX}vote:{vote_id}"


def vote_decided(vote_id: str) -> str:
    """Set once one answer holds a majority of a vote: later samples are not sent."""
    return f"{PREFIX}vote:{vote_id}:decided"


# Batches. Every key of one batch carries the same {hash tag}, so a Redis
# Cluster keeps them on one slot and the ledger's scripts can touch them all.


def batch(batch_id: str) -> str:
    """A batch's meta and counters (a hash): constant-time status."""
    return f"{PREFIX}batch:{{{batch_id}}}"


def batch_items(batch_id: str) -> str:
    """Each item's state, one letter per index (a hash)."""
    return f"{PREFIX}batch:{{{batch_id}}}:items"


def batch_results(batch_id: str) -> str:
    """Each ended item's result, JSON per index (a hash)."""
    return f"{PREFIX}batch:{{{batch_id}}}:results"


def batch_ids(batch_id: str) -> str:
    """The items' ids in input order (a list)."""
    return f"{PREFIX}batch:{{{batch_id}}}:ids"


def batch_requests(batch_id: str) -> str:
    """Each item's request, JSON per index (a hash): retry and resume need no input file."""
    return f"{PREFIX}batch:{{{batch_id}}}:requests"


def batch_ended(batch_id: str) -> str:
    """A token pushed when the batch ends (a list): a waiting producer wakes at once."""
    return f"{PREFIX}batch:{{{batch_id}}}:ended"


def batch_upstream(batch_id: str) -> str:
    """The Message Batches a batch's items were sent in (a hash: its id -> what it holds)."""
    return f"{PREFIX}batch:{{{batch_id}}}:upstream"


def batch_keys(batch_id: str) -> list[str]:
    """Every key of a batch; the ledger's scripts take them in this order."""
    return [
        batch(batch_id),
        batch_items(batch_id),
        batch_results(batch_id),
        batch_ids(batch_id),
        batch_requests(batch_id),
        batch_ended(batch_id),
        batch_upstream(batch_id),
    ]


def batch_index() -> str:
    """Every batch by creation time (a sorted set), for ``chorus ls``."""
    return f"{PREFIX}batches"


def batch_names() -> str:
    """Batch names to ids (a hash): a name given again resumes its batch."""
    return f"{PREFIX}batch-names"


def flower_watching() -> str:
    """Set while a Flower (``orchestration.flowerapp``) runs: a worker starting then sends
    task events from its first task."""
    return f"{PREFIX}flower-watching"
