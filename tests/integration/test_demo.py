"""``make demo``'s main job, on a local API that thinks by default as the default model does."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from orchestration.batch import Batch


@pytest.mark.slow
def test_the_demo_gets_a_complete_non_empty_answer_for_everything(redis_url: str) -> None:
    # Without ANTHROPIC_API_KEY the demo starts its own local API and workers;
    # the default model (claude-sonnet-5) thinks before every answer there.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CHORUS_"))}
    env["CHORUS_BROKER_URL"] = redis_url

    done = subprocess.run(
        [sys.executable, "-m", "orchestration.cli", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # A clean exit: no traceback, not even from Celery's results as the interpreter stops.
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    summary = done.stdout[done.stdout.index("summary") :]
    assert summary.count("100%") == 3, summary
    assert "winner: ''" not in done.stdout
    [batch_id] = re.findall(r"chorus results (b-[0-9a-f]+)", done.stdout)
    results = list(Batch.get(batch_id).results())
    assert len(results) == 200
    assert all(r["outcome"] == "complete" and r["text"].strip() for r in results)
    # They thought first: the thinking is in the content, kept as it came.
    assert all(
        r["content"][0]["type"] == "thinking"
        for r in results
        if r["usage"]["output_tokens_details"]["thinking_tokens"]
    )
