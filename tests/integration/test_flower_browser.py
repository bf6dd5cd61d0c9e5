"""Flower in a real browser: headless Chromium opens the tasks page and takes a screenshot.

Needs Debian's ``chromium`` (``make e2e`` installs it and runs this). Without
it the test is skipped, saying so; under ``CHORUS_E2E=1`` (what ``make e2e``
sets) a missing browser fails instead.

Flower's tasks page fills its table with an AJAX call after the page loads,
so Chromium runs the page's scripts (a virtual time budget) before the DOM is
dumped or the picture taken. The login travels in the URL, which Chromium
turns into a basic-auth answer for the page and, for the same origin, its
AJAX calls.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

from localapi import LocalAPIServer
from orchestration.batch import Batch
from tests.integration.conftest import BRIEF, Workers, eventually
from tests.integration.fleet_helpers import (
    OUTPUT,
    Flower,
    chromium,
    find_chromium,
    png_size,
    require,
    running_flower,
)

SCREENSHOTS = OUTPUT / "screenshots"
WIDTH, HEIGHT = 1600, 900


@pytest.fixture(scope="module")
def browser() -> str:
    return require(
        find_chromium(), "headless Chromium is not installed (make e2e installs Debian's chromium)"
    )


@pytest.fixture(scope="module")
def flower(chorus_env: dict[str, str], workers: Workers) -> Iterator[Flower]:
    with running_flower(chorus_env, name="browser") as started:
        # Workers start with task events off: wait until Flower turned them on.
        eventually(lambda: started.sees_tasks_of(workers.log_dir, workers.names), timeout_s=30)
        yield started


def _page(flower: Flower, path: str, *, login: bool = True) -> str:
    user, password = flower.auth
    host = flower.url.removeprefix("http://")
    return f"http://{user}:{password}@{host}{path}" if login else f"http://{host}{path}"


def test_chromium_shows_the_batchs_tasks_on_flowers_tasks_page(
    browser: str, flower: Flower, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Given a finished batch of 3 that Flower has seen
    items = [{"id": f"shot-{i}", "prompt": f"Browser item {i}: say hi."} for i in range(3)]
    batch = Batch.submit(items, **BRIEF)
    assert batch.wait(timeout_s=60).count("complete") == 3
    eventually(lambda: len(flower.tasks(search=batch.id)) == 3, timeout_s=20)

    # When Chromium opens the tasks page with the login
    dom = chromium(
        browser, tmp_path_factory.mktemp("chromium"), "--dump-dom", _page(flower, "/tasks")
    )

    # Then the page is Flower's task list, with a row per item showing the batch id
    assert "<title>Tasks · Flower</title>" in dom
    rows = re.findall(r"<tr id=\"([0-9a-f-]{36})\"", dom)
    assert set(flower.tasks(search=batch.id)) <= set(rows), "the table holds the batch's tasks"
    for i in range(3):
        assert f"batch={batch.id} item=shot-{i}" in dom
    assert dom.count("SUCCESS") >= 3

    # And its screenshot is saved under test-output/screenshots
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / f"flower-tasks-{uuid.uuid4().hex[:6]}.png"
    chromium(
        browser,
        tmp_path_factory.mktemp("chromium"),
        f"--window-size={WIDTH},{HEIGHT}",
        f"--screenshot={shot}",
        _page(flower, "/tasks"),
    )
    assert png_size(shot) == (WIDTH, HEIGHT)
    # A blank page compresses to a few kB; a table of tasks does not.
    assert shot.stat().st_size > 30_000, f"{shot} looks empty"
    (SCREENSHOTS / "flower-tasks-latest.png").write_bytes(shot.read_bytes())


def test_chromium_without_the_login_is_refused(
    browser: str, flower: Flower, tmp_path_factory: pytest.TempPathFactory
) -> None:
    dom = chromium(
        browser,
        tmp_path_factory.mktemp("chromium"),
        "--dump-dom",
        _page(flower, "/tasks", login=False),
    )
    # Chromium, with no login to answer the challenge, renders nothing of Flower's.
    assert "Tasks · Flower" not in dom
    assert "batch=" not in dom and "<tr id=" not in dom


def test_chromium_shows_a_failed_item_as_failed_on_flowers_pages(
    browser: str,
    flower: Flower,
    local_api: LocalAPIServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # Given a batch of 3 whose item 1 the API refuses (400), all three seen by Flower
    refusal = {"status": 400, "message": "no"}
    local_api.script([{"match": "Failing item 1:", "responses": [refusal]}])
    items = [{"id": f"fail-{i}", "prompt": f"Failing item {i}: say hi."} for i in range(3)]
    batch = Batch.submit(items, **BRIEF)
    assert batch.wait(timeout_s=60).count("failed") == 1

    def ended() -> bool:
        tasks = flower.tasks(search=batch.id).values()
        return len(tasks) == 3 and all(t["state"] in ("SUCCESS", "FAILURE") for t in tasks)

    eventually(ended, timeout_s=20)
    failures = set(flower.tasks(search="state:FAILURE"))
    assert len(failures & set(flower.tasks(search=batch.id))) == 1

    # When Chromium opens the tasks page and the workers page
    tasks_dom = chromium(
        browser, tmp_path_factory.mktemp("chromium"), "--dump-dom", _page(flower, "/tasks")
    )
    workers_dom = chromium(
        browser, tmp_path_factory.mktemp("chromium"), "--dump-dom", _page(flower, "/workers")
    )

    # Then the failed item's row says FAILURE
    rows = re.findall(r"<tr[^>]*>.*?</tr>", tasks_dom, flags=re.S)
    (row,) = [r for r in rows if f"batch={batch.id} item=fail-1" in r]
    assert "FAILURE" in row
    # And its own page shows the exception with the error type
    (task_id,) = failures & set(flower.tasks(search=batch.id))
    task_dom = chromium(
        browser,
        tmp_path_factory.mktemp("chromium"),
        "--dump-dom",
        _page(flower, f"/task/{task_id}"),
    )
    assert "TaskFailed" in task_dom and "invalid_request_error: no" in task_dom
    # And the workers page's Failed total (its link to the failed tasks) counts every
    # failure Flower knows
    totals = re.findall(r'href="/tasks\?state=FAILURE">([\d,]+)<', workers_dom)
    assert totals, "the workers page shows a Failed total"
    assert int(totals[-1].replace(",", "")) == len(failures)
