"""The deployment files agree with each other and with the code: compose <-> Dockerfile targets, env files
<-> meterdata/settings.py, Kubernetes manifests <-> the processes' ports, health services and commands.

deploy/validate.sh checks each file against its tool's schema (hadolint, docker-compose config,
kubernetes-validate); these tests check what no schema knows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from meterdata.runner import GRPC_SERVICE_NAMES, SERVICE_MODULES
from meterdata.settings import Settings
from tests.deploy_files import (
    COMPOSE_VARIABLES,
    ENV_EXAMPLE,
    K8S,
    OVERLAYS,
    ROOT,
    MissingVariable,
    command_argv,
    dockerfile_targets,
    healthcheck_argv,
    interpolate,
    kubectl,
    load_compose,
    pod_labels,
    pod_spec,
    read_env_file,
    render_overlay,
    service_environment,
)

SETTING_NAMES = {name.upper() for name in Settings.model_fields}
DEFAULT_PORTS = {name: Settings.model_fields[f"{name}_port"].default for name in SERVICE_MODULES}
APP_SERVICES = ("migrate", "ingest", "query", "analytics", "gateway", "scheduler")
EXPECTED_COMMANDS = {
    "migrate": ["python", "-m", "meterdata", "migrate"],
    **{name: ["python", "-m", module, "serve"] for name, module in SERVICE_MODULES.items()},
}
DATABASE_CLIENTS = {"ingest", "query", "migrate"}


def health_argv(name: str) -> list[str]:
    """The health check command of a process, as the brief of issue 5 names it."""
    if name == "gateway":
        return ["python", "-m", "meterdata", "healthcheck", f"http://127.0.0.1:{DEFAULT_PORTS['gateway']}/healthz"]
    address = f"127.0.0.1:{DEFAULT_PORTS[name]}"
    return ["python", "-m", "meterdata", "healthcheck", address, "--service", GRPC_SERVICE_NAMES[name]]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


# ---------------------------------------------------------------- compose


def test_compose_refuses_to_start_without_a_database_password() -> None:
    variables = read_env_file(ENV_EXAMPLE)
    del variables["POSTGRES_PASSWORD"]
    with pytest.raises(MissingVariable, match="POSTGRES_PASSWORD"):
        load_compose(variables)


def test_interpolation_follows_compose_rules() -> None:
    assert interpolate("${A:-x}/${B:-y}/${C-z}/$${D}", {"A": "", "C": ""}) == "x/y//${D}"
    assert interpolate("${A}", {"A": "1"}) == "1"


def test_compose_has_the_required_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"postgres", *APP_SERVICES}


def test_postgres_is_official_pinned_with_a_named_volume_and_healthcheck(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    image, _, tag = postgres["image"].partition(":")
    assert image == "postgres" and tag[:2].isdigit() and "." in tag, "official image pinned to a minor version"
    volume = postgres["volumes"][0].split(":")[0]
    assert volume in compose["volumes"], "data on a named volume"
    assert "pg_isready" in " ".join(healthcheck_argv(postgres["healthcheck"]["test"]))
    assert "ports" not in postgres, "PostgreSQL stays internal"


def test_only_the_gateway_is_published(compose: dict[str, Any]) -> None:
    published = {name for name, service in compose["services"].items() if service.get("ports")}
    assert published == {"gateway"}
    (mapping,) = compose["services"]["gateway"]["ports"]
    assert mapping.endswith(f":{DEFAULT_PORTS['gateway']}")


@pytest.mark.parametrize("name", APP_SERVICES)
def test_service_builds_a_dockerfile_target_whose_cmd_it_runs(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    build = service["build"]
    assert (ROOT / build["context"] / build["dockerfile"]).resolve() == (ROOT / "deploy" / "Dockerfile").resolve()
    target = dockerfile_targets()[build["target"]]
    assert target.user and not target.user.startswith(("0", "root")), "non-root user"
    if name == "scheduler":
        assert command_argv(service["command"])[:4] == ["python", "-m", "ingest_service", "schedule"]
        assert service["healthcheck"] == {"disable": True}
        return
    assert command_argv(service["command"]) == target.cmd == EXPECTED_COMMANDS[name]


@pytest.mark.parametrize("name", list(SERVICE_MODULES))
def test_healthchecks_match_the_image_and_the_port(compose: dict[str, Any], name: str) -> None:
    target = dockerfile_targets()[name]
    assert target.exposed == (DEFAULT_PORTS[name],)
    assert target.healthcheck == health_argv(name)
    assert healthcheck_argv(compose["services"][name]["healthcheck"]["test"]) == health_argv(name)


def test_startup_order_waits_for_health_and_the_migration(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("ingest", "query"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["analytics"]["depends_on"]["query"]["condition"] == "service_healthy"
    gateway_needs = services["gateway"]["depends_on"]
    assert {n: c["condition"] for n, c in gateway_needs.items()} == dict.fromkeys(GRPC_SERVICE_NAMES, "service_healthy")
    assert services["scheduler"]["depends_on"]["ingest"]["condition"] == "service_healthy"


def test_restart_policies(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        expected = "on-failure" if name == "migrate" else "unless-stopped"
        assert service["restart"] == expected, name


def test_scheduled_pull_every_15_minutes_configurable(compose: dict[str, Any]) -> None:
    assert command_argv(compose["services"]["scheduler"]["command"])[-2:] == ["--every", "900"]
    changed = load_compose({**read_env_file(ENV_EXAMPLE), "PULL_INTERVAL_SECONDS": "60"})
    assert command_argv(changed["services"]["scheduler"]["command"])[-2:] == ["--every", "60"]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_containers_are_hardened(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    assert service["read_only"] is True
    assert service["tmpfs"] == ["/tmp"]
    assert service["cap_drop"] == ["ALL"]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_compose_environment_is_valid_settings(
    compose: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = service_environment(compose["services"][name])
    assert set(env) <= SETTING_NAMES, f"not settings fields: {set(env) - SETTING_NAMES}"
    if name == "gateway":  # the internet-facing process holds no database credentials
        assert "DATABASE_URL" not in env
    else:
        assert env["DATABASE_URL"].startswith("postgresql://meterdata:") and "@postgres:5432/" in env["DATABASE_URL"]
    assert env["GRPC_LISTEN_HOST"] == env["GATEWAY_HOST"] == "0.0.0.0"
    for service in GRPC_SERVICE_NAMES:
        assert env[f"{service.upper()}_ADDRESS"] == f"{service}:{DEFAULT_PORTS[service]}"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.environment == "production"
    assert settings.log_format == "json"


# ---------------------------------------------------------------- env files


def test_env_example_documents_every_setting() -> None:
    text = ENV_EXAMPLE.read_text()
    documented = {line.lstrip("# ").split("=", 1)[0] for line in text.splitlines() if "=" in line}
    missing = SETTING_NAMES - documented
    assert not missing, f".env.example lacks {sorted(missing)} (add each with its meaning)"
    assert set(read_env_file(ENV_EXAMPLE)) <= COMPOSE_VARIABLES, "settings stay commented out at their defaults"
    reference = (ROOT / "docs" / "DEPLOY.md").read_text()
    undocumented = sorted(name for name in SETTING_NAMES | COMPOSE_VARIABLES if f"`{name}`" not in reference)
    assert not undocumented, f"docs/DEPLOY.md's configuration reference lacks {undocumented}"


def env_files() -> Iterator[Any]:
    yield from sorted((ROOT / "deploy" / "env").glob("*.env"))
    yield from sorted(K8S.glob("**/*.env"))


@pytest.mark.parametrize("path", list(env_files()), ids=lambda p: str(p.relative_to(ROOT)))
def test_env_files_name_only_settings_and_hold_no_secret(path: Any) -> None:
    values = read_env_file(path)
    assert values
    assert set(values) <= SETTING_NAMES, f"not settings fields: {set(values) - SETTING_NAMES}"
    assert "DATABASE_URL" not in values, "the database URL is a secret: compose environment or a k8s Secret"


# ---------------------------------------------------------------- Kubernetes

needs_kubectl = pytest.mark.skipif(kubectl() is None, reason="kubectl not installed (make setup installs it)")


def resources_of(overlay: str, kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in render_overlay(overlay) if r["kind"] == kind}


def config_of(overlay: str) -> dict[str, str]:
    (config,) = [r for r in render_overlay(overlay) if r["kind"] == "ConfigMap"]
    return config["data"]


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_config_is_valid_settings(overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = config_of(overlay)
    assert set(data) <= SETTING_NAMES
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db:5432/meterdata")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.grpc_listen_host == settings.gateway_host == "0.0.0.0"
    assert settings.query_address == f"query:{DEFAULT_PORTS['query']}"
    if overlay == "prod":
        assert settings.environment == "production" and not settings.upstream_fallback_to_mirror


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_non_root_read_only_and_sized(overlay: str) -> None:
    workloads = [r for r in render_overlay(overlay) if pod_spec(r) is not None]
    assert {r["kind"] for r in workloads} >= {"Deployment", "Job", "CronJob"}
    for workload in workloads:
        spec = pod_spec(workload)
        assert spec is not None
        assert spec["securityContext"]["runAsNonRoot"] is True, workload["metadata"]["name"]
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert {"cpu", "memory"} <= set(container["resources"]["limits"])


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deployments_run_the_compose_commands_with_native_probes(overlay: str) -> None:
    compose = load_compose()
    deployments = resources_of(overlay, "Deployment")
    for name in SERVICE_MODULES:
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        assert container["command"] == command_argv(compose["services"][name]["command"])
        assert [p["containerPort"] for p in container["ports"]] == [DEFAULT_PORTS[name]]
        if name == "gateway":
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            continue
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == DEFAULT_PORTS[name], probe
        assert container["readinessProbe"]["grpc"]["service"] == GRPC_SERVICE_NAMES[name]


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_jobs_migrate_and_pull_every_15_minutes(overlay: str) -> None:
    (job,) = resources_of(overlay, "Job").values()
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == EXPECTED_COMMANDS["migrate"]
    (cron,) = resources_of(overlay, "CronJob").values()
    assert cron["spec"]["schedule"] == "*/15 * * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    command = pod_spec(cron)["containers"][0]["command"]  # type: ignore[index]
    assert command[:4] == ["python", "-m", "ingest_service", "schedule"]


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscalers_and_disruption_budgets_target_real_deployments(overlay: str) -> None:
    deployments = resources_of(overlay, "Deployment")
    hpas = resources_of(overlay, "HorizontalPodAutoscaler")
    assert set(hpas) == {"gateway", "query"}
    for hpa in hpas.values():
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
        assert "replicas" not in deployments[hpa["spec"]["scaleTargetRef"]["name"]]["spec"], "the HPA owns it"
    pdbs = resources_of(overlay, "PodDisruptionBudget")
    assert set(pdbs) == set(SERVICE_MODULES)
    for name, pdb in pdbs.items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return selector.get("matchLabels", {}).items() <= labels.items()


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_let_only_the_gateway_in_and_only_services_reach_postgres(overlay: str) -> None:
    policies = resources_of(overlay, "NetworkPolicy")
    default_deny = policies["default-deny"]["spec"]
    assert default_deny["podSelector"] == {} and set(default_deny["policyTypes"]) == {"Ingress", "Egress"}
    pods = {
        r["metadata"]["name"]: pod_labels(r)
        for r in render_overlay(overlay)
        if pod_spec(r) is not None and r["metadata"]["name"] != "postgres"
    }
    # Who may open a connection to PostgreSQL: exactly the database clients.
    db_egress = [
        name
        for name, labels in pods.items()
        for policy in policies.values()
        if selects(policy["spec"]["podSelector"], labels) and policy["spec"]["podSelector"]
        for rule in policy["spec"].get("egress", [])
        if any(port["port"] == 5432 for port in rule.get("ports", []))
    ]
    assert set(db_egress) == DATABASE_CLIENTS
    # Who may connect to each gRPC service: the gateway, and analytics -> query, pull -> ingest.
    allowed_callers = {"ingest": {"gateway", "pull"}, "query": {"gateway", "analytics"}, "analytics": {"gateway"}}
    for service, callers in allowed_callers.items():
        sources = {
            name
            for policy in policies.values()
            if policy["spec"]["podSelector"] and selects(policy["spec"]["podSelector"], pods[service])
            for rule in policy["spec"].get("ingress", [])
            for peer in rule["from"]
            for name, labels in pods.items()
            if "podSelector" in peer and selects(peer["podSelector"], labels)
        }
        assert sources == callers, service
    if overlay == "dev":
        ingress = policies["postgres"]["spec"]["ingress"][0]["from"][0]["podSelector"]
        assert ingress == {"matchLabels": {"meterdata.io/database-client": "true"}}


@needs_kubectl
def test_prod_uses_registry_images_and_an_external_database_secret() -> None:
    rendered = render_overlay("prod")
    assert not [r for r in rendered if r["kind"] == "Secret"], "prod secrets are created outside git"
    assert not [r for r in rendered if r["kind"] == "StatefulSet"], "PostgreSQL is external in prod"
    for deployment in resources_of("prod", "Deployment").values():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"].startswith("registry.example.com/meterdata/")
        assert not container["image"].endswith(":latest")
        refs = [source.get("secretRef", {}).get("name") for source in container["envFrom"]]
        # every process but the gateway, which faces the internet and holds no database credentials
        assert ("meterdata-db" in refs) == (deployment["metadata"]["name"] != "gateway")
