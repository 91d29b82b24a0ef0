"""deploy/k8s: valid against the Kubernetes schemas, consistent with the code and the capacity model.

No cluster here: the manifests are checked offline (kubernetes-validate, strict),
and against what they name: modules, settings, ports, metrics, the HPA plan.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from bench.capacity import K8S_NAMES, hpa_manifests
from dragoman import config, metrics
from tests.conftest import ROOT

K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.32.0"
SERVICES = ("gateway", "session", "stt", "mt", "tts")
EXTRA_ENV = {"DRAGOMAN_LOG_LEVEL", "DRAGOMAN_CONFIG"}


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _manifests() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def _deployment(name: str) -> dict[str, Any]:
    return next(d for d in _docs(K8S / f"{name}.yaml") if d["kind"] == "Deployment")


def test_kustomization_lists_every_manifest_and_only_those() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [p.name for p in _manifests()]


@pytest.mark.parametrize("path", _manifests(), ids=lambda p: p.name)
def test_manifest_is_valid_kubernetes(path: Path) -> None:
    docs = _docs(path)
    assert docs
    for doc in docs:
        # raises ValidationError naming the field on any unknown or missing property
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_a_broken_deployment() -> None:
    broken = json.loads(json.dumps(_deployment("gateway")))
    broken["spec"]["replicaz"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("name", SERVICES)
def test_deployment_runs_its_service_with_real_settings(name: str) -> None:
    deployment = _deployment(name)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    module = container["command"][-1]
    assert container["command"][:2] == ["python", "-m"] and importlib.util.find_spec(module), module
    shared = _docs(K8S / "config.yaml")[0]["data"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    named = {n for n in set(shared) | set(env) if n.startswith("DRAGOMAN_")}
    unknown = named - config.env_names() - EXTRA_ENV
    assert not unknown, f"not settings: {sorted(unknown)}"
    # it listens where its Service sends traffic, and serves /metrics where Prometheus looks
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    own = name.upper()
    assert env[f"DRAGOMAN_ADDRESSES_{own}"] == f"0.0.0.0:{ports['grpc']}"
    assert env[f"DRAGOMAN_METRICS_{own}"] == f"0.0.0.0:{ports['metrics']}"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(ports["metrics"])
    # the others reach it by its Service name
    assert shared[f"DRAGOMAN_ADDRESSES_{own}"] == f"{name}:{ports['grpc']}"
    # the pod outlives the service's own drain on SIGTERM
    grace = float(shared["DRAGOMAN_GRACE_PERIOD_S"])
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > grace


def test_each_session_replica_advertises_its_own_pod_address() -> None:
    (container,) = _deployment("session")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["DRAGOMAN_SESSION_ADVERTISE_ADDRESS"]["value"] == "$(POD_IP):50051"
    # $(POD_IP) expands only from a variable defined before it
    names = [e["name"] for e in container["env"]]
    assert names.index("POD_IP") < names.index("DRAGOMAN_SESSION_ADVERTISE_ADDRESS")
    session_hpa = next(d for d in _docs(K8S / "hpa.yaml")
                       if d["spec"]["scaleTargetRef"]["name"] == "session")
    pods = [m["pods"]["metric"]["name"] for m in session_hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods == ["dragoman_sessions_active"]


def test_hpa_yaml_is_the_capacity_model_rendered() -> None:
    plan = json.loads((ROOT / "bench" / "results" / "capacity.json").read_text())["hpa"]
    assert (K8S / "hpa.yaml").read_text() == hpa_manifests(plan), (
        "deploy/k8s/hpa.yaml is stale: run python -m bench.capacity")
    rendered = {d["metadata"]["name"] for d in _docs(K8S / "hpa.yaml")}
    assert rendered == {K8S_NAMES[k] for k in plan}


def test_session_pods_admit_what_the_capacity_model_measured_and_the_hpa_stays_below_it() -> None:
    model = json.loads((ROOT / "bench" / "results" / "capacity.json").read_text())
    limit = model["services"]["session_svc"]["max_live_sessions"]
    [container] = _deployment("session")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["DRAGOMAN_SESSION_MAX_LIVE_SESSIONS"] == str(limit), (
        "deploy/k8s/session.yaml: set DRAGOMAN_SESSION_MAX_LIVE_SESSIONS to capacity.json's "
        "services.session_svc.max_live_sessions")
    assert int(model["hpa"]["session_svc"]["pods_metric"]["average"]) < limit


def test_gateway_and_session_pods_request_the_cores_the_capacity_model_plans_per_pod() -> None:
    cores = json.loads((ROOT / "bench" / "results" / "capacity.json").read_text())[
        "assumptions"]["pod_cores"]
    for name in ("gateway", "session"):
        [container] = _deployment(name)["spec"]["template"]["spec"]["containers"]
        assert container["resources"]["requests"]["cpu"] == str(cores), name


def test_hpas_scale_deployments_on_metrics_the_services_expose() -> None:
    for hpa in _docs(K8S / "hpa.yaml"):
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment" and (K8S / f"{target['name']}.yaml").exists()
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        for m in hpa["spec"]["metrics"]:
            if m["type"] == "Pods":
                assert m["pods"]["metric"]["name"] in metrics.series_names()


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels, matchExpressions with In) matches `labels`."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", "extend _selects for this operator"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def _reaches(source: str, target: str, port: str) -> bool:
    """Whether a pod named `source` may open `port` (a port name) on `target`'s pods under
    deploy/k8s's NetworkPolicies (a target no policy selects takes anything)."""
    policies = [d for p in _manifests() for d in _docs(p) if d["kind"] == "NetworkPolicy"]
    src, dst = {"app.kubernetes.io/name": source}, {"app.kubernetes.io/name": target}
    selecting = [p for p in policies if _selects(p["spec"]["podSelector"], dst)]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get("ingress", []):
            assert all(peer.keys() == {"podSelector"} for peer in rule.get("from", [])), (
                "extend _reaches for namespace or IP peers")
    return any(
        (not rule.get("from") or any(_selects(peer["podSelector"], src) for peer in rule["from"]))
        and (not rule.get("ports") or any(p["port"] == port for p in rule["ports"]))
        for policy in selecting for rule in policy["spec"].get("ingress", []))


