"""The deployment files (Dockerfile, compose.yaml, deploy/nginx.conf, deploy/k8s/) agree
with the server: ports, probes, signals, timeouts and settings. No container engine
runs here, so this is all that checks them: each file is parsed, and every setting it
passes through the environment is loaded by the server's own configuration loader."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from wsfan.config import Settings, load_settings
from wsfan.web.streams import STREAM_PATHS

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
PLACEHOLDERS = {"WSFAN_AUTH__HMAC_SECRET": "s" * 32, "WSFAN_API__KEYS": '["k"]'}


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of the final stage, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    stages = "\n".join(line for line in lines if line and not line.startswith("#"))
    final = stages.split("\nFROM ")[-1]
    return [
        (i.upper(), a.strip()) for i, _, a in (line.partition(" ") for line in final.split("\n"))
    ]


def image_settings() -> Settings:
    """The image's own environment, with the REDIS_URL every deployment gives it."""
    return settings_from({"REDIS_URL": "redis://redis:6379/0", **docker_env()})


def docker_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in dockerfile():
        if instruction == "ENV":
            env.update(re.findall(r"(\w+)=(\S+)", args))
    return env


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "compose.yaml").read_text()))


def k8s(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((K8S / f"{name}.yaml").read_text()))


def settings_from(env: dict[str, str]) -> Settings:
    """What the server makes of `env` (a ConfigError fails the test)."""
    return load_settings(env={**PLACEHOLDERS, **env})


def seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(s|m)?", str(text))
    assert match, text
    return float(match[1]) * (60 if match[2] == "m" else 1)


# Dockerfile ------------------------------------------------------------------------


def test_the_image_runs_as_a_non_root_user() -> None:
    users = [args for instruction, args in dockerfile() if instruction == "USER"]
    assert users and users[-1] not in ("root", "0")


def test_the_image_is_slim() -> None:
    bases = re.findall(r"^FROM (\S+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert all(base.endswith("-slim") or base.endswith("-alpine") for base in bases)


def test_the_image_exposes_the_port_it_serves() -> None:
    exposed = [args for instruction, args in dockerfile() if instruction == "EXPOSE"]
    assert exposed == [str(image_settings().server.port)]
    assert image_settings().server.host == "0.0.0.0"


def test_the_image_checks_liveness_on_healthz_at_its_port() -> None:
    (check,) = [args for instruction, args in dockerfile() if instruction == "HEALTHCHECK"]
    assert f"127.0.0.1:{image_settings().server.port}/healthz" in check


def test_the_image_stops_with_sigterm_which_drains() -> None:
    signals = [args for instruction, args in dockerfile() if instruction == "STOPSIGNAL"]
    assert signals in ([], ["SIGTERM"])


def test_the_image_starts_the_server_without_embedded_servers() -> None:
    (entrypoint,) = [args for instruction, args in dockerfile() if instruction == "ENTRYPOINT"]
    assert yaml.safe_load(entrypoint) == ["wsfan", "serve"]
    assert image_settings().embedded.enabled is False


# compose.yaml and nginx -------------------------------------------------------------


def instances() -> dict[str, dict[str, Any]]:
    services = compose()["services"]
    return {name: s for name, s in services.items() if s.get("build") == "."}


def test_compose_runs_two_instances_redis_mongodb_and_nginx() -> None:
    services = compose()["services"]
    assert len(instances()) == 2
    assert {"valkey", "mongo", "nginx"} <= set(services)


@pytest.mark.parametrize("name", ["wsfan1", "wsfan2"])
def test_each_instance_loads_its_environment_and_reaches_the_backends(name: str) -> None:
    env = {**docker_env(), **instances()[name]["environment"]}
    settings = settings_from({k: str(v) for k, v in env.items() if "${" not in str(v)})
    assert settings.redis.url == "redis://valkey:6379/0"
    assert settings.mongo.url == "mongodb://mongo:27017/"
    assert settings.server.name == name


def test_compose_waits_longer_than_the_drain_before_killing() -> None:
    for service in instances().values():
        settings = settings_from(
            {k: str(v) for k, v in service["environment"].items() if "${" not in str(v)}
        )
        grace = seconds(service["stop_grace_period"])
        assert grace > settings.server.drain_delay + settings.server.shutdown_timeout


def test_compose_checks_readiness_on_readyz() -> None:
    for service in instances().values():
        assert "/readyz" in " ".join(service["healthcheck"]["test"])


def test_the_instances_trust_forwarded_headers_from_nginx_alone() -> None:
    nginx_ip = compose()["services"]["nginx"]["networks"]["backend"]["ipv4_address"]
    for service in instances().values():
        trusted = yaml.safe_load(service["environment"]["WSFAN_SERVER__TRUSTED_PROXIES"])
        assert trusted == [nginx_ip]


def nginx() -> str:
    return (ROOT / "deploy" / "nginx.conf").read_text()


def test_nginx_balances_over_both_instances_at_their_port() -> None:
    upstream = re.search(r"upstream wsfan \{(.*?)\}", nginx(), re.S)
    assert upstream
    port = image_settings().server.port
    assert sorted(re.findall(r"server (\S+);", upstream[1])) == [
        f"{name}:{port}" for name in sorted(instances())
    ]


def test_nginx_upgrades_websockets() -> None:
    conf = nginx()
    assert "proxy_http_version 1.1;" in conf
    assert "proxy_set_header Upgrade $http_upgrade;" in conf
    assert "proxy_set_header Connection $connection_upgrade;" in conf


def test_nginx_waits_longer_than_a_ping_and_its_pong() -> None:
    client = settings_from({}).client
    for timeout in re.findall(r"proxy_read_timeout (\S+);", nginx()):
        assert seconds(timeout) > client.ping_interval + client.pong_timeout


def test_nginx_never_buffers_the_stream_endpoints() -> None:
    blocks = re.findall(r"location ~ (\S+) \{(.*?)\}", nginx(), re.S)
    unbuffered = [pattern for pattern, body in blocks if "proxy_buffering off;" in body]
    assert STREAM_PATHS
    for path in STREAM_PATHS:
        assert any(re.search(pattern, path) for pattern in unbuffered), path


def test_nginx_passes_the_clients_address_and_scheme() -> None:
    conf = nginx()
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in conf
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in conf


# Kubernetes ---------------------------------------------------------------------------


def container() -> dict[str, Any]:
    return dict(k8s("deployment")["spec"]["template"]["spec"]["containers"][0])


def k8s_settings() -> Settings:
    return settings_from({k: str(v) for k, v in k8s("configmap")["data"].items()})


def test_the_probes_use_healthz_and_readyz_on_the_served_port() -> None:
    c = container()
    (port,) = c["ports"]
    assert port["containerPort"] == k8s_settings().server.port
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}


