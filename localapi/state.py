"""Everything a running local API remembers: its config, buckets, script, cache, stats and log.

All of it is touched only from the server's event loop (the threaded runner
hops onto that loop for its methods), so none of it needs a lock.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localapi.buckets import RateLimits
from localapi.cache import PromptCache
from localapi.config import LocalAPIConfig
from localapi.faults import FaultInjector
from localapi.script import Script
from localapi.stats import RequestLog, Stats

if TYPE_CHECKING:
    from localapi.batches import LocalBatch


def load_script_file(path: str | Path) -> list[Any]:
    """The rules in a JSON file (a list of rules)."""
    rules = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(rules, list):
        raise ValueError(f"{path}: a script file holds a JSON list of rules")
    return rules


class LocalAPIState:
    """The mutable side of one local API server."""

    def __init__(self, config: LocalAPIConfig | None = None) -> None:
        self.config = config or LocalAPIConfig()
        self.faults = FaultInjector(self.config)
        self.limits = self._new_limits()
        self.script = Script()
        self.cache = PromptCache()
        self.stats = Stats()
        self.log = RequestLog(self.config.log_size)
        # Message Batches by id (localapi.batches); each processes in a task of its own.
        self.batches: dict[str, LocalBatch] = {}
        self._file_rules = (
            load_script_file(self.config.script_path) if self.config.script_path else []
        )
        self.script.add(self._file_rules)

    def _new_limits(self) -> RateLimits:
        config = self.config
        return RateLimits(
            config.rpm, config.itpm, config.otpm, time.time(), config.limit_interval_s
        )

    def configure(self, changes: Mapping[str, Any]) -> LocalAPIConfig:
        """Apply field changes (ValueError if any is bad; then nothing changes)."""
        old = self.config
        new = old.with_changes(changes)
        self.config = new
        limits = ("rpm", "itpm", "otpm", "limit_interval_s")
        if any(getattr(new, name) != getattr(old, name) for name in limits):
            self.limits = self._new_limits()
        if new.seed != old.seed:
            self.faults = FaultInjector(new)
        else:
            self.faults.configure(new)
        if new.log_size != old.log_size:
            self.log.resize(new.log_size)
        return new

    def reset(self) -> None:
        """Forget stats, log, cache, buckets, Message Batches (stopping those still
        processing) and added script rules; keep the config. Runs on the server's loop.

        The rules of the start-up `--script` file are part of the config, so
        they come back.
        """
        self.stats = Stats(in_flight=self.stats.in_flight)
        # A Message Batch still processing stops: it would answer and bill into the new stats.
        for batch in self.batches.values():
            if batch.task is not None and not batch.task.done():
                batch.task.cancel()
        self.batches.clear()
        self.log.clear()
        self.cache.clear()
        self.limits = self._new_limits()
        self.faults = FaultInjector(self.config)
        self.script = Script()
        self.script.add(self._file_rules)
