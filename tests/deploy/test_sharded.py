"""The sharded deployments: compose/docker-compose.sharded.yml (with
compose/cluster-map.sharded.json) and compose/k8s/sharded/.  Every replica's
environment resolves, through the real ``crdtkv serve --check-config``, to one
process of the cluster map: its shard and region, its peers the shard's
replicas in the other regions and no one else, its URLs the ones the map gives
it; and a map that does not name a replica makes the check fail."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from crdtkv.cluster import ClusterMap
from tests.deploy.support import (
    COMPOSE_DIR,
    DATA_DIR,
    ENV_EXAMPLE,
    Image,
    check_config,
    in_parallel,
)
from tests.deploy.test_compose import (
    check_compose_service,
    named_volume_mounts,
    parse_env_file,
    parse_port,
)
from tests.deploy.test_k8s import K8S_TEST_SECRET, pod_env

SHARDED_COMPOSE = COMPOSE_DIR / "docker-compose.sharded.yml"
SHARDED_MAP = COMPOSE_DIR / "cluster-map.sharded.json"
SHARDED_K8S = COMPOSE_DIR / "k8s" / "sharded"


def _expect_process(m: ClusterMap, rid: str, config: dict[str, Any], who: str) -> None:
    """``config`` (--check-config's JSON) is replica ``rid`` of map ``m``."""
    shard = m.shard_of(rid)
    assert config["replica_id"] == rid, who
    assert config["cluster"]["shard"] == shard.id, who
    assert config["cluster"]["region"] == m.node(rid).region, who
    assert config["cluster"]["epoch"] == m.epoch, who
    # Its peers: its shard's replicas in the other regions, by the map's URLs, no one else.
    assert config["peers"] == {n.id: n.http for n in shard.replicas if n.id != rid}, who
    assert config["data_dir"] == DATA_DIR, who


def _compose_envs(
    compose: dict[str, Any], map_path: Path, image: Image
) -> dict[str, dict[str, str]]:
    env_example = parse_env_file(ENV_EXAMPLE)
    envs = {}
    for name, service in compose["services"].items():
        who = f"sharded compose service {name}"
        env = check_compose_service(service, who, env_example, image)
        # The map file is mounted read-only where CRDTKV_CLUSTER_MAP points.
        mounts = [str(v) for v in service["volumes"] if str(v).startswith("./")]
        assert len(mounts) == 1, f"{who}: {mounts}"
        source, target, mode = mounts[0].split(":")
        assert (COMPOSE_DIR / source).resolve() == SHARDED_MAP and mode == "ro", who
        assert env["CRDTKV_CLUSTER_MAP"] == target, who
        assert "CRDTKV_PEERS" not in env, f"{who}: the map names the peers"
        envs[name] = {**env, "CRDTKV_CLUSTER_MAP": str(map_path)}
    return envs


def test_sharded_compose_services_are_the_map(image: Image, tmp_path: Path) -> None:
    compose = yaml.safe_load(SHARDED_COMPOSE.read_text())
    m = ClusterMap.from_json(json.loads(SHARDED_MAP.read_text()))
    services = compose["services"]
    assert len(m.shards) >= 2 and len(m.regions) >= 2
    assert set(services) == {n.id for n in m.nodes()}, "one service per replica of the map"
    envs = _compose_envs(compose, SHARDED_MAP, image)
    configs = in_parallel(
        {n: functools.partial(check_config, env, tmp_path, n) for n, env in envs.items()}
    )
    volumes: dict[str, str] = {}
    published: list[int] = []
    for name, config in configs.items():
        who = f"sharded compose service {name}"
        _expect_process(m, name, config, who)
        node = m.node(name)
        # The map's addresses are the service's DNS name and the ports it listens on.
        assert node.http == f"http://{name}:{config['port']}", who
        assert node.resp == f"{name}:{config['resp_port']}", who
        for spec in services[name]["ports"]:
            host_ip, port, target = parse_port(spec)
            assert host_ip == "127.0.0.1" and port == target, f"{who}: {spec}"
            published.append(port)
        (volume, target), *_ = named_volume_mounts(services[name])
        assert target == DATA_DIR and volume not in volumes, f"{who}: a volume of its own"
        volumes[volume] = name
    assert len(published) == len(set(published)), "two services publish one port"
    assert set(volumes) == set(compose["volumes"])


def test_sharded_compose_check_fails_for_a_replica_the_map_lacks(
    image: Image, tmp_path: Path
) -> None:
    raw = json.loads(SHARDED_MAP.read_text())
    raw["shards"][-1]["replicas"][-1]["id"] = "someone-else"
    broken = tmp_path / "map.json"
    broken.write_text(json.dumps(raw))
    compose = yaml.safe_load(SHARDED_COMPOSE.read_text())
    envs = _compose_envs(compose, broken, image)
    dropped = ClusterMap.from_json(json.loads(SHARDED_MAP.read_text())).shards[-1].replicas[-1]
    with pytest.raises(AssertionError, match="is not in the map"):
        check_config(envs[dropped.id], tmp_path, dropped.id)


def _k8s_docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(SHARDED_K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_sharded_k8s_pods_are_the_map(tmp_path: Path) -> None:
    docs = _k8s_docs()
    kustomization = next(d for d in docs if d["kind"] == "Kustomization")
    files = {p.name for p in SHARDED_K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files, "kustomization lists every manifest"
    (configmap,) = [d for d in docs if d["kind"] == "ConfigMap"]
    (service,) = [d for d in docs if d["kind"] == "Service"]
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"]
    sets = [d for d in docs if d["kind"] == "StatefulSet"]
    (key, text), *more = configmap["data"].items()
    assert not more
    m = ClusterMap.from_json(json.loads(text))
    map_file = tmp_path / key
    map_file.write_text(text)
    envs: dict[str, dict[str, str]] = {}
    pods: list[str] = []
    for sts in sets:
        name = sts["metadata"]["name"]
        spec = sts["spec"]
        assert spec["serviceName"] == service["metadata"]["name"], name
        labels = spec["template"]["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items()), name
        pod_spec = spec["template"]["spec"]
        (container,) = pod_spec["containers"]
        assert "command" not in container and "args" not in container, "the image's ENTRYPOINT"
        volumes = {v["name"]: v for v in pod_spec["volumes"]}
        mount = next(v for v in container["volumeMounts"] if v["mountPath"] == "/etc/crdtkv")
        assert volumes[mount["name"]]["configMap"]["name"] == configmap["metadata"]["name"]
        shard_ids = set()
        for i in range(spec["replicas"]):
            pod = f"{name}-{i}"
            env = pod_env(
                container, pod, "crdtkv-test", {("crdtkv", "cluster-secret"): K8S_TEST_SECRET}
            )
            assert env["CRDTKV_CLUSTER_MAP"] == f"/etc/crdtkv/{key}", pod
            node = m.node(pod)  # MapError: the pod is not in the map
            host = f"{pod}.{service['metadata']['name']}"
            assert node.http == f"http://{host}:{env['CRDTKV_PORT']}", pod
            assert node.resp == f"{host}:{env['CRDTKV_RESP_PORT']}", pod
            shard_ids.add(m.shard_of(pod).id)
            envs[pod] = {**env, "CRDTKV_CLUSTER_MAP": str(map_file)}
            pods.append(pod)
        assert len(shard_ids) == 1, f"{name}: one StatefulSet is one shard"
    assert sorted(pods) == sorted(n.id for n in m.nodes()), "one pod per replica of the map"
    configs = in_parallel(
        {p: functools.partial(check_config, env, tmp_path, p) for p, env in envs.items()}
    )
    for pod, config in configs.items():
        _expect_process(m, pod, config, pod)
