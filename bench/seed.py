"""The seed article's pattern, as the baseline: AsyncAnthropic, a semaphore, gather.

N independent calls, at most C at a time, in one process and one event loop:
what chorus has to keep up with while adding distribution, a cluster-wide
limit and durability. Run in its own process so its CPU time is its own.

    python -m bench.seed --url http://127.0.0.1:8765 -n 2000 -c 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from anthropic import AsyncAnthropic

MODEL = "claude-sonnet-5-5"
# As chorus's side sends it (bench/throughput.py): little thinking, room for it.
EFFORT = "low"


async def run(
    url: str, key: str, n: int, concurrency: int, max_tokens: int, tag: str
) -> dict[str, float]:
    client = AsyncAnthropic(api_key=key, base_url=url)
    semaphore = asyncio.Semaphore(concurrency)

    async def one(i: int) -> str:
        async with semaphore:
            response = await client.messages.create(
                model=MODEL,
                max_tokens=max_tokens,
                output_config={"effort": EFFORT},
                messages=[{"role": "user", "content": f"Summarise item {i} ({tag})."}],
            )
            return "".join(block.text for block in response.content if block.type == "text")

    started, cpu = time.perf_counter(), time.process_time()
    results = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    wall_s = time.perf_counter() - started
    cpu_s = time.process_time() - cpu
    await client.close()
    return {
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "ok": float(sum(1 for r in results if isinstance(r, str))),
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.seed")
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", default="sk-ant-bench-not-a-real-key")
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("-c", "--concurrency", type=int, default=100)
    parser.add_argument("--max-tokens", type=int, default=50)
    parser.add_argument("--tag", default="seed")
    args = parser.parse_args()
    figures = asyncio.run(
        run(args.url, args.key, args.n, args.concurrency, args.max_tokens, args.tag)
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
