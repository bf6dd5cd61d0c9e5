"""Where worker processes' output goes (orchestration.fleet): a rotated file, or prefixed lines.

The processes here are small Python programs that write numbered lines;
``tests/integration/test_worker_logs.py`` runs real workers.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from config.settings import SettingsError, load_settings
from orchestration.fleet import Fleet, LogFiles, follow_output, prefixed, start_workers

LINES = 400
# Each line is 60 bytes with its newline: a 2 KiB file holds 34 of them.
WRITER = (
    "import sys\n"
    "name = sys.argv[1]\n"
    "for i in range({lines}):\n"
    "    print(f'{{name}} line {{i:04d}} ' + 'x' * (46 - len(name)), flush=True)\n"
    "print(f'{{name}} said this on stderr', file=sys.stderr, flush=True)\n"
)


def writer(name: str, lines: int = LINES) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER.format(lines=lines), name],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_each_process_writes_its_own_file_rotated_between_lines(tmp_path: Path) -> None:
    # Given two processes whose output goes to 2 KiB files, two old ones kept
    files = LogFiles(tmp_path / "logs", max_bytes=2048, backups=2)
    fleet = Fleet()
    for name in ("w1@host", "w2@host"):
        write, close = files.sink(name)
        follow_output(fleet.add(writer(name)), write, fleet, name=name, close=close)

    # When they have written 400 lines each and exited
    assert fleet.wait() == [0, 0]

    # Then each has its file and two rotated ones, no more, none past the size
    names = sorted(p.name for p in files.directory.iterdir())
    assert names == [f"w{n}.log{s}" for n in (1, 2) for s in ("", ".1", ".2")]
    for node in ("w1", "w2"):
        newest_first = [files.directory / f"{node}.log{s}" for s in ("", ".1", ".2")]
        assert all(p.stat().st_size <= 2048 for p in newest_first)
        kept = [line for p in reversed(newest_first) for line in p.read_text().splitlines()]
        # every line whole and its own process's, the newest kept in order, stderr too
        assert kept[-1] == f"{node}@host said this on stderr"
        whole = [re.fullmatch(rf"{node}@host line (\d{{4}}) x+", line) for line in kept[:-1]]
        numbers = [int(match[1]) for match in whole if match is not None]
        assert len(numbers) == len(whole)
        assert numbers == list(range(LINES - len(numbers), LINES))
        assert len(numbers) > 2 * 2048 // 60  # more than the rotated files alone hold
    assert fleet.pumps == []  # the files are closed


def test_a_file_left_from_an_earlier_run_is_continued(tmp_path: Path) -> None:
    files = LogFiles(tmp_path, max_bytes=1 << 20, backups=1)
    (tmp_path / "w1.log").write_text("from the last run\n")
    fleet = Fleet()
    write, close = files.sink("w1@host")
    follow_output(fleet.add(writer("w1@host", lines=2)), write, fleet, name="w1", close=close)
    fleet.wait()

    assert (tmp_path / "w1.log").read_text().splitlines()[:2] == [
        "from the last run",
        "w1@host line 0000 " + "x" * 39,
    ]


def test_without_a_log_dir_each_line_is_led_by_its_node_name(tmp_path: Path) -> None:
    # Given a stream two processes of unequal names write to
    out = io.StringIO()
    to = prefixed(out, ["a1@host", "longer2@host"])
    fleet = Fleet()
    for name in ("a1@host", "longer2@host"):
        follow_output(fleet.add(writer(name, lines=50)), to(name), fleet, name=name)
    fleet.wait()

    # Then every line is whole, led by its node's name, the names aligned
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 * 51
    for line in lines:
        lead, _, rest = line.partition(" | ")
        assert lead.rstrip() in ("a1", "longer2") and len(lead) == len("longer2")
        assert rest.startswith(lead.rstrip() + "@host ")


def test_an_unwritable_log_dir_stops_the_start_before_any_worker_runs(tmp_path: Path) -> None:
    in_the_way = tmp_path / "logs"
    in_the_way.write_text("a file, not a directory")
    fleet = Fleet()

    with pytest.raises(OSError):
        start_workers(load_settings(), 2, log_dir=in_the_way, fleet=fleet)

    assert fleet.processes == []


def test_the_start_up_line_says_where_the_logs_go_and_how_they_rotate(tmp_path: Path) -> None:
    files = LogFiles(tmp_path, max_bytes=10 * 1024 * 1024, backups=5)

    assert files.describe(["chorus1@h", "chorus2@h", "chorus3@h"]) == (
        f"{tmp_path}/chorus1.log .. chorus3.log, rotated at 10 MiB (5 kept)"
    )
    assert LogFiles(tmp_path, 65536, 0).describe(["w1"]) == (
        f"{tmp_path}/w1.log, rotated at 64 KiB (none kept)"
    )


def test_log_files_take_their_rotation_from_the_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHORUS_WORKER__LOG_MAX_BYTES", "1048576")
    monkeypatch.setenv("CHORUS_WORKER__LOG_BACKUPS", "3")

    files = LogFiles.from_settings(load_settings(), Path("logs"))

    assert files == LogFiles(tmp_path / "logs", 1048576, 3)  # relative to where it starts


def test_the_log_settings_default_to_the_terminal_and_refuse_an_empty_dir(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker = load_settings().worker
    assert (worker.log_dir, worker.log_max_bytes, worker.log_backups) == (None, 10 << 20, 5)

    monkeypatch.setenv("CHORUS_WORKER__LOG_DIR", "")
    with pytest.raises(SettingsError, match="CHORUS_WORKER__LOG_DIR"):
        load_settings()
