"""Per-task INFO lines are off unless asked for; failures log either way."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from config.settings import get_settings
from tests.unit.test_call import REQUEST, FakeClock, FakeProvider, make_deps, reply
from workers import errors
from workers.app import PER_TASK_LOGGERS, _quiet_per_task_lines
from workers.call import LOGGED_MESSAGE_CHARS, execute
from workers.hooks import CallHooks
from workers.models import ErrorInfo


@pytest.fixture(autouse=True)
def restore_levels() -> Iterator[None]:
    levels = {name: logging.getLogger(name).level for name in PER_TASK_LOGGERS}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    get_settings.cache_clear()


def test_per_task_lines_are_dropped_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHORUS_WORKER__LOG_TASKS", raising=False)
    get_settings.cache_clear()

    _quiet_per_task_lines()

    for name in PER_TASK_LOGGERS:
        logger = logging.getLogger(name)
        assert not logger.isEnabledFor(logging.INFO), name
        assert logger.isEnabledFor(logging.ERROR), name


def test_log_tasks_keeps_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHORUS_WORKER__LOG_TASKS", "true")
    get_settings.cache_clear()
    for name in PER_TASK_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)

    _quiet_per_task_lines()

    assert all(logging.getLogger(n).level == logging.NOTSET for n in PER_TASK_LOGGERS)


# --- one line for a call that did not end complete (workers.call) ----------------------


def _call_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "workers.call"]


def test_a_failed_call_logs_one_warning_naming_the_error(caplog: pytest.LogCaptureFixture) -> None:
    # Given an API that answers 400, with a message on two lines
    bad = errors.BadRequest(
        "max_tokens: too large\nfor this model",
        400,
        "req_bad",
        "invalid_request_error",
        error_code="max_tokens_exceeded",
    )
    provider = FakeProvider(bad)

    with caplog.at_level(logging.INFO, logger="workers.call"):
        envelope = execute(
            REQUEST, make_deps(provider, FakeClock()), time_limit_s=60, owner="task-7"
        )

    # Then the call failed, and the log says so once, on one line, with what to look up
    assert not envelope.ok
    [line] = _call_lines(caplog)
    assert line.levelno == logging.WARNING
    assert line.getMessage() == (
        "call failed after 1 attempt: invalid_request_error (HTTP 400, max_tokens_exceeded, "
        "request id req_bad): max_tokens: too large for this model [task task-7, claude-sonnet-5]"
    )


def test_a_complete_answer_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="workers.call"):
        envelope = execute(REQUEST, make_deps(FakeProvider(reply()), FakeClock()), time_limit_s=60)

    assert envelope.ok
    assert _call_lines(caplog) == []


def test_an_answer_cut_off_logs_one_info_line_naming_its_outcome(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cut = reply("half a sent")
    cut.message["stop_reason"] = "max_tokens"

    with caplog.at_level(logging.INFO, logger="workers.call"):
        envelope = execute(REQUEST, make_deps(FakeProvider(cut), FakeClock()), time_limit_s=60)

    [line] = _call_lines(caplog)
    assert line.levelno == logging.INFO
    assert line.getMessage().startswith(f"call ended {envelope.outcome.value} after 1 attempt: ")
    assert line.getMessage().endswith("[claude-sonnet-5]")


class Stopping(CallHooks):
    def __init__(self, stop: ErrorInfo) -> None:
        self.stop = stop

    def before_reserve(self) -> ErrorInfo | None:
        return self.stop


def test_a_call_its_caller_stopped_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    # A decided vote, a cancelled batch: a decision, not a failure of the call.
    stop = ErrorInfo(type="revoked", message="the vote was decided")
    provider = FakeProvider(reply())

    with caplog.at_level(logging.DEBUG, logger="workers.call"):
        envelope = execute(
            REQUEST,
            make_deps(provider, FakeClock()),
            time_limit_s=60,
            hooks=Stopping(stop),
        )

    assert envelope.error is not None and envelope.error.type == "revoked"
    assert provider.sent == []
    assert _call_lines(caplog) == []


def test_a_long_message_is_cut_in_the_log_and_kept_whole_in_the_envelope(
    caplog: pytest.LogCaptureFixture,
) -> None:
    long = "x" * (LOGGED_MESSAGE_CHARS * 3)
    provider = FakeProvider(errors.BadRequest(long, 400, "req_1", "invalid_request_error"))

    with caplog.at_level(logging.INFO, logger="workers.call"):
        envelope = execute(REQUEST, make_deps(provider, FakeClock()), time_limit_s=60)

    assert envelope.error is not None and envelope.error.message == long
    [line] = _call_lines(caplog)
    assert "x" * LOGGED_MESSAGE_CHARS + "... [claude-sonnet-5]" in line.getMessage()
    assert "x" * (LOGGED_MESSAGE_CHARS + 1) not in line.getMessage()
