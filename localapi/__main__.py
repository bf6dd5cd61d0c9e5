"""`python -m localapi [options]`, the same command as `chorus mock-api [options]`."""

from __future__ import annotations

from localapi.cli import PROG, mock_api

if __name__ == "__main__":
    mock_api.main(prog_name=PROG)
