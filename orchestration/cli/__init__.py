"""The ``chorus`` command (``main``), one module per kind of command:

- ``common``: the group the commands register on, and what they share
- ``call``: ``chorus call``
- ``patterns``: ``vote``, ``section``, ``fanout``
- ``submit``: ``submit``, ``wait``: a batch sent, and followed
- ``batches``: ``status``, ``ls``, ``results``, ``cancel``, ``retry``, ``resume``, ``rm``
- ``operations``: ``worker``, ``limits``, ``demo``, ``redis status|stop``; ``mock-api``
  is ``localapi.cli``, imported only when used
"""

from orchestration.cli import batches, call, operations, patterns, submit
from orchestration.cli.common import main

__all__ = ["batches", "call", "main", "operations", "patterns", "submit"]
