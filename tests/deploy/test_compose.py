"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

The compose file is parsed and its variables are interpolated the way ``docker compose`` does
(``--env-file deploy/production.env`` for production); each Codex service's resulting environment
then goes through the app's own start-up checks (``Config.from_env(...).validate()``, what
``create_app`` runs first), so a deployment the app would refuse cannot be committed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.config import Config, ConfigError
from app.storage.s3 import S3Storage

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
PRODUCTION_EXAMPLE = ROOT / "deploy" / "production.env.example"
APP_IMAGE_SERVICES = {"createbucket", "release", "seed", "web", "worker", "media", "beat", "flower"}
# What an operator fills in (the example leaves them empty); everything else comes from the file.
PRODUCTION_SECRETS = {
    "SECRET_KEY": "k" * 48,
    "POSTGRES_PASSWORD": "pg-secret",
    "S3_SECRET_KEY": "s3-secret",
    "STRIPE_SECRET_KEY": "sk_live_123",
    "STRIPE_WEBHOOK_SECRET": "whsec_live_123",
    "FLOWER_BASIC_AUTH": "ops:secret",
}

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class InterpolationError(Exception):
    """A ``${X?message}`` / ``${X:?message}`` variable is missing, as compose would refuse."""


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: $$, $X, ${X}, ${X:-d}, ${X-d}, ${X:?e}, ${X?e}, ${X:+r}, ${X+r}."""

    def one(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        is_set = name in env
        usable = is_set and (env[name] != "" or not (op or "").startswith(":"))
        if op in {":-", "-"}:
            return env[name] if usable else arg
        if op in {":?", "?"}:
            if not usable:
                raise InterpolationError(f"{name}: {arg}")
            return env[name]
        if op in {":+", "+"}:
            return arg if usable else ""
        return env.get(name, "")

    return _VARIABLE.sub(one, value)


def interpolated(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolated(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolated(value, env) for key, value in node.items()}
    return node


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    """The compose model as ``docker compose config`` would see it with this environment."""
    document = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))  # resolves anchors and << merges
    return interpolated(document, env or {})


def service_config(service: dict[str, Any]) -> Config:
    environment = service.get("environment") or {}
    assert isinstance(environment, dict), "environment as a mapping keeps merges readable"
    return Config.from_env({name: str(value) for name, value in environment.items()})


def procfile_processes() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text(encoding="utf-8").splitlines()
    return dict(line.split(":", 1) for line in lines if line.strip() and not line.startswith("#"))


def production_env(**overrides: str) -> dict[str, str]:
    return {**read_env_file(PRODUCTION_EXAMPLE), **PRODUCTION_SECRETS, **overrides}


# ---- structure ------------------------------------------------------------------------------


def test_every_procfile_process_runs_as_a_service_through_the_procfile() -> None:
    services = compose()["services"]
    for name in procfile_processes():
        assert name in services, f"Procfile process {name} has no compose service"
        assert services[name]["command"] == ["/srv/codex/scripts/procfile-exec.sh", name]
    assert {name for name, service in services.items() if "build" in service} == APP_IMAGE_SERVICES


def test_one_shots_run_in_order_and_do_not_restart() -> None:
    services = compose()["services"]
    for name in ("createbucket", "release", "seed"):
        assert services[name]["restart"] == "no"
    assert services["release"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["createbucket"]["depends_on"] == {"s3": {"condition": "service_healthy"}}
    for name in APP_IMAGE_SERVICES - {"release", "createbucket"}:
        deps = services[name]["depends_on"]
        assert deps["release"] == {"condition": "service_completed_successfully"}
        assert deps["createbucket"] == {"condition": "service_completed_successfully"}
    assert services["seed"]["command"][-1].rstrip().endswith("exec flask --app app codex seed")


_PINNED_TAG = re.compile(r"v?\d+\.\d+(\.\d+)*([-.][A-Za-z0-9]+)*")


def _pinned(image: str) -> bool:
    name, sep, tag = image.rpartition(":")
    return bool(sep and name and "/" not in tag and "latest" not in tag and _PINNED_TAG.fullmatch(tag))


def test_every_image_is_pinned_to_a_version() -> None:
    assert _pinned("postgres:16.15") and _pinned("versity/versitygw:v1.7.0")
    assert not any(_pinned(image) for image in ("postgres", "postgres:16", "redis:latest", "minio/minio"))
    for name, service in compose()["services"].items():
        if "build" in service:
            continue  # built from the Dockerfile, checked below
        assert _pinned(service["image"]), f"{name}: {service['image']} is not pinned to a version"
    froms = re.findall(r"^FROM\s+(\S+)", (ROOT / "Dockerfile").read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert froms and all(_pinned(image) for image in froms)


def test_host_ports_are_loopback_and_leave_local_postgres_and_redis_alone() -> None:
    published: list[int] = []
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            host_ip, host_port, _container = str(port).split(":")
            assert host_ip == "127.0.0.1", f"{name}: {port} is published on every interface"
            published.append(int(host_port))
    assert published and not {5432, 6379} & set(published)
    assert len(published) == len(set(published))


def test_every_long_running_service_has_a_health_check() -> None:
    services = compose()["services"]
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^HEALTHCHECK .*\n.*/health", dockerfile, flags=re.MULTILINE)  # web: the image's own
    assert "healthcheck" not in services["web"]
    for name in ("worker", "media"):
        assert f"inspect ping -d {name}@" in " ".join(services[name]["healthcheck"]["test"])
    assert "/healthcheck" in " ".join(services["flower"]["healthcheck"]["test"])
    for name in ("postgres", "redis", "s3", "mailpit"):
        assert services[name]["healthcheck"]["test"]


def test_dockerfile_installs_the_lock_file_before_the_code_and_runs_as_a_user() -> None:
    steps = [line.strip() for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()]
    position = {step: index for index, step in enumerate(steps)}
    lock_copy = position["COPY requirements.lock ./"]
    lock_install = position["RUN pip install --require-hashes -r requirements.lock"]
    code_copy = position["COPY app ./app"]
    assert lock_copy < lock_install < code_copy < position["RUN pip install --no-deps ."]
    assert next(step for step in steps if step.startswith("COPY")) == "COPY requirements.lock ./"
    assert "USER codex" in position and "USER root" not in position
    ignored = set((ROOT / ".dockerignore").read_text(encoding="utf-8").split())
    assert {".env", ".env.*", ".venv", ".git", "var", "tests", "deploy"} <= ignored


# ---- environments through the app's start-up checks -----------------------------------------


def test_the_development_stack_passes_the_start_up_checks() -> None:
    services = compose()["services"]
    for name in APP_IMAGE_SERVICES:
        config = service_config(services[name])
        config.validate()
        assert (config.APP_ENV, config.STORAGE_BACKEND, config.MAIL_BACKEND) == ("development", "s3", "smtp")
        assert config.S3_ENDPOINT_URL == "http://s3:7070"
        assert config.s3_public_endpoint_url == "http://localhost:7070"
    # The S3 server's root account is the app's account.
    s3 = services["s3"]["environment"]
    web = services["web"]["environment"]
    assert (s3["ROOT_ACCESS_KEY"], s3["ROOT_SECRET_KEY"]) == (web["AWS_ACCESS_KEY_ID"], web["AWS_SECRET_ACCESS_KEY"])
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] in web["DATABASE_URL"]


def test_the_production_env_file_passes_the_start_up_checks_once_filled_in() -> None:
    env = production_env()
    services = compose(env)["services"]
    for name in APP_IMAGE_SERVICES:
        config = service_config(services[name])
        config.validate()  # raises ConfigError with the variable's name otherwise
        assert config.APP_ENV == "production"
        assert PRODUCTION_SECRETS["SECRET_KEY"] == config.SECRET_KEY
        assert config.payment_provider == "stripe"
        assert config.S3_ENDPOINT_URL == "http://s3:7070"  # inside the compose network
        assert config.s3_public_endpoint_url == env["S3_PUBLIC_ENDPOINT_URL"]
        assert config.s3_public_endpoint_url != config.S3_ENDPOINT_URL
        assert env["MAIL_SERVER"] == config.MAIL_SERVER
    assert services["s3"]["environment"]["ROOT_SECRET_KEY"] == PRODUCTION_SECRETS["S3_SECRET_KEY"]
    assert services["s3"]["environment"]["VGW_CORS_ALLOW_ORIGIN"] == env["FRONTEND_URL"]


@pytest.mark.parametrize("secret", sorted(set(PRODUCTION_SECRETS) - {"POSTGRES_PASSWORD"}))
def test_production_refuses_to_start_with_a_secret_left_empty(secret: str) -> None:
    services = compose(production_env(**{secret: ""}))["services"]
    for name in APP_IMAGE_SERVICES:
        with pytest.raises(ConfigError):
            service_config(services[name]).validate()


def test_the_unfilled_example_starts_nothing() -> None:
    example = read_env_file(PRODUCTION_EXAMPLE)
    assert {name for name, value in example.items() if not value} >= set(PRODUCTION_SECRETS)
    services = compose(example)["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == ""  # the postgres image refuses that
    for name in APP_IMAGE_SERVICES:
        with pytest.raises(ConfigError):
            service_config(services[name]).validate()


# ---- the commands themselves ----------------------------------------------------------------


def test_interpolation_follows_compose() -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("$$HOME ${SET} $SET ${UNSET:-d} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d}", env) == "$HOME v v d d  d"
    assert interpolate("${SET:+on}${EMPTY:+on}${EMPTY+on}", env) == "onon"
    with pytest.raises(InterpolationError):
        interpolate("${EMPTY:?required}", env)


def _run_shell_command(command: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    assert command[:2] == ["sh", "-c"]
    return subprocess.run(
        ["sh", "-c", command[2]], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False
    )


def test_the_seed_service_seeds_in_development_and_skips_production(tmp_path: Path) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "flask").write_text('#!/bin/sh\necho "flask $*"\n', encoding="utf-8")
    (fake_bin / "flask").chmod(0o755)
    path = f"{fake_bin}:/usr/bin:/bin"

    development = compose()["services"]["seed"]
    ran = _run_shell_command(development["command"], {**development["environment"], "PATH": path}, tmp_path)
    assert (ran.returncode, ran.stdout.strip()) == (0, "flask --app app codex seed")

    production = compose(production_env())["services"]["seed"]
    skipped = _run_shell_command(production["command"], {**production["environment"], "PATH": path}, tmp_path)
    assert (skipped.returncode, skipped.stdout.strip()) == (0, "seed: no demo data in production")


def test_procfile_exec_runs_the_named_line_through_the_shell(tmp_path: Path) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_text('web: echo "web on ${PORT:-5000}"\nwebhooks: echo wrong\n', encoding="utf-8")
    script = str(ROOT / "scripts" / "procfile-exec.sh")
    env = {"PROCFILE": str(procfile), "PATH": os.environ["PATH"]}
    ran = subprocess.run([script, "web"], env=env, capture_output=True, text=True, timeout=10, check=False)
    assert (ran.returncode, ran.stdout) == (0, "web on 5000\n")
    ran = subprocess.run(
        [script, "web"], env={**env, "PORT": "8080"}, capture_output=True, text=True, timeout=10, check=False
    )
    assert ran.stdout == "web on 8080\n"
    missing = subprocess.run([script, "beat"], env=env, capture_output=True, text=True, timeout=10, check=False)
    assert missing.returncode == 2 and "no process named 'beat'" in missing.stderr


def test_procfile_exec_runs_a_line_that_starts_with_assignments(tmp_path: Path) -> None:
    # The worker lines set CELERY_METRICS_PORT=... before the command; a bare `exec` cannot take that.
    procfile = tmp_path / "Procfile"
    procfile.write_text("worker: GREETING=${WHO:-hi} sh -c 'echo \"$GREETING\"'\n", encoding="utf-8")
    script = str(ROOT / "scripts" / "procfile-exec.sh")
    env = {"PROCFILE": str(procfile), "PATH": os.environ["PATH"]}
    ran = subprocess.run([script, "worker"], env=env, capture_output=True, text=True, timeout=10, check=False)
    assert (ran.returncode, ran.stdout) == (0, "hi\n"), ran.stderr


def test_the_createbucket_command_creates_the_bucket(s3_server: str, tmp_path: Path) -> None:
    command = compose()["services"]["createbucket"]["command"]
    assert command[:2] == ["python", "-c"]
    bucket = f"codex-compose-{uuid.uuid4().hex[:8]}"
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        "S3_ENDPOINT_URL": s3_server,
        "S3_BUCKET": bucket,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    for _ in range(2):  # idempotent: a restarted stack runs it again
        ran = subprocess.run(
            [sys.executable, "-c", command[2]], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.strip() == "bucket ready"
    S3Storage.from_config({**env}).check()
