"""Which buckets a call draws from: a short hash of the API key and the model family.

Anthropic enforces its limits per organisation and model family, so two
calls share buckets when they use the same key and the same family. The key
itself never appears: only the first 12 hex digits of its SHA-256 do.
"""

from __future__ import annotations

import hashlib
import re

_FAMILY = re.compile(r"^claude-(?:\d+(?:-\d+)?-)?([a-z]+)")


def model_family(model: str) -> str:
    """``claude-sonnet-5`` and ``claude-3-5-sonnet-20241022`` are both "sonnet"."""
    match = _FAMILY.match(model)
    return match.group(1) if match else model


def api_fingerprint(api_key: str | None) -> str:
    if not api_key:
        return "nokey"
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:12]


def bucket_id(api_key: str | None, model: str) -> str:
    """Which buckets a call of ``model`` draws from: ``fingerprint:family``."""
    return f"{api_fingerprint(api_key)}:{model_family(model)}"


def family_of_key(bucket: str) -> str:
    """The model family part of a bucket id."""
    return bucket.rsplit(":", 1)[-1]
