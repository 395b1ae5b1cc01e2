"""compose/k8s/: the StatefulSet, its Services and the Secret's example.  Every
pod's environment (downward API, ``$(VAR)`` expansion, then the manifest's own
entrypoint script run by ``/bin/sh``) resolves, through the real ``crdtkv serve
--check-config``, to one replica of a fully meshed cluster; and the check fails
on each way of breaking the manifests."""

from __future__ import annotations

import copy
import functools
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.support import (
    CHECK_TIMEOUT_S,
    K8S_DIR,
    Image,
    in_parallel,
    resolved_config,
    run_env,
)

K8S_TEST_SECRET = "0123456789abcdef0123456789abcdef"  # stands in for the real Secret


def load_k8s() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                doc.setdefault("__file__", path.name)
                docs.append(doc)
    return docs


def one(docs: Iterable[dict[str, Any]], kind: str, **match: Any) -> dict[str, Any]:
    found = [
        d
        for d in docs
        if d.get("kind") == kind
        and all(d.get("metadata", {}).get(k) == v for k, v in match.items())
    ]
    assert len(found) == 1, f"expected one {kind} {match or ''}, found {len(found)}"
    return found[0]


def k8s_expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in env values, command and args ($$ is a literal $)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("$(", i) and ")" in text[i:]:
            end = text.index(")", i)
            name = text[i + 2 : end]
            out.append(env.get(name, text[i : end + 1]))  # an unknown name stays as written
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def pod_env(
    container: Mapping[str, Any],
    pod_name: str,
    namespace: str,
    secrets: Mapping[tuple[str, str], str],
) -> dict[str, str]:
    """The container's env list as the kubelet resolves it for one pod."""
    assert "envFrom" not in container, "envFrom: configure each variable explicitly"
    fields = {"metadata.name": pod_name, "metadata.namespace": namespace}
    env: dict[str, str] = {}
    for var in container.get("env", []):
        name = var["name"]
        if "value" in var:
            env[name] = k8s_expand(str(var["value"]), env)
            continue
        source = var["valueFrom"]
        if "fieldRef" in source:
            env[name] = fields[source["fieldRef"]["fieldPath"]]
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            value = secrets.get((ref["name"], ref["key"]))
            if value is None:
                assert ref.get("optional"), f"{name}: Secret {ref['name']}/{ref['key']} missing"
                continue
            env[name] = value
        else:
            raise AssertionError(f"{name}: unexpected valueFrom {source}")
    return env


def write_crdtkv_shim(directory: Path) -> Path:
    """A `crdtkv` on PATH that is this checkout's CLI (what the image's venv provides)."""
    directory.mkdir(parents=True, exist_ok=True)
    shim = directory / "crdtkv"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m crdtkv.cli "$@"\n')
    shim.chmod(0o755)
    return directory


def run_pod(
    container: Mapping[str, Any],
    image: Image,
    env: Mapping[str, str],
    cwd: Path,
    shim_dir: Path,
) -> subprocess.CompletedProcess[str]:
    """The container's command (or the image's ENTRYPOINT) plus --check-config."""
    full_env = {**image.env(), **env}  # the container's env overrides the image's ENV
    command = container.get("command") or image.entrypoint()
    argv = [k8s_expand(str(a), full_env) for a in [*command, *container.get("args", [])]]
    return subprocess.run(
        [*argv, "--check-config"],
        env=run_env(full_env, path_prefix=str(shim_dir)),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT_S,
    )


def probe_target(probe: Mapping[str, Any] | None, who: str) -> tuple[str, Any]:
    assert probe, f"{who}: missing"
    get = probe.get("httpGet")
    assert get, f"{who}: must be an httpGet"
    return get["path"], get["port"]


def check_k8s_services(docs: list[dict[str, Any]], spec: Mapping[str, Any]) -> None:
    """The pods' labels select them, and two Services front them: the StatefulSet's
    headless one (the pods' DNS names) and one client Service with a cluster IP."""
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    headless = one(docs, "Service", name=spec["serviceName"])
    assert headless["spec"].get("clusterIP") == "None", "the StatefulSet's Service is headless"
    assert headless["spec"]["selector"].items() <= labels.items()
    clients = [
        d
        for d in docs
        if d.get("kind") == "Service"
        and d["spec"].get("clusterIP") != "None"
        and d["spec"]["selector"].items() <= labels.items()
    ]
    assert len(clients) == 1, "one client Service (with a cluster IP) in front of the pods"


