"""Finished results by content address, so nothing is paid for twice.

See the README, "Nothing is paid for twice", and docs/RELIABILITY.md.

A call's envelope is stored under its key once the API answered it, complete
or not (a truncated or refused answer was paid for too). A redelivered
message, a resubmitted batch or an identical request finds it there and makes
no API call. While one worker is making a call it holds a short claim on the
key; a duplicate arriving meanwhile waits for that result instead of paying
for the same answer again.

A call that failed (no message) is not stored: it may succeed when tried
again. ``chorus retry`` asks again on purpose: its calls pass ``ask_again``, so
a stored answer that is not complete is replaced rather than returned.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import redis

from workers import keys
from workers.models import Envelope
from workers.redisio import Command, LuaScript, run_together

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


class Look(NamedTuple):
    """What looking for a call's stored result found: the result, or the claim.

    ``stored`` is the result stored for the call (then ``claimed`` is False);
    otherwise ``claimed`` says whether this caller now holds the call's claim
    (False: another caller holds it and is making the call).
    """

    stored: Envelope | None
    claimed: bool


class ResultStore:
    """Envelopes of finished calls in Redis, with claims on calls in flight.

    A claim is a lease: it lives ``claim_ttl_s`` and a thread of the holding
    process renews it every third of that while the call runs. A process that
    dies stops renewing, so its claims lapse within ``claim_ttl_s`` and a
    redelivered call takes over instead of waiting out the whole time limit.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        endpoint: str,
        ttl_s: int,
        claim_ttl_s: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``sleep``: how the claim keeper waits between renewals (a test steps it)."""
        self._redis = client
        self._sleep = sleep
        self._endpoint = endpoint
        self._ttl_s = ttl_s
        self._claim_ttl_ms = max(1000, int(claim_ttl_s * 1000))
        self._release = LuaScript(client, _RELEASE)
        self._renew = LuaScript(client, _RENEW)
        self._held: dict[str, str] = {}
        self._held_lock = threading.Lock()
        self._keeper: threading.Thread | None = None

    def put(self, envelope: Envelope) -> None:
        if envelope.outcome.answered:
            run_together([self.put_command(envelope)])

    def put_command(self, envelope: Envelope) -> Command:
        return Command(
            self._redis,
            (
                "SET",
                keys.result(self._endpoint, envelope.idempotency_key),
                envelope.model_dump_json(),
                "EX",
                self._ttl_s,
            ),
        )

    def claim(self, call_key: str, owner: str) -> bool:
        """Take the claim on ``call_key``; False when another owner holds it."""
        [claimed] = run_together([self._claim_command(call_key, owner)])
        if claimed:
            self._hold(keys.claim(self._endpoint, call_key), owner)
        return bool(claimed)

    def _claim_command(self, call_key: str, owner: str) -> Command:
        return Command(
            self._redis,
            ("SET", keys.claim(self._endpoint, call_key), owner, "NX", "PX", self._claim_ttl_ms),
            then=bool,
        )

    def look_commands(self, call_key: str, owner: str) -> list[Command]:
        """Try the claim on ``call_key``, then read its stored result: one round trip.

        Claim first: whoever holds the claim is the only one who may store a
        result, so a result missing after our claim succeeded cannot appear
        until we store it. Read the replies with :meth:`looked`.
        """
        return [
            self._claim_command(call_key, owner),
            Command(self._redis, ("GET", keys.result(self._endpoint, call_key))),
        ]

    def looked(
        self,
        call_key: str,
        owner: str,
        replies: Sequence[Any],
        *,
        ask_again: bool = False,
    ) -> Look:
        """(the stored result, False), (None, True) holding the claim, or (None, False)
        while another caller holds it; from the replies of :meth:`look_commands`.

        ``ask_again``: a stored answer that is not complete (truncated, refused,
        ...) does not count; the call is made again (``chorus retry``) and its
        new answer replaces it.
        """
        claimed, raw = replies
        if raw is not None:
            stored = Envelope.model_validate_json(raw)
            if not (ask_again and not stored.ok):
                if claimed:
                    self.release(call_key, owner)
                return Look(stored, False)
        if claimed:
            self._hold(keys.claim(self._endpoint, call_key), owner)
        return Look(None, claimed)

    def stored(self, call_key: str) -> Envelope | None:
        """The result stored for ``call_key``, or None (read only: no claim taken)."""
        [stored] = run_together([self.stored_command(call_key)])
        return stored  # type: ignore[no-any-return]

    def stored_command(self, call_key: str) -> Command:
        """:meth:`stored` as a command; its reply is the envelope, or None."""
        return Command(
            self._redis,
            ("GET", keys.result(self._endpoint, call_key)),
            then=lambda raw: None if raw is None else Envelope.model_validate_json(raw),
        )

    def look(self, call_key: str, owner: str, *, ask_again: bool = False) -> Look:
        """:meth:`look_commands` and :meth:`looked`, sent at once."""
        replies = run_together(self.look_commands(call_key, owner))
        return self.looked(call_key, owner, replies, ask_again=ask_again)

    def release(self, call_key: str, owner: str) -> None:
        run_together([self.release_command(call_key, owner)])

    def release_command(self, call_key: str, owner: str) -> Command:
        """Release the claim (only if still ``owner``'s); it stops being renewed at once."""
        key = keys.claim(self._endpoint, call_key)
        with self._held_lock:
            self._held.pop(key, None)
        return self._release.command(keys=[key], args=[owner])

    def _hold(self, key: str, owner: str) -> None:
        with self._held_lock:
            self._held[key] = owner
            if self._keeper is None or not self._keeper.is_alive():
                self._keeper = threading.Thread(
                    target=self._keep, name="chorus-claim-keeper", daemon=True
                )
                self._keeper.start()

    def _keep(self) -> None:
        while True:
            self._sleep(self._claim_ttl_ms / 3000)
            self.renew_claims()

    def renew_claims(self) -> None:
        """Renew every claim this process holds (the keeper's round, every third of a lease)."""
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
