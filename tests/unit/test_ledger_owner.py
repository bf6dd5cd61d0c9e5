"""The ledger owns batch state: no module outside ``workers/ledger`` names a batch's keys
or the fields of its hash (docs/ARCHITECTURE.md, "Who owns which keys")."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from workers import keys

ROOT = Path(__file__).resolve().parents[2]
LEDGER = ROOT / "workers" / "ledger"
# chorus's own code (localapi is the API's stand-in: it never reads chorus's state).
PACKAGES = ("config", "workers", "orchestration", "bench")

# The key builders of a batch (workers/keys.py), and its hash's fields that no
# other code has a reason to spell: counters by prefix, and the named ones
# (times such as "updated_at" are common words elsewhere: the key check covers them).
BATCH_KEYS = {name for name in dir(keys) if name.startswith("batch")}
COUNTER = re.compile(r"^(n|tok|err|retry|wait_ms):[a-z_]*$")
FIELDS = {
    "enqueued",
    "pause_message",
    "max_cost_micros",
    "cost_micros",
    "reserved_micros",
    "cost_unknown",
}


def _sources() -> list[Path]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if LEDGER not in path.parents and path != ROOT / "workers" / "keys.py":
                found.append(path)
    return found


def _names_the_ledger(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "keys"
            and node.attr in BATCH_KEYS
        ):
            found.append((node.lineno, f"keys.{node.attr}"))
        elif isinstance(node, ast.ImportFrom) and node.module == "workers.keys":
            found += [(node.lineno, a.name) for a in node.names if a.name in BATCH_KEYS]
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and (node.value in FIELDS or COUNTER.match(node.value))
        ):
            found.append((node.lineno, repr(node.value)))
    return found


def test_no_module_outside_the_ledger_names_a_batch_key_or_a_ledger_field() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path in _sources()
        for line, what in _names_the_ledger(ast.parse(path.read_text(), str(path)))
    ]
    assert offenders == []


def test_the_check_knows_the_ledger_s_keys_and_fields() -> None:
    # The lists above are the ledger's own: each field is written by its code,
    # and the check finds a raw write when one is there.
    written = "\n".join(p.read_text() for p in LEDGER.rglob("*") if p.suffix in (".lua", ".py"))
    assert {f for f in FIELDS if f"'{f}'" not in written and f'"{f}"' not in written} == set()
    assert {"batch", "batch_items", "batch_results", "batch_keys", "batch_index"} <= BATCH_KEYS
    raw = ast.parse('client.hincrby(keys.batch(b), "n:p", 1)\nclient.hget(k, "enqueued")')
    assert sorted(what for _, what in _names_the_ledger(raw)) == [
        "'enqueued'",
        "'n:p'",
        "keys.batch",
    ]
