"""`python -m localapi [options]`, also reached as `chorus mock-api [options]`."""

from __future__ import annotations

import sys

from localapi.config import parse_args
from localapi.runner import run


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; 0 then, 1 if the server cannot start, 2 on bad options."""
    config = parse_args(argv)

    def ready(url: str) -> None:
        print(f"local Anthropic API on {url} ({config.describe()})", flush=True)

    try:
        run(config, ready=ready)
    except (OSError, ValueError) as exc:
        # A port in use, an unreadable or invalid --script file.
        print(f"chorus mock-api: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