def check_k8s_pod_spec(pod_spec: Mapping[str, Any], image: Image) -> dict[str, Any]:
    """No Service env vars, one container, the image's user; the container."""
    assert pod_spec.get("enableServiceLinks") is False, "Service env vars could shadow CRDTKV_*"
    (container,) = pod_spec["containers"]
    uid = int(image.user().split(":")[0])
    assert pod_spec["securityContext"]["runAsUser"] == uid, "runAsUser is the image's USER"
    assert pod_spec["securityContext"].get("fsGroup") == uid, "fsGroup makes the volume writable"
    found: dict[str, Any] = container
    return found


def k8s_data_dir(spec: Mapping[str, Any], container: Mapping[str, Any]) -> str:
    """Storage: a claim per pod, mounted where the replica keeps its data; that path."""
    claims = {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}
    assert claims, "no volumeClaimTemplates: the data would not survive the pod"
    data_mounts = [m["mountPath"] for m in container["volumeMounts"] if m["name"] in claims]
    assert len(data_mounts) == 1, f"one claim mounted in the container: {data_mounts}"
    path: str = data_mounts[0]
    return path


def check_k8s_env(docs: list[dict[str, Any]], container: Mapping[str, Any]) -> None:
    """The secret comes from a Secret, never from the manifest; the replica id from the
    pod's name."""
    env_vars = {v["name"]: v for v in container["env"]}
    for var in ("CRDTKV_CLUSTER_SECRET", "CRDTKV_AUTH_TOKEN"):
        if var in env_vars:
            assert "secretKeyRef" in env_vars[var].get("valueFrom", {}), f"{var}: secretKeyRef"
    secret_ref = env_vars["CRDTKV_CLUSTER_SECRET"]["valueFrom"]["secretKeyRef"]
    assert not secret_ref.get("optional"), "the cluster secret is not optional"
    example = one(docs, "Secret", name=secret_ref["name"])
    assert secret_ref["key"] in example.get("stringData", {}), "secret.example.yaml's key"
    id_source = env_vars["CRDTKV_REPLICA_ID"].get("valueFrom", {}).get("fieldRef", {})
    assert id_source.get("fieldPath") == "metadata.name", "the replica id is the pod name"


def check_k8s_container(
    container: Mapping[str, Any], ports: Mapping[Any, int], image: Image
) -> None:
    """Probes on /healthz, resources, and an entrypoint that still runs the image's
    crdtkv serve (as PID 1: exec)."""
    for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
        if kind == "startupProbe" and kind not in container:
            continue
        path, port = probe_target(container.get(kind), kind)
        assert path == "/healthz", f"{kind} asks {path}"
        assert port in ports or port in ports.values(), f"{kind} port {port}"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"].get(kind, {})), kind
    command = container.get("command")
    if command:
        script = " ".join(map(str, command))
        assert "exec " + " ".join(image.entrypoint()) in script, "exec crdtkv serve"


@dataclass(frozen=True)
class Pods:
    """The StatefulSet's pods as check_k8s found them in the manifest."""

    names: list[str]  # <statefulset>-0, -1, ...
    container: Mapping[str, Any]
    ports: Mapping[Any, int]  # the container's ports, by name
    data_dir: str  # where the claim is mounted
    service: str  # the headless Service, the pods' DNS subdomain


def check_k8s_pods(
    pods: Pods,
    image: Image,
    namespace: str,
    secrets: Mapping[tuple[str, str], str],
    cwd: Path,
) -> dict[str, dict[str, Any]]:
    """Every pod, with the environment the kubelet gives it, resolves to a replica whose
    peers are the other pods by their DNS names; the resolved configs."""
    shim_dir = write_crdtkv_shim(cwd / "bin")

    def run(pod: str) -> dict[str, Any]:
        env = pod_env(pods.container, pod, namespace, secrets)
        return resolved_config(run_pod(pods.container, image, env, cwd, shim_dir), f"pod {pod}")

    configs = in_parallel({pod: functools.partial(run, pod) for pod in pods.names})
    for pod, config in configs.items():
        assert config["replica_id"] == pod, f"pod {pod}: replica id {config['replica_id']}"
        assert config["host"] == "0.0.0.0", f"pod {pod}: listens on {config['host']}"
        assert config["port"] in pods.ports.values(), f"pod {pod}: port {config['port']}"
        assert config["data_dir"] == pods.data_dir, f"pod {pod}: data in {config['data_dir']}"
        assert config["cluster_secret"] is not None, f"pod {pod}: no cluster secret"
        dns = f"{pods.service}.{namespace}.svc.cluster.local"
        expected = {
            other: f"http://{other}.{dns}:{configs[other]['port']}"
            for other in pods.names
            if other != pod
        }
        assert config["peers"] == expected, f"pod {pod}: peers {config['peers']}, want {expected}"
    return configs


