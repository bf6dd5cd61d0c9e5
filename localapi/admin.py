"""The `/_mock/*` endpoints: what tests and benchmarks use to steer and read the server.

They take no key: the server listens on loopback by default and holds no secrets.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from localapi.responses import admin_json
from localapi.state import LocalAPIState


async def _json_body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read())
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"body is not valid JSON: {exc}") from exc


def _bad_request(exc: ValueError) -> web.Response:
    return admin_json({"error": str(exc)}, status=400)


class AdminHandlers:
    def __init__(self, state: LocalAPIState) -> None:
        self.state = state

    async def stats(self, request: web.Request) -> web.Response:
        return admin_json(self.state.stats.to_dict())

    async def log(self, request: web.Request) -> web.Response:
        return admin_json(self.state.log.entries(request.query.get("contains")))

    async def reset(self, request: web.Request) -> web.Response:
        self.state.reset()
        return admin_json({"ok": True})

    async def add_script(self, request: web.Request) -> web.Response:
        try:
            added = self.state.script.add(await _json_body(request))
        except ValueError as exc:
            return _bad_request(exc)
        return admin_json({"added": added, "rules": len(self.state.script)})

    async def clear_script(self, request: web.Request) -> web.Response:
        self.state.script.clear()
        return admin_json({"rules": 0})

    async def get_config(self, request: web.Request) -> web.Response:
        return admin_json(self.state.config.to_dict())

    async def set_config(self, request: web.Request) -> web.Response:
        changes = await _json_body(request)
        if not isinstance(changes, dict):
            return admin_json({"error": "expected a JSON object of setting changes"}, status=400)
        try:
            config = self.state.configure(changes)
        except (TypeError, ValueError) as exc:
            return _bad_request(ValueError(str(exc)))
        return admin_json(config.to_dict())
