"""Finished results by content address, so nothing is paid for twice (DESIGN.md decision 4).

A call's envelope is stored under its key once it succeeds. A redelivered
message, a resubmitted batch or an identical request finds it there and makes
no API call. While one worker is making a call it holds a short claim on the
key; a duplicate arriving meanwhile waits for that result instead of paying
for the same answer again.

Only successes are stored: a failed call may succeed when tried again, and
``chorus retry --failed`` must be able to try it.
"""

from __future__ import annotations

import contextlib
import threading
import time

import redis

from workers import keys
from workers.models import Envelope

# Deletes the claim only if it is still ours: a claim that expired and was
# taken by another worker must not be released by the first.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""
# Extends the claim only if it is still ours.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class ResultStore:
    """Envelopes of finished calls in Redis, with claims on calls in flight.

    A claim is a lease: it lives ``claim_ttl_s`` and a thread of the holding
    process renews it every third of that while the call runs. A process that
    dies stops renewing, so its claims lapse within ``claim_ttl_s`` and a
    redelivered call takes over instead of waiting out the whole time limit.
    """

    def __init__(
        self, client: redis.Redis, *, endpoint: str, ttl_s: int, claim_ttl_s: float
    ) -> None:
        self._redis = client
        self._endpoint = endpoint
        self._ttl_s = ttl_s
        self._claim_ttl_ms = max(1000, int(claim_ttl_s * 1000))
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)
        self._held: dict[str, str] = {}
        self._held_lock = threading.Lock()
        self._keeper: threading.Thread | None = None

    def get(self, call_key: str) -> Envelope | None:
        raw = self._redis.get(keys.result(self._endpoint, call_key))
        return None if raw is None else Envelope.model_validate_json(raw)

    def put(self, envelope: Envelope) -> None:
        if envelope.ok:
            self._redis.set(
                keys.result(self._endpoint, envelope.key),
                envelope.model_dump_json(),
                ex=self._ttl_s,
            )

    def claim(self, call_key: str, owner: str) -> bool:
        """Take the claim on ``call_key``; False when another owner holds it."""
        key = keys.claim(self._endpoint, call_key)
        if not self._redis.set(key, owner, nx=True, px=self._claim_ttl_ms):
            return False
        with self._held_lock:
            self._held[key] = owner
            if self._keeper is None or not self._keeper.is_alive():
                self._keeper = threading.Thread(
                    target=self._keep, name="chorus-claim-keeper", daemon=True
                )
                self._keeper.start()
        return True

    def release(self, call_key: str, owner: str) -> None:
        key = keys.claim(self._endpoint, call_key)
        with self._held_lock:
            self._held.pop(key, None)
        self._release(keys=[key], args=[owner])

    def _keep(self) -> None:
        while True:
            time.sleep(self._claim_ttl_ms / 3000)
            with self._held_lock:
                held = list(self._held.items())
            for key, owner in held:
                # A failed renewal lets the claim lapse early: at worst a duplicate
                # waits less, and the result store still answers it.
                with contextlib.suppress(redis.RedisError):
                    self._renew(keys=[key], args=[owner, self._claim_ttl_ms])

    @property
    def redis(self) -> redis.Redis:
        return self._redis

    def count_delivery(self, task_id: str, ttl_s: int) -> int:
        """Count one more delivery of ``task_id``'s message; returns the count."""
        key = keys.deliveries(task_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, ttl_s)
        count, _ = pipe.execute()
        return int(count)
