"""Following a batch without a terminal: a plain line every few seconds, notices once."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from rich.console import Console

from orchestration import progress
from workers.ledger import BatchStatus


class SteppedBatch:
    """Stands in for a Batch: each poll is one second later and one more item ended."""

    def __init__(self, total: int, clock: list[float]) -> None:
        self.total = total
        self.clock = clock

    def status(self, ended: int) -> BatchStatus:
        refused = 2 if ended >= 3 else 0  # two items declined, from the third second on
        return BatchStatus(
            id="b-1",
            name="reviews",
            state="done" if ended == self.total else "running",
            total=self.total,
            counts={"complete": ended - refused, "failed": refused, "pending": self.total - ended},
            errors={"refused": refused},
        )

    def wait(
        self,
        timeout_s: float | None = None,
        *,
        poll_s: float = 0.5,
        on_progress: Callable[[BatchStatus], None] | None = None,
    ) -> BatchStatus:
        for ended in range(self.total + 1):
            status = self.status(ended)
            assert on_progress is not None
            on_progress(status)
            if status.finished:
                return status
            self.clock[0] += 1.0
        raise AssertionError("unreachable")


def test_without_a_terminal_a_line_every_five_seconds_and_each_notice_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    out = io.StringIO()
    console = Console(file=out, width=300)
    assert not console.is_terminal

    status = progress.follow(SteppedBatch(12, clock), console)  # type: ignore[arg-type]

    lines = out.getvalue().splitlines()
    progress_lines = [line for line in lines if line.startswith("b-1 (reviews): ")]
    # At 0, 5 and 10 s, and the end (12 s).
    assert [line.split(": ")[1].split(" ended")[0] for line in progress_lines] == [
        "0/12",
        "5/12",
        "10/12",
        "12/12",
    ]
    assert "· complete 10 · refused 2 · failed 0 · running 0" in progress_lines[-1]
    notices = [line for line in lines if "declined by the model" in line]
    assert len(notices) == 1, lines
    assert status.finished
    assert "\x1b[" not in out.getvalue()  # no styles, no cursor moves in a log


def test_the_plain_line_says_where_the_batch_is() -> None:
    status = BatchStatus(
        id="b-2", total=4, counts={"complete": 1, "running": 1, "pending": 2}, cost_usd=0.5
    )
    line = progress.plain_line(status, 0.5)
    assert line.startswith("b-2: 1/4 ended (25%) · complete 1 · failed 0 · running 1")
    assert "0.5 items/s · ETA 6 s" in line and "cost $0.5000" in line
