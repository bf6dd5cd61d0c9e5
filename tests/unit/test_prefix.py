"""orchestration.prefix: which prompt prefixes are marked for the cache, and how."""

from __future__ import annotations

import random
from typing import Any

import pytest

from orchestration.prefix import Leads, PrefixFinder, find_shares, mark_all
from workers.models import CacheSplit, CallRequest

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]


def text(words: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(words))


def request(prompt: str, **fields: Any) -> CallRequest:
    body = {"model": "claude-sonnet-5", "max_tokens": 100, **fields}
    return CallRequest.model_validate({**body, "messages": [{"role": "user", "content": prompt}]})


def marks(r: CallRequest) -> list[dict[str, Any]]:
    """The cache marks of the body ``r`` is sent as."""
    params = r.api_params()
    system = params.get("system")
    blocks: list[Any] = list(system) if isinstance(system, list) else []
    content = params["messages"][0]["content"]
    blocks += content if isinstance(content, list) else []
    return [b["cache_control"] for b in blocks if "cache_control" in b]


def test_items_sharing_a_long_start_have_it_split_off_and_marked() -> None:
    doc = text(1_500)
    requests = [request(f"{doc}\n\nQuestion {i}?") for i in range(3)]
    finder = find_shares(requests)

    marked, share = finder.mark(requests[1], None)

    assert share is not None and share.requests == 3 and not share.system
    assert marked.messages == requests[1].messages  # the content as written
    first, rest = marked.api_params()["messages"][0]["content"]  # marked when sent
    assert first == {"type": "text", "text": share.text, "cache_control": {"type": "ephemeral"}}
    assert rest == {"type": "text", "text": requests[1].messages[0].content[len(share.text) :]}
    assert share.text.endswith((" ", "\n")) and share.text.startswith(doc)
    # The mark changes the cost, not the call: one content address.
    assert marked.idempotency_key() == requests[1].idempotency_key()


def test_a_group_of_one_or_a_prefix_below_the_minimum_is_not_marked() -> None:
    alone = request(text(1_500, seed=2))
    short = [request(f"{text(100)}\n\nQuestion {i}?") for i in range(5)]
    finder = find_shares([alone, *short])

    assert finder.mark(alone, None) == (alone, None)
    assert finder.mark(short[0], None) == (short[0], None)
    assert finder.shares() == []


def test_the_minimum_is_the_models() -> None:
    # About 1,300 tokens: enough for Sonnet 5 (1,024), not for Haiku 4.5 (4,096).
    doc = text(1_000)
    sonnet = [request(f"{doc} q{i}") for i in range(2)]
    haiku = [request(f"{doc} q{i}", model="claude-haiku-4-5") for i in range(2)]
    finder = find_shares([*sonnet, *haiku])

    assert finder.mark(sonnet[0], None)[1] is not None
    assert finder.mark(haiku[0], None)[1] is None


def test_a_long_shared_system_prompt_is_marked_and_the_batches_ttl_is_an_hour() -> None:
    system = text(1_500, seed=3)
    requests = [request(f"Short question {i}?", system=system) for i in range(4)]
    finder = find_shares(requests)

    marked, share = finder.mark(requests[0], "1h")

    assert share is not None and share.system and share.text == ""
    params = marked.api_params()
    assert params["system"] == [
        {"type": "text", "text": system, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    ]
    assert params["messages"] == requests[0].api_params()["messages"]
    assert marked.idempotency_key() == requests[0].idempotency_key()


def test_requests_their_author_marked_are_left_alone() -> None:
    doc = text(1_500)
    authored = CallRequest.model_validate(
        {
            "model": "claude-sonnet-5",
            "max_tokens": 100,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": doc, "cache_control": {"type": "ephemeral"}},
                        {"type": "text", "text": "Question?"},
                    ],
                }
            ],
        }
    )
    finder = find_shares([authored, authored])
    assert finder.mark(authored, None) == (authored, None)


def test_two_documents_are_two_groups_each_with_its_own_lead() -> None:
    docs = [text(1_500, seed=4), text(1_500, seed=5)]
    requests = [request(f"{docs[i % 2]}\n\nQ{i}?") for i in range(6)]

    marked = mark_all(requests)

    options = [option for _, option in marked]
    assert all(option is not None for option in options)
    digests = {option["digest"] for option in options if option}
    assert len(digests) == 2
    leads = [i for i, option in enumerate(options) if option and option["lead"]]
    assert leads == [0, 1]  # the first sent of each group
    assert all(len(marks(r)) == 1 for r, _ in marked)


