"""The ledger contract on fakeredis (Lua 5.4 through lupa): fast, but not proof alone."""

from __future__ import annotations

import fakeredis
import pytest

from tests.ledger_contract import LedgerContract


class TestLedgerOnFakeRedis(LedgerContract):
    @pytest.fixture(autouse=True)
    def _client(self) -> None:
        self.client = fakeredis.FakeRedis()
