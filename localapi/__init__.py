"""A local stand-in for the Anthropic Messages API, for tests, the demo and benchmarks.

The real `anthropic` SDK talks to it over HTTP through `base_url`. See
`localapi.handlers` for what a call gets, `localapi.script` for steering the
answers from the prompt, and `localapi.runner` for serving it.
"""

from __future__ import annotations

from localapi.cli import parse_args
from localapi.config import LocalAPIConfig
from localapi.runner import LocalAPIServer, run
from localapi.server import create_app

__all__ = ["LocalAPIConfig", "LocalAPIServer", "create_app", "parse_args", "run"]
