"""The compose file, .env.example and the Dockerfile, checked without a Docker engine.

docker-compose.yml is validated against the Compose Specification's JSON
schema (vendored in tests/data), then read service by service for what the
fleet promises: a durable, password-protected Redis, workers that scale,
Flower behind basic auth on loopback, the local API under a profile, the API
key in the workers' containers only, and no start with the example's empty
secrets. When Debian's ``docker-compose`` is installed (``make e2e`` installs
it), its own ``config`` command checks the file too.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from config.settings import FamilyLimits, Settings, load_settings
from tests.integration.fleet_helpers import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    ROOT,
    MissingVariable,
    commented_settings,
    interpolate,
    load_compose,
    read_env_file,
    render,
    require,
    service_env,
    variables_in,
)

SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"
SERVICES = {"redis", "worker", "flower", "localapi"}
# What .env.example leaves empty and a user must set before anything starts.
SECRETS = {"REDIS_PASSWORD": "pw-of-this-test", "FLOWER_BASIC_AUTH": "ops:flower-pw"}
# The services that call the API, and so the only ones given its key.
CALLERS = {"worker"}
# Distinctive, so a copy anywhere is found by a plain substring search.
KEY = "sk-ant-compose-CANARY-1d9e"


def _rendered(**overrides: str) -> dict[str, Any]:
    """The compose file as Compose sees it with .env.example's secrets filled in."""
    return render(load_compose(), {**read_env_file(ENV_EXAMPLE), **SECRETS, **overrides})


def _setting_names() -> set[str]:
    """Every environment variable chorus's settings read; <FAMILY>/<MODEL> for dict entries."""
    from pydantic import BaseModel

    from config.prices import ModelPrice

    names: set[str] = set()

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, f"{prefix}{name.upper()}__")
            elif prefix == "CHORUS_" and name == "limits":
                walk(FamilyLimits, "CHORUS_LIMITS__<FAMILY>__")
            elif prefix == "CHORUS_" and name == "prices":
                walk(ModelPrice, "CHORUS_PRICES__<MODEL>__")
            elif field.validation_alias is not None:
                names.add(str(field.validation_alias.choices[0]))  # type: ignore[union-attr]
            else:
                names.add(prefix + name.upper())

    walk(Settings, "CHORUS_")
    return names | {"CHORUS_CONFIG_FILE"}


