"""The aiohttp application of the local Anthropic API, and how to serve it.

Serve it through `make_runner` and `make_site` (or `LocalAPIServer`): they
turn off the access log, which would cost more CPU than a call, cancel a
handler whose client went away (aiohttp 3.9+ no longer does by default, and
a hung call must end when its client gives up), and allow a deep listen
backlog so that a thousand clients connecting at once are not refused.
"""

from __future__ import annotations

from aiohttp import web

from localapi.admin import AdminHandlers
from localapi.batches import BatchHandlers
from localapi.config import LocalAPIConfig
from localapi.handlers import APIHandlers
from localapi.state import LocalAPIState

STATE_KEY = web.AppKey("localapi_state", LocalAPIState)
LISTEN_BACKLOG = 2048


def create_app(
    config: LocalAPIConfig | None = None, state: LocalAPIState | None = None
) -> web.Application:
    """The application; `state` (else a new one from `config`) is kept under `STATE_KEY`."""
    if state is None:
        state = LocalAPIState(config or LocalAPIConfig())
    # Bodies are read and limited by the handlers (413 with the API's body), not by aiohttp.
    app = web.Application(client_max_size=2**63 - 1)
    app[STATE_KEY] = state
    api = APIHandlers(state)
    admin = AdminHandlers(state)
    batches = BatchHandlers(state)
    one = "/v1/messages/batches/{batch_id}"
    app.add_routes(
        [
            web.post("/v1/messages", api.messages),
            web.post("/v1/messages/count_tokens", api.count_tokens),
            web.post("/v1/messages/batches", batches.create),
            web.get("/v1/messages/batches", batches.list),
            web.get(one, batches.retrieve),
            web.delete(one, batches.delete),
            web.post(one + "/cancel", batches.cancel),
            web.get(one + "/results", batches.results),
            web.get("/_mock/stats", admin.stats),
            web.get("/_mock/log", admin.log),
            web.post("/_mock/reset", admin.reset),
            web.post("/_mock/script", admin.add_script),
            web.delete("/_mock/script", admin.clear_script),
            web.get("/_mock/config", admin.get_config),
            web.post("/_mock/config", admin.set_config),
        ]
    )
    return app


def make_runner(app: web.Application, shutdown_timeout_s: float = 1.0) -> web.AppRunner:
    """A runner with the settings the local API needs (see the module docstring).

    On shutdown, calls still running get `shutdown_timeout_s` (twice, in
    aiohttp's two phases) before they are cut off.
    """
    return web.AppRunner(
        app,
        access_log=None,
        handler_cancellation=True,
        handle_signals=False,
        shutdown_timeout=shutdown_timeout_s,
    )


def make_site(runner: web.AppRunner, host: str, port: int) -> web.TCPSite:
    return web.TCPSite(runner, host, port, backlog=LISTEN_BACKLOG, reuse_address=True)
