"""The model table: what each model accepts, read alike by chorus's validation and the local API."""

from __future__ import annotations

import random
import typing
from typing import Any

import pytest
from anthropic.types import Model

from config.models import MODELS, request_problem, rules_for
from localapi.errors import APIErrorReply
from localapi.thinking import EFFORT_RANGES, plan_thinking
from localapi.validation import validate_request as api_validate
from workers.errors import InvalidRequest
from workers.validation import validate_request


def body(model: str, **params: Any) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "Hello"}],
        **params,
    }


def test_every_model_the_sdk_lists_has_a_row() -> None:
    listed = [m for m in typing.get_args(typing.get_args(Model)[0])]
    missing = [m for m in listed if rules_for(m) is None]

    assert not missing, f"config/models.py has no rules for {missing}"


@pytest.mark.parametrize(
    ("model", "params", "rule"),
    [
        ("claude-sonnet-5", {"thinking": {"type": "enabled", "budget_tokens": 2048}}, "thinking"),
        ("claude-sonnet-5-5", {"thinking": {"type": "disabled"}}, "thinking"),
        ("claude-sonnet-5-5", {"thinking": {"type": "enabled", "budget_tokens": 2048}}, "thinking"),
        ("claude-opus-5-5", {"thinking": {"type": "disabled"}}, "thinking"),
        ("claude-sonnet-4-5", {"thinking": {"type": "adaptive"}}, "thinking"),
        ("claude-sonnet-5", {"thinking": {"type": "between_tools"}}, "thinking"),
        (
            "claude-opus-5",
            {"thinking": {"type": "disabled"}, "output_config": {"effort": "max"}},
            "output_config.effort",
        ),
        (
            "claude-sonnet-5-5",
            {"thinking": {"type": "between_tools"}, "output_config": {"effort": "xhigh"}},
            "output_config.effort",
        ),
        ("claude-haiku-4-5", {"output_config": {"effort": "low"}}, "output_config.effort"),
        ("claude-opus-4-6", {"output_config": {"effort": "xhigh"}}, "output_config.effort"),
        ("claude-sonnet-5-5", {"tool_choice": {"type": "any"}}, "tool_choice"),
        ("claude-sonnet-5", {"temperature": 0.5}, "temperature"),
        ("claude-sonnet-5", {"max_tokens": 128_001}, "max_tokens"),
        ("claude-haiku-4-5", {"max_tokens": 64_001}, "max_tokens"),
        (
            "claude-sonnet-5-5",
            {
                "messages": [
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "{"},
                ]
            },
            "messages",
        ),
        (
            "claude-sonnet-4-6",
            {
                "thinking": {"type": "enabled", "budget_tokens": 2048},
                "tool_choice": {"type": "any"},
            },
            "tool_choice",
        ),
        (
            "claude-sonnet-4-6",
            {"thinking": {"type": "enabled", "budget_tokens": 512}},
            "thinking.budget_tokens",
        ),
    ],
)
def test_a_request_the_api_would_refuse_is_refused_by_both_naming_the_rule(
    model: str, params: dict[str, Any], rule: str
) -> None:
    request = body(model, **params)

    problem = request_problem(request)
    with pytest.raises(InvalidRequest) as chorus_says:
        validate_request(request)
    with pytest.raises(APIErrorReply) as api_says:
        api_validate(request, api_version="2023-06-01")

    assert problem is not None and problem.field == rule
    assert str(chorus_says.value).startswith(f"{rule}: {model}")
    assert problem.message in str(chorus_says.value)  # the API's own 400, quoted
    assert api_says.value.status == 400 and api_says.value.message == problem.message


@pytest.mark.parametrize(
    ("model", "params"),
    [
        ("claude-sonnet-5", {"thinking": {"type": "disabled"}}),
        ("claude-sonnet-5-5", {"thinking": {"type": "between_tools"}}),
        ("claude-sonnet-5-5", {"output_config": {"effort": "max"}}),
        ("claude-opus-5", {"thinking": {"type": "disabled"}, "output_config": {"effort": "high"}}),
        ("claude-haiku-5-5", {"tool_choice": {"type": "any"}}),
        ("claude-sonnet-4-6", {"thinking": {"type": "enabled", "budget_tokens": 2048}}),
        ("claude-sonnet-4-6", {"temperature": 0.5}),
        ("claude-haiku-4-5-20251001", {"thinking": {"type": "enabled", "budget_tokens": 1024}}),
        (
            "claude-sonnet-4-5",
            {
                "messages": [
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "{"},
                ]
            },
        ),
    ],
)
def test_a_request_the_model_accepts_passes_both(model: str, params: dict[str, Any]) -> None:
    request = body(model, **params)

    assert request_problem(request) is None
    validate_request(request)
    api_validate(request, api_version="2023-06-01")


def test_a_paused_turn_sent_back_is_not_an_assistant_prefill() -> None:
    paused = [
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
    ]
    request = body(
        "claude-sonnet-5-5",
        messages=[
            {"role": "user", "content": "Search."},
            {"role": "assistant", "content": paused},
        ],
    )

    assert request_problem(request) is None


@pytest.mark.parametrize(
    ("model", "thinks"),
    [
        ("claude-sonnet-5", True),
        ("claude-sonnet-5-5", True),
        ("claude-opus-5-5", True),
        ("claude-sonnet-4-6", False),
        ("claude-haiku-4-5", False),
    ],
)
def test_thinking_when_omitted_follows_the_model(model: str, thinks: bool) -> None:
    plan = plan_thinking(body(model), rules_for(model), random.Random(1))

    assert (plan.tokens > 0) is thinks
    assert plan.mode == ("adaptive" if thinks else "off")


def test_effort_sets_how_much_an_adaptive_call_thinks() -> None:
    rules = rules_for("claude-sonnet-5")
    spent = {
        effort: [
            plan_thinking(body("claude-sonnet-5", output_config={"effort": effort}), rules,
                          random.Random(seed)).tokens
            for seed in range(50)
        ]
        for effort in EFFORT_RANGES
    }  # fmt: skip

    means = [sum(values) / len(values) for values in spent.values()]
    assert means == sorted(means)  # low < medium < high < xhigh < max
    for effort, values in spent.items():
        low, high = EFFORT_RANGES[effort]
        assert all(low <= v <= high for v in values)


def test_a_budget_caps_manual_thinking_and_disabled_means_none() -> None:
    rules = rules_for("claude-sonnet-4-6")
    budget = {"type": "enabled", "budget_tokens": 2048}

    planned = plan_thinking(body("claude-sonnet-4-6", thinking=budget), rules, random.Random(3))
    off = plan_thinking(
        body("claude-sonnet-5", thinking={"type": "disabled"}),
        rules_for("claude-sonnet-5"),
        random.Random(3),
    )

    assert 512 <= planned.tokens <= 2048 and planned.display == "summarized"
    assert off.tokens == 0


def test_dated_snapshots_follow_their_model() -> None:
    assert rules_for("claude-sonnet-4-5-20250929") is MODELS["claude-sonnet-4-5"]
    assert rules_for("claude-no-such-model") is None