def load_settings_from(env: dict[str, str]) -> Settings:
    """chorus's settings as a process with exactly ``env`` (for chorus's variables) reads them."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(("CHORUS_", "ANTHROPIC_")):
                patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        return load_settings()


def _listed(name: str) -> str:
    """A variable of .env.example as _setting_names spells it."""
    parts = name.split("__")
    if parts[0] == "CHORUS_LIMITS" and len(parts) == 3:
        return f"CHORUS_LIMITS__<FAMILY>__{parts[2]}"
    if parts[0] == "CHORUS_PRICES" and len(parts) == 3:
        return f"CHORUS_PRICES__<MODEL>__{parts[2]}"
    return name


def test_the_compose_file_is_valid_under_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    # Validated as Compose validates it: after interpolation.
    errors = sorted(validator.iter_errors(_rendered()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    assert set(load_compose()["services"]) == SERVICES


def test_the_schema_check_catches_a_misspelt_key() -> None:
    # A check that passes everything proves nothing: a typo must fail it.
    document = _rendered()
    document["services"]["worker"]["helthcheck"] = document["services"]["worker"]["healthcheck"]
    validator = jsonschema.Draft201909Validator(json.loads(SCHEMA.read_text()))
    assert any("helthcheck" in e.message for e in validator.iter_errors(document))


def test_redis_keeps_an_append_only_file_never_evicts_and_needs_the_password() -> None:
    redis = _rendered(REDIS_PASSWORD="pw-from-env")["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert command[command.index("--requirepass") + 1] == "pw-from-env"
    assert redis["environment"]["REDISCLI_AUTH"] == "pw-from-env"  # for its healthcheck
    assert any(v.endswith(":/data") for v in redis["volumes"]), "the AOF must live on a volume"
    assert redis["ports"] == ["127.0.0.1:6379:6379"]


def test_every_chorus_service_reaches_redis_with_the_password_from_env() -> None:
    services = _rendered(REDIS_PASSWORD="pw-from-env")["services"]
    for name in ("worker", "flower"):
        assert services[name]["environment"]["CHORUS_BROKER_URL"] == (
            "redis://:pw-from-env@redis:6379/0"
        )
        assert services[name]["env_file"] == ".env", f"{name} must read every setting in .env"


def test_the_compose_file_refuses_to_start_without_a_redis_password_or_flower_login() -> None:
    env = {**read_env_file(ENV_EXAMPLE), **SECRETS}
    for name in SECRETS:
        with pytest.raises(MissingVariable, match=name):
            render(load_compose(), {**env, name: ""})


def test_the_example_env_file_as_written_starts_nothing_and_says_to_set_its_secrets() -> None:
    # Given .env.example copied to .env as it is
    example = read_env_file(ENV_EXAMPLE)

    # Then it holds no password that would work: each secret is empty
    assert {name: example[name] for name in SECRETS} == dict.fromkeys(SECRETS, "")

    # And the compose file refuses it, in one line that says what to set
    with pytest.raises(MissingVariable) as refused:
        render(load_compose(), example)
    [line] = str(refused.value).splitlines()
    assert re.fullmatch(
        r"(REDIS_PASSWORD|FLOWER_BASIC_AUTH): set \1 in \.env to .+ of your own", line
    )


def test_every_use_of_a_secret_refuses_it_empty() -> None:
    # `${NAME:?message}` stops Compose when NAME is unset or empty; a bare
    # `${NAME}` or `${NAME:-default}` anywhere would let one service start without it.
    text = COMPOSE_FILE.read_text()
    for name in SECRETS:
        uses = re.findall(r"\$\{" + name + r"(:?[-?]?)([^}]*)\}", text)
        assert uses, f"{name} is not used"
        assert all(op == ":?" and message.startswith(f"set {name} in .env") for op, message in uses)
        assert not re.search(r"\$" + name + r"\b", text), f"a bare ${name}"


def test_the_api_key_reaches_the_worker_containers_only(tmp_path: Path) -> None:
    # Given an .env with the key under both names chorus reads
    dotenv = {
        **read_env_file(ENV_EXAMPLE),
        **SECRETS,
        "ANTHROPIC_API_KEY": KEY,
        "CHORUS_ANTHROPIC_API_KEY": KEY,
    }
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in dotenv.items()))
    services = render(load_compose(), dotenv)["services"]

    # Then each container's environment (its env_file, then its `environment`)
    # holds the key in the workers and nowhere else, every profile included
    for name, service in services.items():
        env = service_env(service, tmp_path, dotenv)
        if name in CALLERS:
            assert env["ANTHROPIC_API_KEY"] == KEY, name
            assert load_settings_from(env).anthropic_api_key is not None
        else:
            holding = sorted(k for k, v in env.items() if KEY in v)
            assert holding == [], f"{name} gets the API key in {holding}"
            assert load_settings_from(env).anthropic_api_key is None, name
        # ...and never on a command line, where `ps` would show it
        assert KEY not in json.dumps(service.get("command", "")), name


def test_workers_scale_no_fixed_name_no_host_port_one_process_each_with_a_healthcheck() -> None:
    worker = _rendered()["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker and "hostname" not in worker
    assert worker["command"][:4] == ["chorus", "worker", "--processes", "1"]
    assert "--pool" not in worker["command"] and "-c" not in worker["command"], (
        "pool and threads come from CHORUS_WORKER__POOL/CONCURRENCY in .env"
    )
    test = " ".join(worker["healthcheck"]["test"])
    assert "inspect ping" in test and "chorus1@$HOSTNAME" in test
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert worker["init"] is True, "SIGTERM must reach celery for a warm shutdown"


def test_flower_asks_for_a_login_from_env_and_listens_on_loopback_only() -> None:
    flower = _rendered(FLOWER_BASIC_AUTH="ann:pw")["services"]["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == "ann:pw"
    assert flower["ports"] == ["127.0.0.1:5555:5555"]
    assert "--basic-auth" not in " ".join(flower["command"]), "no password on a command line"
    assert flower["command"][:4] == ["celery", "-A", "orchestration.flowerapp", "flower"]
    assert "healthcheck" in flower


def test_the_local_api_runs_only_under_the_offline_profile() -> None:
    services = _rendered()["services"]
    assert services["localapi"]["profiles"] == ["offline"]
    assert all("profiles" not in services[name] for name in SERVICES - {"localapi"})
    assert services["localapi"]["command"][:2] == ["chorus", "mock-api"]


def test_every_variable_the_compose_file_uses_is_in_env_example() -> None:
    used = variables_in(COMPOSE_FILE.read_text())
    listed = set(read_env_file(ENV_EXAMPLE))
    assert used - {"HOSTNAME"} <= listed, f"missing from .env.example: {used - listed}"


def test_env_example_lists_every_setting_and_nothing_that_is_not_one() -> None:
    listed = {_listed(n) for n in [*read_env_file(ENV_EXAMPLE), *commented_settings(ENV_EXAMPLE)]}
    settings = _setting_names()
    assert settings - listed == set(), f"settings missing from .env.example: {settings - listed}"
    strays = {n for n in listed - settings if n.startswith("CHORUS_") and n != "CHORUS_IMAGE_TAG"}
    assert strays == set(), f"not settings: {strays}"


def test_env_example_states_the_real_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = commented_settings(ENV_EXAMPLE)
    given = {
        name: value
        for name, value in defaults.items()
        if name.startswith("CHORUS_") and value and name != "CHORUS_CONFIG_FILE"
    }
    # Given no setting at all, then every commented default at once
    for name in list(os.environ):
        if name.startswith(("CHORUS_", "ANTHROPIC_")):
            monkeypatch.delenv(name)
    plain = load_settings()
    for name, value in given.items():
        monkeypatch.setenv(name, value)
    stated = load_settings()
    # Then they change nothing
    skip = {"limits", "prices"}
    assert stated.model_dump(exclude=skip) == plain.model_dump(exclude=skip)
    assert stated.limits_for("sonnet") == plain.limits_for("sonnet")
    assert stated.price_for("claude-sonnet-5") == plain.price_for("claude-sonnet-5")


def test_env_example_with_its_secrets_set_gives_valid_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in list(os.environ):
        if name.startswith(("CHORUS_", "ANTHROPIC_")):
            monkeypatch.delenv(name)
    container_env = {
        **read_env_file(ENV_EXAMPLE),
        **SECRETS,
        **_rendered()["services"]["worker"]["environment"],
    }
    for name, value in container_env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.broker_url.startswith("redis://:")
    assert settings.anthropic_api_key is None  # ANTHROPIC_API_KEY= means "not set"
    assert settings.worker.pool == "threads"


def test_the_interpolation_follows_compose() -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("${SET:-d} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d} $$SET $SET", env) == (
        "v d  d $SET v"
    )
    with pytest.raises(MissingVariable, match="say why"):
        interpolate("${EMPTY:?say why}", env)


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip().rstrip("/") for line in lines if line.strip() and not line.startswith("#")]


def _ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        bare = pattern.lstrip("!")
        if fnmatch.fnmatch(path, bare) or path.startswith(bare + "/"):
            ignored = not negate
    return ignored


def test_the_image_is_slim_non_root_and_built_without_secrets_or_the_venv() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("FROM ")]
    assert stages and all(s.startswith("python:3.11-slim") for s in stages)
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the image must run as a non-root user"
    patterns = _dockerignore()
    for secret_or_bulk in (".env", ".venv", ".git", "test-output", "bench/results"):
        assert _ignored(secret_or_bulk, patterns), f"{secret_or_bulk} would be sent to the build"
    # What `pip install .` needs must reach the build.
    for needed in ("pyproject.toml", "README.md", "config", "workers", "orchestration", "localapi"):
        assert not _ignored(needed, patterns), f".dockerignore drops {needed}"
        assert (ROOT / needed).exists()


def test_docker_compose_config_refuses_the_example_and_keeps_the_key_in_the_workers(
    tmp_path: Path,
) -> None:
    require(
        shutil.which("docker-compose"),
        "Debian's docker-compose is not installed (make e2e installs it); "
        "the schema test checks the file without it",
    )

    def config(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker-compose", *args, "config"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    # docker-compose reads .env from the project directory: give it a copy of both.
    shutil.copy(COMPOSE_FILE, tmp_path / "docker-compose.yml")
    example = ENV_EXAMPLE.read_text()
    (tmp_path / ".env").write_text(example)

    # With .env.example as written, compose itself refuses, in one line saying what to set
    refused = config()
    assert refused.returncode != 0
    [line] = refused.stderr.strip().splitlines()
    assert "set REDIS_PASSWORD in .env to a long random string of your own" in line

    # With the secrets and a key set, it accepts the file
    filled = {**SECRETS, "ANTHROPIC_API_KEY": KEY}
    for name, value in filled.items():
        example = re.sub(rf"(?m)^{name}=$", f"{name}={value}", example)
    (tmp_path / ".env").write_text(example)
    done = config("--profile", "offline")
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    assert set(services) == SERVICES
    assert services["worker"]["environment"]["CHORUS_BROKER_URL"] == (
        "redis://:pw-of-this-test@redis:6379/0"
    )
    # And in what compose would start, only the workers hold the key
    assert [name for name in sorted(services) if KEY in json.dumps(services[name])] == sorted(
        CALLERS
    )


def test_the_image_carries_every_data_file_the_packages_read() -> None:
    # The image installs a wheel (no source tree, no .git), so a .lua script or a
    # data file that pyproject's package-data does not name is missing there,
    # while an editable install (make test) still finds it in the work tree.
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_data: dict[str, list[str]] = setuptools.get("package-data", {})
    missing = []
    for package in ("config", "workers", "orchestration", "localapi"):
        for path in sorted((ROOT / package).rglob("*")):
            if not path.is_file() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
                continue
            owner = path.parent
            covered = False
            while owner != ROOT:
                name = ".".join(owner.relative_to(ROOT).parts)
                relative = path.relative_to(owner).as_posix()
                if any(fnmatch.fnmatch(relative, p) for p in package_data.get(name, [])):
                    covered = True
                    break
                owner = owner.parent
            if not covered:
                missing.append(path.relative_to(ROOT).as_posix())
    assert missing == [], f"not in [tool.setuptools.package-data], so not in the image: {missing}"