def test_the_grace_period_covers_prestop_drain_and_shutdown() -> None:
    spec = k8s("deployment")["spec"]["template"]["spec"]
    command = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    server = k8s_settings().server
    needed = float(command[1]) + server.drain_delay + server.shutdown_timeout
    assert spec["terminationGracePeriodSeconds"] > needed


def test_the_worker_count_is_explicit_and_fits_the_cpu_limit() -> None:
    workers = k8s_settings().server.workers
    assert workers >= 1
    assert workers <= float(container()["resources"]["limits"]["cpu"])


def test_the_pods_run_as_the_images_non_root_user() -> None:
    context = k8s("deployment")["spec"]["template"]["spec"]["securityContext"]
    users = [args for instruction, args in dockerfile() if instruction == "USER"]
    assert context["runAsNonRoot"] is True
    assert str(context["runAsUser"]) == users[-1]


def test_the_service_the_budget_and_the_autoscaler_all_select_the_deployment() -> None:
    labels = k8s("deployment")["spec"]["template"]["metadata"]["labels"]
    assert k8s("service")["spec"]["selector"] == labels
    assert k8s("service")["spec"]["ports"][0]["targetPort"] == container()["ports"][0]["name"]
    assert k8s("pdb")["spec"]["selector"]["matchLabels"] == labels
    target = k8s("hpa")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", k8s("deployment")["metadata"]["name"])


def test_secrets_come_from_a_secret_not_the_config_map() -> None:
    data = k8s("configmap")["data"]
    assert "WSFAN_AUTH__HMAC_SECRET" not in data and "WSFAN_API__KEYS" not in data
    secret_env = {e["name"] for e in container()["env"] if "secretKeyRef" in e["valueFrom"]}
    assert secret_env == {"WSFAN_AUTH__HMAC_SECRET", "WSFAN_API__KEYS"}


def test_the_config_map_loads_without_embedded_servers() -> None:
    settings = k8s_settings()
    assert settings.embedded.enabled is False
    assert settings.redis.url and settings.mongo.url