def check_k8s(
    docs: list[dict[str, Any]],
    image: Image,
    namespace: str,
    secrets: Mapping[tuple[str, str], str],
    cwd: Path,
) -> dict[str, dict[str, Any]]:
    """The StatefulSet and its Services; the resolved config of every pod."""
    sts = one(docs, "StatefulSet")
    spec = sts["spec"]
    check_k8s_services(docs, spec)
    container = check_k8s_pod_spec(spec["template"]["spec"], image)
    ports = {p.get("name"): p["containerPort"] for p in container["ports"]}
    data_dir = k8s_data_dir(spec, container)
    check_k8s_env(docs, container)
    check_k8s_container(container, ports, image)
    name = sts["metadata"]["name"]
    pods = Pods(
        names=[f"{name}-{i}" for i in range(spec["replicas"])],
        container=container,
        ports=ports,
        data_dir=data_dir,
        service=spec["serviceName"],
    )
    return check_k8s_pods(pods, image, namespace, secrets, cwd)


# -- the tests -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def k8s_docs() -> list[dict[str, Any]]:
    return load_k8s()


K8S_SECRETS = {("crdtkv", "cluster-secret"): K8S_TEST_SECRET}


@pytest.mark.parametrize("namespace", ["crdtkv", "prod-eu"])
def test_k8s_pods_resolve_to_one_meshed_cluster(
    namespace: str, image: Image, k8s_docs: list[dict[str, Any]], tmp_path: Path
) -> None:
    configs = check_k8s(k8s_docs, image, namespace, K8S_SECRETS, tmp_path)
    assert list(configs) == ["crdtkv-0", "crdtkv-1", "crdtkv-2"]
    assert configs["crdtkv-1"]["peers"] == {
        "crdtkv-0": f"http://crdtkv-0.crdtkv.{namespace}.svc.cluster.local:7001",
        "crdtkv-2": f"http://crdtkv-2.crdtkv.{namespace}.svc.cluster.local:7001",
    }


def test_k8s_secret_example_is_a_placeholder_and_is_not_applied(
    image: Image, k8s_docs: list[dict[str, Any]], tmp_path: Path
) -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    resources = set(kustomization["resources"])
    assert "secret.example.yaml" not in resources
    applied = {d["__file__"] for d in k8s_docs if d.get("kind") not in ("Kustomization", "Secret")}
    assert applied <= resources, f"not in kustomization.yaml: {applied - resources}"
    example = one(k8s_docs, "Secret")
    placeholder = example["stringData"]["cluster-secret"]
    assert "CHANGE-ME" in placeholder
    # A pod given the placeholder refuses to start.
    sts = one(k8s_docs, "StatefulSet")
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    env = pod_env(container, "crdtkv-0", "crdtkv", {("crdtkv", "cluster-secret"): placeholder})
    proc = run_pod(container, image, env, tmp_path, write_crdtkv_shim(tmp_path / "bin"))
    assert proc.returncode == 2, proc
    assert "placeholder" in proc.stderr


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod_spec = one(docs, "StatefulSet")["spec"]["template"]["spec"]
    container: dict[str, Any] = pod_spec["containers"][0]
    return container


