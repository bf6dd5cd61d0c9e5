"""Options and run-time changes of the local API's config."""

from __future__ import annotations

import dataclasses

import click
import pytest

from localapi.cli import mock_api, parse_args
from localapi.config import LocalAPIConfig


def test_defaults_match_the_documented_ones() -> None:
    config = parse_args([])
    assert (config.host, config.port, config.latency_ms) == ("127.0.0.1", 8765, 100.0)
    assert (config.rpm, config.itpm, config.otpm) == (None, None, None)
    # None: each model's own context window and output limit (config.models).
    assert (config.context_window, config.max_output_tokens) == (None, None)
    assert config.max_body_bytes == 32 * 1024 * 1024
    assert (config.reply_min_tokens, config.reply_max_tokens) == (20, 120)


def test_options_become_fields() -> None:
    argv = "--port 0 --latency-ms 5 --rpm 50 --rate-529 0.1 --seed 7 --api-key sk-x"
    config = parse_args([*argv.split(), "--script", "rules.json", "--rate-hang", "0.05"])
    assert (config.port, config.latency_ms, config.rpm, config.rate_529) == (0, 5.0, 50, 0.1)
    assert (config.seed, config.api_key, config.script_path) == (7, "sk-x", "rules.json")
    assert config.rate_hang == 0.05


def test_every_field_is_an_option_with_help_and_the_configs_default() -> None:
    options = {p.name: p for p in mock_api.params if isinstance(p, click.Option)}
    for field in dataclasses.fields(LocalAPIConfig):
        assert field.name in options, f"LocalAPIConfig.{field.name} has no option"
        option = options[field.name]
        assert option.help, f"{option.opts[0]} has no help"
        if field.default is not None:
            assert option.default == field.default and option.show_default, option.opts[0]


def test_fault_options_take_dashes_and_their_old_underscores() -> None:
    assert parse_args(["--rate-pause-turn", "0.1"]).rate_pause_turn == 0.1
    assert parse_args(["--rate-stream_cut", "0.2"]).rate_stream_cut == 0.2


def test_bad_options_exit_with_usage_status(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(["--rate-500", "1.5"])
    assert exited.value.code == 2
    with pytest.raises(SystemExit):
        parse_args(["--rate-500", "0.6", "--rate-529", "0.6"])
    shown = capsys.readouterr().err
    assert "Usage: chorus mock-api" in shown and "their sum must not exceed 1" in shown


def test_run_time_changes_are_checked() -> None:
    config = LocalAPIConfig()
    assert config.with_changes({"latency_ms": 0, "rpm": 10}).rpm == 10
    with pytest.raises(ValueError, match="no such setting"):
        config.with_changes({"latency": 0})
    with pytest.raises(ValueError, match="port"):
        config.with_changes({"port": 1})
    with pytest.raises(ValueError, match="rate_429"):
        config.with_changes({"rate_429": 2})
    with pytest.raises(ValueError, match="rpm"):
        config.with_changes({"rpm": "10"})


def test_the_summary_names_latency_limits_and_faults() -> None:
    assert LocalAPIConfig().describe() == "latency 100 ms, limits: unlimited, faults: none"
    busy = LocalAPIConfig(latency_ms=5, rpm=50, otpm=0, rate_529=0.02)
    assert busy.describe() == "latency 5 ms, limits: rpm 50, faults: 529 2.0%"
