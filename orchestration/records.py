"""The local record of what this machine submitted, to rebuild a batch Redis forgot.

Each batch submitted from a file leaves ``<state dir>/batches/<id>.json``
(its name and the options it was submitted with); :func:`rebuild` submits it
again from its input file when Redis lost the batch.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestration.batch import Batch


def _records_dir() -> Path:
    from orchestration.embedded import state_dir

    return state_dir() / "batches"


def remember(batch_id: str, name: str | None, options: dict[str, Any]) -> None:
    """Note how a batch was submitted from a file, so Redis losing it is not the end."""
    folder = _records_dir()
    folder.mkdir(parents=True, exist_ok=True)
    record = {"id": batch_id, "name": name, "options": options, "at": time.time()}
    (folder / f"{batch_id}.json").write_text(json.dumps(record))


def recall(id_or_name: str) -> dict[str, Any] | None:
    """The newest local record of a batch by id or name."""
    folder = _records_dir()
    if not folder.is_dir():
        return None
    found: list[dict[str, Any]] = []
    for path in folder.glob("*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if id_or_name in (record.get("id"), record.get("name")):
            found.append(record)
    return max(found, key=lambda r: r.get("at", 0), default=None)


def rebuild(id_or_name: str) -> Batch:
    """Submit again, from its input file, a batch this machine submitted and Redis forgot.

    Items whose calls were answered before are answered from the result
    store (keep it on a persistent Redis: ``CHORUS_STORE_URL``), so nothing
    is paid for twice.

    Raises:
        BatchNotFound: no local record of it.
        BatchInputError: its input file is gone or no longer valid.
    """
    from orchestration.batch import Batch, BatchNotFound

    record = recall(id_or_name)
    if record is None:
        raise BatchNotFound(
            f"no batch {id_or_name!r} in Redis and no local record of submitting it"
        )
    options = dict(record["options"])
    source = options.pop("source")
    name = record.get("name") or id_or_name
    return Batch.submit(source, name=name, **options)
