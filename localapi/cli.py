"""`chorus mock-api` (also `python -m localapi`): the local API's command-line options.

Every field of `LocalAPIConfig` is an option, named after it (`latency_ms` is
`--latency-ms`, `script_path` is `--script`), with the config's own default.
A value the config refuses (fault rates adding up past 1, a negative
latency) is a usage error: exit status 2 and the config's reason.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from localapi.config import FAULT_KINDS, LocalAPIConfig

PROG = "chorus mock-api"
_DEFAULTS = LocalAPIConfig()

# What each injected fault does to a call (localapi.handlers).
FAULT_HELP = {
    "429": "a 429 rate_limit_error with retry-after (--retry-after-s)",
    "529": "a 529 overloaded_error",
    "500": "a 500 api_error",
    "hang": "silence for --hang-s, then a 500",
    "malformed": "a 200 whose JSON breaks off half way (a stream is cut instead)",
    "refusal": "stop_reason refusal",
    "context_exceeded": "stop_reason model_context_window_exceeded",
    "pause_turn": "stop_reason pause_turn (a server tool paused the turn)",
    "stream_error": "an error event half way through a stream (unstreamed calls: no fault)",
    "stream_cut": "a stream whose connection drops half way (unstreamed calls: no fault)",
}

LIMIT_HELP = {
    "rpm": "Requests per minute the API accepts (0: unlimited).",
    "itpm": "Input tokens per minute the API accepts (0: unlimited).",
    "otpm": "Output tokens per minute the API accepts (0: unlimited).",
}


def _field(name: str, kind: Any, help: str) -> Any:
    """The option for config field ``name``: ``--name-with-dashes``, the config's default."""
    return click.option(
        f"--{name.replace('_', '-')}",
        type=kind,
        default=getattr(_DEFAULTS, name),
        show_default=True,
        help=help,
    )


