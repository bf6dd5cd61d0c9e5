"""``chorus submit FILE --dry-run``: nothing is sent, the worst case bounds what the run
then costs, and the input estimate lands within the documented error of the API's count."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import redis

from localapi import LocalAPIServer
from orchestration.batch import Batch
from tests.integration.conftest import BRIEF, Workers, chorus

pytestmark = pytest.mark.integration

TIMEOUT_S = 120
# The documented bound of the local estimate on prose (docs/PERFORMANCE.md: 15 % on
# the classic tokenizer, 17 % on the newer one).
ESTIMATE_ERROR = 0.17
PROSE = (
    "Summarise this customer review of order {i} in one sentence: the parcel came two "
    "days late, the box was dented at one corner, but the kettle inside works well, boils "
    "quickly and quietly, and the support team answered my email within the hour."
)


def test_a_dry_run_sends_nothing_and_bounds_the_run_that_follows(
    workers: Workers, local_api: LocalAPIServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": f"d{i}", "prompt": PROSE.format(i=i)}) + "\n" for i in range(1000)
        )
    )
    brief = ["--max-tokens", str(BRIEF["max_tokens"]), "--effort", BRIEF["effort"]]

    done = chorus("submit", str(path), "--dry-run", "--deadline", "30s", *brief)

    assert done.returncode == 0, done.stderr
    assert "1,000 items, nothing sent" in done.stdout
    assert not list(redis_client.scan_iter(match="chorus:batch*"))
    assert local_api.stats()["requests"] == 0
    realtime = re.search(r"realtime\s*│\s*\$([\d,.]+)\s*│\s*\$([\d,.]+)", done.stdout)
    batches = re.search(r"batches\s*│\s*\$([\d,.]+)\s*│\s*\$([\d,.]+)", done.stdout)
    assert realtime and batches, done.stdout
    input_only, worst = (float(g.replace(",", "")) for g in realtime.groups())
    assert float(batches.group(2).replace(",", "")) == pytest.approx(worst / 2, rel=0.01)
    # With a deadline, auto's split: part at the real-time price, the rest at half.
    auto = re.search(r"auto\s*│\s*\$([\d,.]+)\s*│\s*\$([\d,.]+)", done.stdout)
    assert auto, done.stdout
    assert worst / 2 < float(auto.group(2).replace(",", "")) < worst  # some of each
    assert "in real time" in done.stderr
    estimated = int(
        re.search(r"about ([\d,]+) input tokens", done.stderr).group(1).replace(",", "")
    )  # type: ignore[union-attr]

    status = Batch.submit(path, **BRIEF).wait(TIMEOUT_S)

    assert status.finished and status.count("complete") == 1000
    assert input_only <= status.cost_usd <= worst
    counted = local_api.stats()["input_tokens"]
    assert abs(estimated - counted) <= ESTIMATE_ERROR * counted, (estimated, counted)
