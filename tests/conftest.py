"""Shared fixtures: every test starts from a clean chorus environment."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from config.settings import get_settings

_OWN_PREFIXES = ("CHORUS_", "ANTHROPIC_")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No CHORUS_/ANTHROPIC_ variable of the developer's leaks into a test."""
    for name in list(os.environ):
        if name.startswith(_OWN_PREFIXES) and name != "CHORUS_TEST_REDIS_URL":
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
