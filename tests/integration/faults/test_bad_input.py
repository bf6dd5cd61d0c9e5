"""Empty, binary and hugely long input files: a clear error, bounded memory, nothing enqueued."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import redis

from tests.integration.conftest import Workers, chorus
from workers import keys


def test_an_empty_file_is_a_clear_error_and_enqueues_nothing(
    workers: Workers, redis_client: redis.Redis, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")

    done = chorus("submit", str(empty))

    assert done.returncode == 2
    assert "no items to run: the input is empty" in done.stderr
    assert redis_client.zcard(keys.batch_index()) == 0


def test_a_binary_file_is_a_clear_error_and_enqueues_nothing(
    workers: Workers, redis_client: redis.Redis, tmp_path: Path
) -> None:
    binary = tmp_path / "photo.jsonl"
    binary.write_bytes(bytes(range(256)) * 64)

    done = chorus("submit", str(binary))

    assert done.returncode == 2
    assert "nothing was enqueued" in done.stderr and "line 1:" in done.stderr
    assert redis_client.zcard(keys.batch_index()) == 0


def test_a_line_far_over_the_cap_is_read_in_bounded_memory(
    workers: Workers, redis_client: redis.Redis, tmp_path: Path
) -> None:
    path = tmp_path / "huge.jsonl"
    with open(path, "w") as out:
        out.write('{"prompt": "fine"}\n{"prompt": "')
        chunk = "x" * (1 << 20)
        for _ in range(300):  # a 300 MiB line
            out.write(chunk)
        out.write('"}\n')
    measure = (
        "import resource, subprocess, sys;"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
        "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss);"
        "print(done.stderr, file=sys.stderr)"
    )

    done = subprocess.run(
        [
            sys.executable,
            "-c",
            measure,
            sys.executable,
            "-m",
            "orchestration.cli",
            "submit",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )

    code, peak_kib = done.stdout.split()
    assert code == "2"
    assert "line 2: 314,572,815 bytes, over the 10,485,760-byte line cap" in done.stderr
    assert int(peak_kib) < 200 * 1024  # far below the 300 MiB line
    assert redis_client.zcard(keys.batch_index()) == 0