def test_only_gateways_reach_session_svc_and_only_session_svc_the_models() -> None:
    models = {"stt", "mt", "tts"}
    for target in SERVICES:
        for source in (*SERVICES, "intruder"):
            expected = (target == "gateway" or (target == "session" and source == "gateway")
                        or (target in models and source == "session"))
            assert _reaches(source, target, "grpc") == expected, (source, target)
        assert _reaches("prometheus", target, "metrics"), target
        # the policies name ports the pods have
        (container,) = _deployment(target)["spec"]["template"]["spec"]["containers"]
        assert {"grpc", "metrics"} <= {p["name"] for p in container["ports"]}


def test_gateways_and_session_svc_share_the_identity_key_from_the_secret() -> None:
    refs = []
    for name in ("gateway", "session"):
        (container,) = _deployment(name)["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        refs.append(env["DRAGOMAN_AUTH_IDENTITY_KEY"]["valueFrom"]["secretKeyRef"])
    assert refs[0] == refs[1] and refs[0]["optional"] is False
    assert "DRAGOMAN_AUTH_IDENTITY_KEY" in (K8S / "README.md").read_text()


def _tls_files() -> dict[str, Path]:
    shared = _docs(K8S / "config.yaml")[0]["data"]
    settings = config.load(env=shared)
    assert settings.tls.enabled, "config.yaml: internal mTLS is on in the cluster"
    return {"ca": Path(settings.tls.ca_file), "cert": Path(settings.tls.cert_file),
            "key": Path(settings.tls.key_file)}


@pytest.mark.parametrize("name", SERVICES)
def test_each_pod_mounts_its_own_role_certificate_where_the_settings_read_it(name: str) -> None:
    files = _tls_files()
    (directory,) = {p.parent for p in files.values()}
    # cert-manager's names for a Certificate's Secret, so either way of making it fits
    assert {k: p.name for k, p in files.items()} == {"ca": "ca.crt", "cert": "tls.crt", "key": "tls.key"}
    spec = _deployment(name)["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(directory)]
    assert mount["readOnly"] is True
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == f"dragoman-tls-{name}"
    assert volume["secret"]["defaultMode"] & 0o007 == 0, "the key is not for every user of the node"
    assert not {e["name"] for e in container["env"]} & {
        "DRAGOMAN_TLS_ENABLED", "DRAGOMAN_TLS_CERT_FILE", "DRAGOMAN_TLS_KEY_FILE"}


@pytest.mark.parametrize("name", SERVICES)
def test_the_kubelet_probes_internal_ports_on_the_plain_text_health_port(name: str) -> None:
    shared = _docs(K8S / "config.yaml")[0]["data"]
    health = int(shared["DRAGOMAN_TLS_HEALTH_ADDRESS"].rsplit(":", 1)[1])
    (container,) = _deployment(name)["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    probed = [container[p]["grpc"]["port"] for p in ("startupProbe", "readinessProbe", "livenessProbe")]
    if name == "gateway":  # its public port is plain text (Envoy or the ingress does TLS)
        assert probed == [ports["grpc"]] * 3
        return
    # a probe cannot present a certificate: it asks the port of health alone
    assert ports["health"] == health and probed == [health] * 3
    assert not _reaches("intruder", name, "health") and not _reaches("gateway", name, "health")


def test_the_readme_says_how_to_make_every_role_certificate_secret() -> None:
    readme = (K8S / "README.md").read_text()
    assert "dragoman keys tls" in readme
    loop = next(line for line in readme.splitlines() if line.startswith("for role in "))
    assert loop.removeprefix("for role in ").removesuffix("; do").split() == list(SERVICES)
    assert "dragoman-tls-$role" in readme
