"""How chorus asks for a structured answer on the wire: the names both sides read.

chorus asks for an answer that matches a JSON Schema in one of three ways
(``workers/structured.py`` chooses by model, docs/ARCHITECTURE.md,
"Structured answers"):

- ``native``: the schema in ``output_config.format`` (``{"type": "json_schema",
  "schema": ...}``, the SDK's ``types/json_output_format_param.py``), after the
  SDK's own ``anthropic.transform_schema`` (the subset the API enforces);
- ``tool``: one tool named :data:`ANSWER_TOOL` whose ``input_schema`` is the
  schema, forced with ``tool_choice: {"type": "tool", "name": ANSWER_TOOL}``;
- ``prompt``: the schema in the system prompt between :data:`SCHEMA_OPEN` and
  :data:`SCHEMA_CLOSE`, with the instruction to answer with that JSON alone.

The local API (``localapi``) reads the same names to answer as a model would.
"""

from __future__ import annotations

ANSWER_TOOL = "chorus_answer"
SCHEMA_OPEN = "<json-schema>"
SCHEMA_CLOSE = "</json-schema>"
METHODS: tuple[str, ...] = ("native", "tool", "prompt")
