"""`python -m localapi` (what `chorus mock-api` runs) as a real process."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.request

import pytest

pytestmark = pytest.mark.integration

BANNER = re.compile(
    r"^local Anthropic API on (http://127\.0\.0\.1:\d+) "
    r"\(latency 0 ms, limits: rpm 60, faults: 529 10\.0%\)$"
)


def test_the_command_announces_its_url_serves_and_stops_on_sigterm() -> None:
    command = [sys.executable, "-m", "localapi", "--port", "0", "--latency-ms", "0"]
    command += ["--rpm", "60", "--rate-529", "0.1"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            banner = process.stdout.readline().strip()
            match = BANNER.match(banner)
            assert match, banner
            with urllib.request.urlopen(match.group(1) + "/_mock/config", timeout=5) as answer:
                assert json.load(answer)["rpm"] == 60
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0


def test_a_busy_port_is_reported_with_status_1() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "localapi", "--port", "0"], stdout=subprocess.PIPE, text=True
    ) as first:
        try:
            assert first.stdout is not None
            port = first.stdout.readline().split(":")[2].split()[0]
            second = subprocess.run(
                [sys.executable, "-m", "localapi", "--port", port],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert second.returncode == 1
            assert "chorus mock-api:" in second.stderr
        finally:
            first.send_signal(signal.SIGTERM)
            first.wait(timeout=10)
