"""The ledger contract on a real Redis (Lua 5.1, its own clock): the proof."""

from __future__ import annotations

import pytest
import redis

from tests.ledger_contract import LedgerContract


class TestLedgerOnRealRedis(LedgerContract):
    @pytest.fixture(autouse=True)
    def _client(self, redis_client: redis.Redis) -> None:
        self.client = redis_client
