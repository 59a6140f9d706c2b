"""deploy/: the compose file, the Kubernetes manifests, nginx and systemd are valid and say what
deploy/README.md says. No container engine runs here: nothing is built or started."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import gunicorn.config
import kubernetes_validate
import pytest
import yaml

from marketplace import gunicorn_conf

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
K8S_VERSION = "1.33.0"


def _tool(name: str) -> str:
    """A binary from the virtualenv (test extras) or the machine."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed")
    return found


def _env_file() -> Path:
    return DEPLOY / "env.example"


def test_compose_file_is_valid_with_health_checks_and_order() -> None:
    rendered = subprocess.run(
        [_tool("docker-compose"), "-f", str(DEPLOY / "compose.yaml"), "--env-file", str(_env_file())]
        + ["config", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    services: dict[str, Any] = json.loads(rendered.stdout)["services"]
    assert set(services) == {"postgres", "redis", "migrate", "api", "worker", "nginx", "rq-dashboard"}
    for name, service in services.items():
        if name != "migrate":  # one-shot: the api waits for its exit code
            assert service["healthcheck"]["test"], name
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"].startswith("redis:7")
    assert "--appendonly" in services["redis"]["command"]
    assert services["migrate"]["command"] == ["marketplace", "db", "upgrade"]
    for app in ("api", "worker"):
        assert services[app]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["worker"]["command"] == ["marketplace", "worker"]
    assert services["nginx"]["depends_on"]["api"]["condition"] == "service_healthy"
    assert "ports" not in services["api"]  # only nginx faces the outside
    assert [p["host_ip"] for p in services["rq-dashboard"]["ports"]] == ["127.0.0.1"]
    assert services["rq-dashboard"]["environment"]["RQ_DASHBOARD_PASSWORD"]
    missing = subprocess.run(
        [_tool("docker-compose"), "-f", str(DEPLOY / "compose.yaml"), "config", "-q"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert missing.returncode != 0 and "POSTGRES_PASSWORD" in missing.stderr  # no default password


def _rendered() -> list[dict[str, Any]]:
    kubectl = _tool("kubectl")
    out = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "k8s" / "overlays" / "example")], capture_output=True, text=True, check=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def test_kubernetes_example_renders_and_validates() -> None:
    objects = _rendered()
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    by_kind: dict[tuple[str, str], dict[str, Any]] = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    kinds = {kind for kind, _ in by_kind}
    assert kinds == {
        "Namespace",
        "ConfigMap",
        "Secret",
        "Service",
        "Deployment",
        "Job",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    api = by_kind[("Deployment", "marketplace-api")]
    pod = api["spec"]["template"]["spec"]
    labels = api["spec"]["template"]["metadata"]["labels"]
    app, nginx = pod["containers"]
    assert app["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert app["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert nginx["image"].startswith("nginxinc/nginx-unprivileged")
    assert pod["initContainers"][0]["command"][:3] == ["marketplace", "db", "wait"]
    service = by_kind[("Service", "marketplace-api")]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == nginx["ports"][0]["name"]  # traffic goes through nginx
    hpa = by_kind[("HorizontalPodAutoscaler", "marketplace-api")]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "marketplace-api"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    for name in ("marketplace-api", "marketplace-worker"):
        pdb = by_kind[("PodDisruptionBudget", name)]
        pod_labels = by_kind[("Deployment", name)]["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    job = by_kind[("Job", "marketplace-migrate")]
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["marketplace", "db", "upgrade"]
    # every ConfigMap and Secret a pod names exists (kustomize appended the hashes to both)
    names = {name for kind, name in by_kind if kind in ("ConfigMap", "Secret")}
    referenced = set(re.findall(r"'name': '(marketplace-(?:settings|secrets|nginx)[^']*)'", str(objects)))
    assert referenced and referenced <= names
    images = {c["image"] for o in objects if o["kind"] in ("Deployment", "Job") for c in _containers(o)}
    assert "registry.example.com/crowd-marketplace:0.1.0" in images


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def test_nginx_accepts_the_proxy_configuration(tmp_path: Path) -> None:
    nginx = _tool("nginx")
    template = (DEPLOY / "k8s" / "base" / "nginx.conf.template").read_text()
    (tmp_path / "marketplace.conf").write_text(template.replace("${MARKETPLACE_UPSTREAM}", "127.0.0.1:8000"))
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log; events {{}}\n"
        f"http {{ access_log off; client_body_temp_path {tmp_path}; proxy_temp_path {tmp_path};\n"
        f"include {tmp_path}/marketplace.conf; }}\n"
    )
    checked = subprocess.run([nginx, "-t", "-c", str(tmp_path / "nginx.conf")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    for directive in ("proxy_request_buffering on", "client_body_timeout", "location = /metrics"):
        assert directive in template


def test_systemd_units_verify(tmp_path: Path) -> None:
    analyze = _tool("systemd-analyze")
    venv_bin = Path(sys.executable).parent
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        text = unit.read_text().replace("/opt/marketplace/.venv/bin", str(venv_bin))
        text = re.sub(r"^(User|Group|EnvironmentFile)=.*$", "", text, flags=re.MULTILINE)  # not on this machine
        target = tmp_path / unit.name.replace("@", "@1") if "@" in unit.name else tmp_path / unit.name
        target.write_text(text)
        verified = subprocess.run([analyze, "verify", str(target)], capture_output=True, text=True)
        problems = [line for line in verified.stderr.splitlines() if str(target) in line or unit.name in line]
        assert verified.returncode == 0 and not problems, verified.stderr


def test_readme_documents_gunicorns_settings_as_the_module_has_them() -> None:
    readme = (DEPLOY / "README.md").read_text()
    table = dict(re.findall(r"^\| `(\w+)` \| (.+?) \| .+ \|$", readme, re.MULTILINE))
    settings = {name for name in gunicorn.config.Config().settings if hasattr(gunicorn_conf, name)}
    assert settings - {"child_exit"} == set(table)
    for name in settings - {"child_exit", "workers", "threads", "bind"}:
        assert table[name] == f"`{getattr(gunicorn_conf, name)}`", name
    assert "`WEB_CONCURRENCY`" in table["workers"]
    assert f"default `{gunicorn_conf.THREADS}`" in table["threads"]
    assert "default `127.0.0.1:8000`" in table["bind"]