def _options(command: Any) -> Any:
    """Decorate ``command`` with one option per config field (in --help's order)."""
    options = [
        _field("host", None, "Interface to listen on (0.0.0.0: every interface)."),
        _field(
            "port",
            click.IntRange(0, 65535),
            "Port to listen on; 0 picks a free one (the banner says which).",
        ),
        _field(
            "latency_ms",
            click.FloatRange(min=0),
            "Time each call takes before it answers, in milliseconds.",
        ),
        _field(
            "jitter_ms",
            click.FloatRange(min=0),
            "Uniform ± jitter on the latency, in milliseconds.",
        ),
        _field(
            "ms_per_output_token",
            click.FloatRange(min=0),
            "Generation time per output token, in milliseconds (a stream pays it event by event).",
        ),
        *(
            click.option(
                f"--{name}",
                type=click.IntRange(min=0),
                default=None,
                show_default="unlimited",
                help=LIMIT_HELP[name],
            )
            for name in ("rpm", "itpm", "otpm")
        ),
        _field(
            "limit_interval_s",
            click.FloatRange(0, 60, min_open=True),
            "Seconds of refill each per-minute limit holds (1: the strictest the API "
            "documents; 60: a whole minute's worth at once).",
        ),
        *(
            click.option(
                # Underscores too: the spelling of the options before they were click's.
                *dict.fromkeys((f"--rate-{kind.replace('_', '-')}", f"--rate-{kind}")),
                f"rate_{kind}",
                type=click.FloatRange(0, 1),
                default=0.0,
                show_default=True,
                help=f"Fraction of calls given {FAULT_HELP[kind]}.",
            )
            for kind in FAULT_KINDS
        ),
        _field(
            "rate_invalid_output",
            click.FloatRange(0, 1),
            "Fraction of answers to structured requests (a JSON Schema asked for "
            "natively, by a forced answer tool or in the prompt) that come back invalid: "
            "not JSON, or JSON that breaks the schema.",
        ),
        _field(
            "hang_s",
            click.FloatRange(min=0),
            "How long a hung call (--rate-hang) waits before its 500, in seconds.",
        ),
        _field(
            "retry_after_s",
            click.FloatRange(min=0),
            "The retry-after an injected 429 gives, in seconds.",
        ),
        _field("seed", int, "Seeds the replies, the faults and the jitter."),
        click.option(
            "--api-key",
            default=None,
            show_default="any non-empty key",
            help="Accept only this API key; any other gets a 401.",
        ),
        click.option(
            "--context-window",
            type=click.IntRange(min=1),
            default=None,
            show_default="the model's",
            help="Context window in tokens, for every model.",
        ),
        click.option(
            "--max-output-tokens",
            type=click.IntRange(min=1),
            default=None,
            show_default="the model's",
            help="Largest max_tokens accepted, for every model.",
        ),
        click.option(
            "--cache-min-tokens",
            type=click.IntRange(min=0),
            default=None,
            show_default="the model's",
            help="Shortest prompt prefix cached, for every model (0: no minimum).",
        ),
        _field(
            "thinking_scale",
            click.FloatRange(min=0),
            "Scales how many tokens adaptive thinking spends.",
        ),
        _field(
            "max_body_bytes",
            click.IntRange(min=1),
            "Largest request body accepted; a larger one gets a 413.",
        ),
        _field(
            "reply_min_tokens", click.IntRange(min=1), "Fewest text tokens in a generated reply."
        ),
        _field("reply_max_tokens", click.IntRange(min=1), "Most text tokens in a generated reply."),
        click.option(
            "--script",
            "script_path",
            type=click.Path(dir_okay=False),
            default=None,
            help="A JSON file of script rules that steer answers by prompt (localapi/script.py).",
        ),
        _field("log_size", click.IntRange(min=1), "Requests kept in the log GET /_mock/log reads."),
        _field(
            "batch_processing_s",
            click.FloatRange(min=0),
            "Seconds a Message Batch takes to process, its requests spread over them.",
        ),
        _field(
            "batch_expires_s",
            click.FloatRange(min=0, min_open=True),
            "Seconds until a Message Batch expires (24 h): what is not processed by then expires.",
        ),
        _field(
            "batch_rate_errored",
            click.FloatRange(0, 1),
            "Share of batch requests that end errored (a retryable api_error).",
        ),
        _field(
            "batch_rate_expired",
            click.FloatRange(0, 1),
            "Share of batch requests that end expired.",
        ),
        _field("batch_max_requests", click.IntRange(min=1), "Most requests in one Message Batch."),
        _field("batch_max_bytes", click.IntRange(min=1), "Largest Message Batch body, in bytes."),
        click.option(
            "--honest-billing/--no-honest-billing",
            default=_DEFAULTS.honest_billing,
            show_default=True,
            help=(
                "Finish and bill a call whose client went away, as the real API may; "
                "off, such a call stops unbilled."
            ),
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def config_from(params: dict[str, Any], ctx: click.Context | None = None) -> LocalAPIConfig:
    """The config for parsed options.

    Raises:
        click.UsageError: the config refuses a value (its reason as the message).
    """
    try:
        return LocalAPIConfig(**params)
    except ValueError as exc:
        raise click.UsageError(str(exc), ctx=ctx) from None


def serve(config: LocalAPIConfig) -> int:
    """Serve until SIGINT/SIGTERM: 0 then, 1 if the server cannot start (a port in use,
    an unreadable or invalid --script file), said on stderr."""
    from localapi.runner import run

    def ready(url: str) -> None:
        print(f"local Anthropic API on {url} ({config.describe()})", flush=True)

    try:
        run(config, ready=ready)
    except (OSError, ValueError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    return 0


@click.command("mock-api", context_settings={"help_option_names": ["-h", "--help"]})
@_options
@click.pass_context
def mock_api(ctx: click.Context, /, **params: Any) -> None:
    """Serve a local stand-in for the Anthropic Messages API.

    The real SDK talks to it over HTTP (ANTHROPIC_BASE_URL=http://HOST:PORT).
    It prints one line once it listens, and serves until SIGINT or SIGTERM.
    Its settings can also be changed while it runs: POST /_mock/config.
    Exit status: 0 after a signal, 1 if it cannot start, 2 on a bad option.
    """
    ctx.exit(serve(config_from(params, ctx)))


def parse_args(argv: Sequence[str] | None = None) -> LocalAPIConfig:
    """The config the options in ``argv`` (default: ``sys.argv[1:]``) ask for.

    A bad option is reported on stderr as click reports it, then
    ``SystemExit(2)``; ``--help`` prints the help, then ``SystemExit(0)``.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        with mock_api.make_context(PROG, args) as ctx:
            return config_from(ctx.params, ctx)
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