def test_a_vote_of_identical_samples_marks_all_but_the_last_word() -> None:
    prompt = text(1_500) + " ending"
    samples = [request(prompt).model_copy(update={"sample": i}) for i in range(5)]

    marked = mark_all(samples)

    [(first, lead), *others] = marked
    assert lead is not None and lead["lead"]
    assert all(option and not option["lead"] for _, option in others)
    cached, rest = first.api_params()["messages"][0]["content"]
    assert rest["text"] == "ending" and cached["cache_control"] == {"type": "ephemeral"}


def test_the_setting_turns_marking_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from config.settings import get_settings

    monkeypatch.setenv("CHORUS_CACHE__ENABLED", "false")
    get_settings.cache_clear()
    requests = [request(f"{text(1_500)} q{i}") for i in range(3)]
    try:
        assert mark_all(requests) == [(r, None) for r in requests]
    finally:
        get_settings.cache_clear()


def test_leads_name_one_lead_per_group_and_nothing_for_unmarked() -> None:
    leads = Leads()
    finder = PrefixFinder()
    assert leads.option(None) is None
    for r in [request(f"{text(1_500)} q{i}") for i in range(2)]:
        finder.add(r)
    _, share = finder.mark(request(f"{text(1_500)} q0"), None)
    first, second = leads.option(share), leads.option(share)
    assert first and second and first["lead"] and not second["lead"]
    assert first["digest"] == second["digest"]
    # Another submit of the same prefix has a lead of its own.
    other = Leads().option(share)
    assert other and other["lead"] and other["digest"] != first["digest"]


def test_a_call_waits_for_its_lead_and_no_longer_than_the_wait() -> None:
    import threading
    import time

    import fakeredis

    from workers.prefix_gate import lead_returned, wait_for_lead

    client = fakeredis.FakeRedis()
    started = time.monotonic()
    assert wait_for_lead(client, "d1", wait_s=0.2) >= 0.2  # no lead: it goes after the wait
    assert time.monotonic() - started < 1.0
    assert wait_for_lead(client, "d1", wait_s=5.0) < 0.05  # and the calls after it do not wait

    threading.Timer(0.15, lambda: lead_returned(client, "d2")).start()
    waited = wait_for_lead(client, "d2", wait_s=5.0)
    assert 0.1 <= waited < 1.0  # it went once the lead returned, not after 5 s
    assert wait_for_lead(client, "d2", wait_s=5.0) < 0.05  # and later calls do not wait


def test_a_first_turn_of_blocks_keeps_its_other_blocks_and_its_address() -> None:
    doc = text(1_500)
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "AA=="},
    }
    requests = [
        CallRequest.model_validate(
            {
                "model": "claude-sonnet-5",
                "max_tokens": 100,
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": f"{doc} q{i}"}, image]}
                ],
            }
        )
        for i in range(3)
    ]
    finder = find_shares(requests)

    for request in requests:
        marked, share = finder.mark(request, None)
        assert share is not None
        assert marked.idempotency_key() == request.idempotency_key()
        head, rest, last = marked.api_params()["messages"][0]["content"]
        assert head["cache_control"] == {"type": "ephemeral"} and "cache_control" not in rest
        assert head["text"] + rest["text"] == f"{doc} q{requests.index(request)}"
        assert last == image


def test_marks_an_author_wrote_stay_part_of_the_address() -> None:
    def with_block(block: dict[str, Any]) -> CallRequest:
        return CallRequest.model_validate(
            {
                "model": "claude-sonnet-5",
                "max_tokens": 100,
                "messages": [{"role": "user", "content": [block]}],
            }
        )

    plain = with_block({"type": "text", "text": "hello"})
    marked = with_block({"type": "text", "text": "hello", "cache_control": {"type": "ephemeral"}})
    assert plain.idempotency_key() != marked.idempotency_key()
    # A split chorus adds is not part of it.
    assert plain.model_copy(update={"cache_split": CacheSplit(chars=3)}).idempotency_key() == (
        plain.idempotency_key()
    )


def test_a_header_shared_by_two_documents_does_not_hide_each_documents_prefix() -> None:
    header = "MEMO - internal - quarterly review - distribution: finance team only\n"
    memos = [header + text(1_500, seed=seed) for seed in (21, 22)]
    requests = [request(f"{memo}\n\nQ{i}?") for memo in memos for i in range(3)]

    marked = mark_all(requests)

    assert all(option is not None for _, option in marked)
    assert len({option["digest"] for _, option in marked if option}) == 2


def test_text_without_spaces_is_still_split() -> None:
    doc = "\u8bb0" * 3_000  # a script written without spaces
    requests = [request(f"{doc}{i}") for i in range(3)]

    marked = mark_all(requests)

    assert all(option is not None for _, option in marked)
