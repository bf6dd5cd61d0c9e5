"""chorus for producers: everything a script needs, from one place.

::

    from orchestration import request_from_prompt, submit, wait        # one call
    from orchestration import Batch                                     # batches
    from orchestration import sectioning, voting, fan_out_fan_in        # patterns

Each name is imported on first use (PEP 562), so ``import orchestration`` and
the ``chorus`` command stay fast: the Celery app loads only when a call, a
batch or a pattern is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> the module that owns it, grouped as a producer meets them.
_EXPORTS: dict[str, str] = {
    # One call: build a request, send it, wait for its envelope.
    "request_from_prompt": "orchestration.client",
    "submit": "orchestration.client",
    "wait": "orchestration.client",
    "result_of": "orchestration.client",
    "workers_online": "orchestration.client",
    "CallRequest": "workers.models",
    "Envelope": "workers.models",
    # Batches: submit a JSONL file or items, follow, collect, control.
    "Batch": "orchestration.batch",
    "BatchStatus": "workers.ledger",
    # Patterns: chords of calls with one fan-in.
    "sectioning": "orchestration.patterns",
    "voting": "orchestration.patterns",
    "fan_out_fan_in": "orchestration.patterns",
    "Section": "orchestration.patterns",
    "Vote": "orchestration.patterns",
    "FanOut": "orchestration.patterns",
    "Handle": "orchestration.patterns",
    "PatternResult": "workers.fanin.results",
    # Errors: one tree under ChorusError (workers/errors.py).
    "ChorusError": "workers.errors",
    "InvalidRequest": "workers.errors",
    "BatchInputError": "orchestration.batchfile",
    "InvalidBatchFile": "orchestration.batch",
    "BatchNotFound": "orchestration.batch",
    "StateUnavailable": "orchestration.batch",
    "PatternError": "orchestration.patterns",
}

__all__ = [
    "Batch",
    "BatchInputError",
    "BatchNotFound",
    "BatchStatus",
    "CallRequest",
    "ChorusError",
    "Envelope",
    "FanOut",
    "Handle",
    "InvalidBatchFile",
    "InvalidRequest",
    "PatternError",
    "PatternResult",
    "Section",
    "StateUnavailable",
    "Vote",
    "fan_out_fan_in",
    "request_from_prompt",
    "result_of",
    "sectioning",
    "submit",
    "voting",
    "wait",
    "workers_online",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestration' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next use is a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:
    from orchestration.batch import Batch, BatchNotFound, InvalidBatchFile, StateUnavailable
    from orchestration.batchfile import BatchInputError
    from orchestration.client import request_from_prompt, result_of, submit, wait, workers_online
    from orchestration.patterns import (
        FanOut,
        Handle,
        PatternError,
        Section,
        Vote,
        fan_out_fan_in,
        sectioning,
        voting,
    )
    from workers.errors import ChorusError, InvalidRequest
    from workers.fanin.results import PatternResult
    from workers.ledger import BatchStatus
    from workers.models import CallRequest, Envelope
