"""chorus's exceptions, one tree.

::

    ChorusError
     +-- InvalidRequest              a request fails validation; never enqueued
     +-- ProviderError               one attempt at the Messages API failed
     |    +-- TransientError         worth another attempt after a wait
     |    |    +-- RateLimited       429; carries retry-after
     |    |    +-- Overloaded        529
     |    |    +-- ServerError       500 and other 5xx, 408, 409
     |    |    +-- ProviderTimeout   no answer within the request timeout
     |    |    +-- ConnectionFailed  could not reach the API
     |    |    +-- MalformedResponse the API answered with something unreadable
     |    +-- PermanentError         the same request will fail the same way
     |         +-- BadRequest        400, 422 and other 4xx
     |         +-- AuthenticationFailed   401: every call will fail
     |         +-- AccountBlocked    a spend limit reached, the organisation on hold:
     |                               every call fails until someone acts
     |         +-- PermissionDenied  403
     |         +-- NotFound          404
     |         +-- RequestTooLarge   413
     +-- LimiterError                the cluster-wide rate limiter said no
     |    +-- CostExceedsCapacity    a request larger than a bucket: it can never be sent
     |    +-- LimiterUnavailable     Redis cannot be reached: fail closed
     +-- DeadlineExceeded            the task's own time budget ran out
     +-- TaskFailed                  how a task reports a failed result to Celery:
     |                               FAILURE in Flower, the envelope still delivered
     |
     |   raised to producers (orchestration), each also under the builtin it
     |   replaced, so an older ``except ValueError`` still catches it:
     +-- BatchInputError (ValueError)     a batch's input cannot be used
     |    +-- InvalidBatchFile            lines are invalid; nothing enqueued
     +-- PatternError (ValueError)        a pattern built with arguments that cannot work
     +-- BatchNotFound (LookupError)      no batch has that id or name
     +-- StateUnavailable (RuntimeError)  the batch's Redis cannot be reached
     +-- RedisUnavailable (RuntimeError)  no Redis answers and none can be started

The HTTP status and the API's ``error.details.error_code`` decide the class in
one place, :func:`error_for_status`; whether to retry is the class
(``TransientError`` or not), unless the API said otherwise with
``x-should-retry`` (``ProviderError.should_retry``).

``config.SettingsError`` is the one error outside this tree: ``config``
depends on nothing in chorus.

Every class passes all its arguments to ``super().__init__`` and keeps them
as attributes, so an instance survives a pickle round trip.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ChorusError(Exception):
    """Raised when anything in chorus fails; the root of the tree."""

    #: The envelope's ``error.type`` for this class when no better one is known.
    error_type: ClassVar[str] = "chorus_error"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *args: Any) -> None:
        super().__init__(message, *args)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidRequest(ChorusError):
    """Raised when a request fails validation, before anything is enqueued."""

    error_type = "invalid_request_error"


class ProviderError(ChorusError):
    """Raised when one attempt at the Messages API fails."""

    error_type = "api_error"

    def __init__(
        self,
        message: str,
        status: int | None = None,
        request_id: str | None = None,
        api_type: str | None = None,
        retry_after_s: float | None = None,
        error_code: str | None = None,
        should_retry: bool | None = None,
    ) -> None:
        super().__init__(
            message, status, request_id, api_type, retry_after_s, error_code, should_retry
        )
        self.status = status
        self.request_id = request_id
        # The provider's own error.type when it sent one ("overloaded_error").
        self.api_type = api_type
        self.retry_after_s = retry_after_s
        # Its error.details.error_code when it sent one ("ramp_limit_exceeded").
        self.error_code = error_code
        # Its x-should-retry header, when it sent one: it overrides the class.
        self.should_retry = should_retry
        # Set when a streamed answer broke off part way: the usage seen so far
        # (input from message_start, output estimated from the deltas), which
        # the API may well have billed.
        self.partial_usage: dict[str, int] | None = None

    @property
    def type(self) -> str:
        return self.api_type or self.error_type


class TransientError(ProviderError):
    """Raised when an attempt failed in a way that another attempt may not."""

    retryable = True


class RateLimited(TransientError):
    """Raised when the API answers 429; ``retry_after_s`` says how long to stay away."""

    error_type = "rate_limit_error"


class Overloaded(TransientError):
    """Raised when the API answers 529: overloaded for everyone, not just us."""

    error_type = "overloaded_error"


class ServerError(TransientError):
    """Raised on a 5xx other than 529, or a 408 or 409."""

    error_type = "api_error"


class ProviderTimeout(TransientError):
    """Raised when the API does not answer within the request timeout."""

    error_type = "timeout_error"


class ConnectionFailed(TransientError):
    """Raised when the API cannot be reached at all."""

    error_type = "connection_error"


class MalformedResponse(TransientError):
    """Raised when the API answers 2xx with a body that cannot be read."""

    error_type = "malformed_response"


class PermanentError(ProviderError):
    """Raised when an attempt failed in a way that every retry would repeat."""


class BadRequest(PermanentError):
    """Raised on a 400 (or another 4xx with no class of its own)."""

    error_type = "invalid_request_error"


class AuthenticationFailed(PermanentError):
    """Raised on a 401: the key is wrong, so every call will fail."""

    error_type = "authentication_error"


class AccountBlocked(PermanentError):
    """Raised when the account cannot make calls until someone acts: a spend limit is
    reached, or the organisation is on hold. A batch pauses on the first one."""

    error_type = "account_blocked"


class PermissionDenied(PermanentError):
    """Raised on a 403."""

    error_type = "permission_error"


class NotFound(PermanentError):
    """Raised on a 404, usually a model name that does not exist."""

    error_type = "not_found_error"


class RequestTooLarge(PermanentError):
    """Raised on a 413: the request body is over the API's size limit."""

    error_type = "request_too_large"


