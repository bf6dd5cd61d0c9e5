"""The prompt text chorus's own commands write (``chorus section``, ``chorus fanout``)."""

from __future__ import annotations

# One branch of `chorus section` or `chorus fanout`: the document read for one aspect.
ASPECT_PROMPT = "Review the document below for {aspect}. Be specific and brief.\n\n{document}"
