"""A producer script: submit a batch, follow it, write the results, retry what failed.

Run it beside a worker fleet (``chorus worker``); without ANTHROPIC_API_KEY on
the workers, point them at the local API (``chorus mock-api`` and
``ANTHROPIC_BASE_URL=http://127.0.0.1:8765``).

    python examples/producer.py examples/reviews.jsonl --budget 2.00
"""

from __future__ import annotations

import argparse
import sys

from orchestration import Batch, BatchStatus, InvalidBatchFile


def show(status: BatchStatus) -> None:
    print(
        f"\r{status.ended:,}/{status.total:,} ended, {status.count('failed')} failed, "
        f"${status.cost_usd:.4f}",
        end="",
        file=sys.stderr,
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("items", help="a JSONL file: one {'id', 'prompt'} per line")
    parser.add_argument("--name", default="example-reviews", help="resubmit to resume")
    parser.add_argument("--budget", type=float, default=None, help="USD; stop sending past it")
    parser.add_argument("--out", default="results.jsonl")
    args = parser.parse_args()

    try:
        batch = Batch.submit(
            args.items,
            name=args.name,
            system="You write one plain sentence.",
            # Thinking counts against max_tokens: little of it, and room for both.
            max_tokens=1024,
            effort="low",
            max_cost_usd=args.budget,
        )
    except InvalidBatchFile as exc:
        print(exc, file=sys.stderr)  # every bad line, with its number; nothing was enqueued
        return 2
    print(f"batch {batch.id}: {batch.report.enqueued} items enqueued", file=sys.stderr)

    status = batch.wait(on_progress=show)
    print(file=sys.stderr)
    if status.pause_message:
        print(status.pause_message, file=sys.stderr)
        return 3
    if status.count("failed"):
        print(f"retrying {batch.retry_failed()} failed items", file=sys.stderr)
        status = batch.wait(on_progress=show)
        print(file=sys.stderr)

    written = batch.write_results(args.out)
    print(f"{written} results in {args.out} (input order); cost ${status.cost_usd:.4f}")
    return 0 if status.count("failed") == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