def _env_var(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [v for v in _container(docs)["env"] if v["name"] == name]
    assert len(found) == 1, name
    return found[0]


def _script(old: str, new: str) -> Callable[[list[dict[str, Any]]], None]:
    def mutate(docs: list[dict[str, Any]]) -> None:
        command = _container(docs)["command"]
        assert old in command[2]
        command[2] = command[2].replace(old, new)

    return mutate


def _members(drop: str) -> Callable[[list[dict[str, Any]]], None]:
    def mutate(docs: list[dict[str, Any]]) -> None:
        var = _env_var(docs, "CRDTKV_MEMBERS")
        var["value"] = ",".join(m for m in var["value"].split(",") if not m.startswith(drop))

    return mutate


def _replicas(n: int) -> Callable[[list[dict[str, Any]]], None]:
    def mutate(docs: list[dict[str, Any]]) -> None:
        one(docs, "StatefulSet")["spec"]["replicas"] = n

    return mutate


def _literal(name: str, value: str) -> Callable[[list[dict[str, Any]]], None]:
    def mutate(docs: list[dict[str, Any]]) -> None:
        var = _env_var(docs, name)
        var.pop("valueFrom", None)
        var["value"] = value

    return mutate


def _probe_path(kind: str, path: str) -> Callable[[list[dict[str, Any]]], None]:
    def mutate(docs: list[dict[str, Any]]) -> None:
        _container(docs)[kind]["httpGet"]["path"] = path

    return mutate


def _no_claims(docs: list[dict[str, Any]]) -> None:
    del one(docs, "StatefulSet")["spec"]["volumeClaimTemplates"]


def _not_headless(docs: list[dict[str, Any]]) -> None:
    del one(docs, "Service", name="crdtkv")["spec"]["clusterIP"]


def _no_limits(docs: list[dict[str, Any]]) -> None:
    del _container(docs)["resources"]["limits"]


def _service_links(docs: list[dict[str, Any]]) -> None:
    one(docs, "StatefulSet")["spec"]["template"]["spec"]["enableServiceLinks"] = True


def _run_as(uid: int) -> Callable[[list[dict[str, Any]]], None]:
    def mutate(docs: list[dict[str, Any]]) -> None:
        one(docs, "StatefulSet")["spec"]["template"]["spec"]["securityContext"]["runAsUser"] = uid

    return mutate


def _member_namespace(namespace: str) -> Callable[[list[dict[str, Any]]], None]:
    # crdtkv-0's URL no longer follows the pod's namespace.
    def mutate(docs: list[dict[str, Any]]) -> None:
        var = _env_var(docs, "CRDTKV_MEMBERS")
        var["value"] = var["value"].replace("$(POD_NAMESPACE)", namespace, 1)

    return mutate


K8S_BREAKAGES: dict[str, tuple[Callable[[list[dict[str, Any]]], None], str]] = {
    "entrypoint keeps the pod itself as a peer": (
        _script("self_listed=yes ;;", 'self_listed=yes; peers="${peers:+$peers,}$member" ;;'),
        "crdtkv-0.*is this replica itself",
    ),
    "entrypoint never finds the pod in the list": (
        _script('"$CRDTKV_REPLICA_ID"=*)', '"$CRDTKV_REPLICA_ID"x=*)'),
        "is not in CRDTKV_MEMBERS",
    ),
    "a member missing from the list": (_members("crdtkv-2="), "crdtkv-2 is not in"),
    "scaled without adding the member": (_replicas(4), "crdtkv-3 is not in"),
    "replica id not from the pod name": (
        _literal("CRDTKV_REPLICA_ID", "crdtkv-0"),
        "the replica id is the pod name",
    ),
    "secret written in the manifest": (
        _literal("CRDTKV_CLUSTER_SECRET", "s3cret"),
        "CRDTKV_CLUSTER_SECRET: secretKeyRef",
    ),
    "a member's URL in a fixed namespace": (_member_namespace("default"), "crdtkv-1: peers"),
    "readiness probe elsewhere": (_probe_path("readinessProbe", "/metrics"), "readinessProbe"),
    "liveness probe elsewhere": (_probe_path("livenessProbe", "/"), "livenessProbe"),
    "no volumeClaimTemplates": (_no_claims, "volumeClaimTemplates"),
    "headless Service not headless": (_not_headless, "headless"),
    "no resource limits": (_no_limits, "limits"),
    "service links on": (_service_links, "Service env vars"),
    "runs as another user": (_run_as(0), "runAsUser"),
    "entrypoint does not exec crdtkv serve": (_script("exec crdtkv serve", "crdtkv serve"), "exec"),
}


@pytest.mark.parametrize("breakage", K8S_BREAKAGES)
def test_k8s_check_fails_on_a_broken_manifest(
    breakage: str, image: Image, k8s_docs: list[dict[str, Any]], tmp_path: Path
) -> None:
    mutate, message = K8S_BREAKAGES[breakage]
    docs = copy.deepcopy(k8s_docs)
    mutate(docs)
    with pytest.raises(AssertionError, match=message):
        check_k8s(docs, image, "crdtkv", K8S_SECRETS, tmp_path)


def test_k8s_expand_follows_kubernetes() -> None:
    env = {"NS": "prod"}
    assert k8s_expand("a.$(NS).b", env) == "a.prod.b"
    assert k8s_expand("$(UNKNOWN)", env) == "$(UNKNOWN)"
    assert k8s_expand("$$(NS)", env) == "$(NS)"
    assert k8s_expand('${peers:+$peers,}$member "$@"', env) == '${peers:+$peers,}$member "$@"'
