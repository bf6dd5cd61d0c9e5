from __future__ import annotations

import pickle

import anthropic
import httpx2
import pytest

from workers import errors
from workers.provider import parse_retry_after, translate_status_error


@pytest.mark.parametrize(
    ("status", "cls", "retryable"),
    [
        (400, errors.BadRequest, False),
        (401, errors.AuthenticationFailed, False),
        (403, errors.PermissionDenied, False),
        (404, errors.NotFound, False),
        (413, errors.RequestTooLarge, False),
        (422, errors.BadRequest, False),
        (402, errors.BadRequest, False),
        (408, errors.ServerError, True),
        (409, errors.ServerError, True),
        (429, errors.RateLimited, True),
        (500, errors.ServerError, True),
        (502, errors.ServerError, True),
        (503, errors.ServerError, True),
        (529, errors.Overloaded, True),
    ],
)
def test_each_status_maps_to_retry_or_not(
    status: int, cls: type[errors.ProviderError], retryable: bool
) -> None:
    error = errors.error_for_status(status, "boom")

    assert type(error) is cls
    assert error.retryable is retryable
    assert error.status == status


@pytest.mark.parametrize(
    ("cls", "retryable"),
    [
        (errors.ProviderTimeout, True),
        (errors.ConnectionFailed, True),
        (errors.MalformedResponse, True),
        (errors.LimiterUnavailable, True),
        (errors.DeadlineExceeded, True),
        (errors.CostExceedsCapacity, False),
        (errors.InvalidRequest, False),
    ],
)
def test_transport_and_local_errors_say_whether_to_retry(
    cls: type[errors.ChorusError], retryable: bool
) -> None:
    assert cls.retryable is retryable


def _sdk_status_error(
    status: int, body: dict[str, object], headers: dict[str, str]
) -> anthropic.APIStatusError:
    request = httpx2.Request("POST", "http://api.test/v1/messages")
    response = httpx2.Response(status, json=body, headers=headers, request=request)
    client = anthropic.Anthropic(api_key="sk-test", base_url="http://api.test")
    return client._make_status_error_from_response(response)


def test_an_sdk_429_keeps_its_type_request_id_and_retry_after_beyond_sixty_seconds() -> None:
    sdk_error = _sdk_status_error(
        429,
        {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}},
        {"request-id": "req_abc", "retry-after": "90"},
    )

    error = translate_status_error(sdk_error)

    assert isinstance(error, errors.RateLimited)
    assert error.type == "rate_limit_error"
    assert error.request_id == "req_abc"
    assert error.retry_after_s == 90.0
    assert error.message == "slow down"


def test_an_sdk_529_is_overloaded_and_retryable() -> None:
    sdk_error = _sdk_status_error(
        529, {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}, {}
    )

    error = translate_status_error(sdk_error)

    assert isinstance(error, errors.Overloaded)
    assert error.retryable


USER_LIMIT = (
    "You have reached your specified workspace API usage limits. "
    "You will regain access on 2026-12-01 at 00:00 UTC."
)


def _error_body(error_type: str, message: str, code: str | None = None) -> dict[str, object]:
    error: dict[str, object] = {"type": error_type, "message": message}
    if code is not None:
        error["details"] = {"error_code": code}
    return {"type": "error", "error": error, "request_id": "req_x"}


@pytest.mark.parametrize(
    ("status", "error_type", "code", "message"),
    [
        (429, "rate_limit_error", "enforced_spend_limit_reached", "You have reached your API"),
        (429, "rate_limit_error", "contract_spend_limit_reached", "Contract limit reached."),
        (402, "billing_error", "linked_organization_spend_limit_reached", "Linked org limit."),
        (400, "invalid_request_error", "organization_on_hold", "This organization is disabled."),
        (400, "invalid_request_error", None, USER_LIMIT),
    ],
)
def test_a_spend_limit_or_a_hold_blocks_the_account_and_is_never_retried(
    status: int, error_type: str, code: str | None, message: str
) -> None:
    error = translate_status_error(
        _sdk_status_error(status, _error_body(error_type, message, code), {})
    )

    assert isinstance(error, errors.AccountBlocked)
    assert not error.retryable
    assert (error.type, error.error_code) == (error_type, code)


def test_a_ramp_limit_429_is_a_rate_limit_and_waits_its_retry_after() -> None:
    body = _error_body("rate_limit_error", "Ramp up gradually.", "ramp_limit_exceeded")

    error = translate_status_error(_sdk_status_error(429, body, {"retry-after": "7"}))

    assert isinstance(error, errors.RateLimited) and error.retry_after_s == 7.0


def test_retry_after_ms_is_read_before_retry_after_and_x_should_retry_is_kept() -> None:
    body = _error_body("overloaded_error", "Overloaded")
    headers = {"retry-after": "2", "retry-after-ms": "1250", "x-should-retry": "false"}

    error = translate_status_error(_sdk_status_error(529, body, headers))

    assert error.retry_after_s == 1.25
    assert error.should_retry is False


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    when = parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT", now_s=1792567650.0)
    assert when == pytest.approx(30.0)


@pytest.mark.parametrize(
    "error",
    [
        errors.RateLimited("slow", 429, "req_1", "rate_limit_error", 12.0),
        errors.AccountBlocked(
            "limits", 429, "req_3", "rate_limit_error", None, "enforced_spend_limit_reached", False
        ),
        errors.BadRequest("bad", 400, "req_2", "invalid_request_error"),
        errors.CostExceedsCapacity("too big", "output_tokens", 900, 800),
        errors.InvalidRequest("model: is required"),
    ],
)
def test_errors_survive_a_pickle_round_trip(error: errors.ChorusError) -> None:
    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is type(error)
    assert copy.__dict__ == error.__dict__
    assert str(copy) == str(error)


@pytest.mark.parametrize(
    ("error_type", "cls"),
    [
        ("overloaded_error", errors.Overloaded),
        ("api_error", errors.ServerError),
        ("rate_limit_error", errors.RateLimited),
        ("invalid_request_error", errors.BadRequest),
    ],
)
def test_an_error_event_part_way_through_a_stream_is_classified_like_its_status(
    error_type: str, cls: type[errors.ProviderError]
) -> None:
    # The stream's response was a 200; the `error` event's type says what it was.
    from workers.streaming import _mid_stream_error

    sdk_error = _sdk_status_error(200, _error_body(error_type, "part way"), {})

    assert type(_mid_stream_error(sdk_error)) is cls