class LimiterError(ChorusError):
    """Raised when the cluster-wide rate limiter cannot grant a request."""

    error_type = "rate_limiter_error"


class CostExceedsCapacity(LimiterError):
    """Raised when a request costs more than a bucket holds: it could never be sent."""

    error_type = "request_exceeds_rate_limit"

    def __init__(self, message: str, bucket: str = "", cost: int = 0, capacity: int = 0) -> None:
        super().__init__(message, bucket, cost, capacity)
        self.bucket = bucket
        self.cost = cost
        self.capacity = capacity


class LimiterUnavailable(LimiterError):
    """Raised when the limiter's Redis cannot be reached; calls wait rather than go unthrottled."""

    error_type = "rate_limiter_unavailable"
    retryable = True


class TaskFailed(ChorusError):
    """Raised by a task whose result is a failure, to make its Celery state FAILURE.

    ``value`` is the task's result all the same (an envelope, a pattern
    result or a batch item's receipt, as JSON): a chord's fan-in receives it
    as a value (``workers.backend``), and ``orchestration.client.result_of``
    returns it to a producer. Celery stores the exception as its class name,
    module and ``args``, so ``value`` must be JSON. ``repr`` is what Flower
    shows in its exception column: the error type and message only.
    """

    error_type: ClassVar[str] = "task_failed"

    def __init__(self, message: str, value: dict[str, Any]) -> None:
        super().__init__(message, value)
        self.value = value

    def __repr__(self) -> str:
        return f"TaskFailed({self.message!r})"


class DeadlineExceeded(ChorusError):
    """Raised when a task's own time budget runs out before a call succeeds."""

    error_type = "deadline_exceeded"
    # The call may well succeed when the item is tried again later.
    retryable = True


# 4xx with a class of their own; any other 4xx is a BadRequest.
_PERMANENT_BY_STATUS: dict[int, type[PermanentError]] = {
    401: AuthenticationFailed,
    403: PermissionDenied,
    404: NotFound,
    413: RequestTooLarge,
}
# 408 (request timeout) and 409 (conflict) are the only 4xx worth retrying.
_TRANSIENT_BY_STATUS: dict[int, type[TransientError]] = {
    408: ServerError,
    409: ServerError,
    429: RateLimited,
    529: Overloaded,
}


# error.details.error_code values whose every retry fails until someone raises a
# limit or lifts a hold (SDK _error_classes.py; platform.claude.com/docs/en/api/
# rate-limits, "Spend limits"). ramp_limit_exceeded is not among them: its 429
# clears after retry-after.
BLOCKING_CODES = frozenset(
    {
        "enforced_spend_limit_reached",
        "contract_spend_limit_reached",
        "linked_organization_spend_limit_reached",
        "linked_organization_billing_unavailable",
        "organization_on_hold",
    }
)
# A spend limit the user set answers 400 with no error_code; its message is the
# documented way to tell ("You have reached your specified [workspace] API usage
# limits", api/rate-limits).
USER_SPEND_LIMIT_MESSAGE = "You have reached your specified"


def blocks_the_account(status: int | None, error_code: str | None, message: str) -> bool:
    """Whether this error means no call of the account can succeed until someone acts."""
    return error_code in BLOCKING_CODES or (
        status == 400 and message.startswith(USER_SPEND_LIMIT_MESSAGE)
    )


def error_class_for_status(
    status: int, error_code: str | None = None, message: str = ""
) -> type[ProviderError]:
    """The class for an HTTP status and error code: the one place that decides retry or not."""
    if blocks_the_account(status, error_code, message):
        return AccountBlocked
    if status in _TRANSIENT_BY_STATUS:
        return _TRANSIENT_BY_STATUS[status]
    if status in _PERMANENT_BY_STATUS:
        return _PERMANENT_BY_STATUS[status]
    if status >= 500:
        return ServerError
    return BadRequest


def error_for_status(
    status: int,
    message: str,
    *,
    request_id: str | None = None,
    api_type: str | None = None,
    retry_after_s: float | None = None,
    error_code: str | None = None,
    should_retry: bool | None = None,
) -> ProviderError:
    """Build the right :class:`ProviderError` for an HTTP error status."""
    cls = error_class_for_status(status, error_code, message)
    return cls(message, status, request_id, api_type, retry_after_s, error_code, should_retry)
