"""The ledger's item states: one enum in Python, the same letters and sets in its Lua scripts."""

from __future__ import annotations

import re
from importlib import resources

from workers.ledger import ACTIVE, ENDED, STATE_NAMES, TERMINAL, ItemState

LUA = resources.files("workers.ledger") / "lua"


def _lua_table(name: str) -> set[str]:
    common = (LUA / "common.lua").read_text()
    match = re.search(rf"^local {name} = \{{(.*?)\}}", common, re.M)
    assert match, f"common.lua defines {name}"
    return set(re.findall(r"(\w) = true", match.group(1)))


def test_the_scripts_terminal_and_active_sets_are_the_enums() -> None:
    assert _lua_table("TERMINAL") == {s.value for s in TERMINAL}
    assert _lua_table("ACTIVE") == {s.value for s in ACTIVE}
    assert ENDED == TERMINAL


def test_every_state_letter_a_script_writes_is_a_state() -> None:
    letters = set(ItemState)
    for script in LUA.iterdir():
        if script.name.endswith(".lua"):
            for letter in re.findall(r"'([a-z])'", script.read_text()):
                assert letter in letters, f"{script.name} uses {letter!r}"


def test_the_scripts_comment_names_each_state() -> None:
    comment = (LUA / "common.lua").read_text()
    for state in ItemState:
        assert re.search(rf"\b{state.value} \w", comment), state


def test_state_names_are_the_enum_names() -> None:
    assert STATE_NAMES["b"] == "skipped_budget" and STATE_NAMES["t"] == "retrying"
    assert len(STATE_NAMES) == len(ItemState) == 9
    assert ItemState.FAILED == "f"  # a member equals its letter, as the scripts reply it
