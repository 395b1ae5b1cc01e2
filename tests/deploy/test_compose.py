"""compose/docker-compose.yml and its env file: every service resolves, through the
real ``crdtkv serve --check-config``, to one replica of a fully meshed cluster,
with a volume of its own, a health check and a port on loopback only; and the
check fails on each way of breaking the file."""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.support import (
    COMPOSE_DIR,
    DATA_DIR,
    DOCKERFILE,
    ENV_EXAMPLE,
    Image,
    check_config,
    check_healthcheck_command,
    in_parallel,
    load_compose,
)
from tests.procs import ROOT


def parse_env_file(path: Path) -> dict[str, str]:
    """A compose env file, restricted to the unambiguous subset: KEY=value, # comments."""
    env: dict[str, str] = {}
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        assert eq and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"{path.name}:{n}: not KEY=value"
        # Quotes, inline comments and $ are read differently by different
        # compose versions: keep them out of the file.
        assert not re.search(r"[\"'#$\s]", value), f"{path.name}:{n}: keep the value plain"
        env[key] = value
    return env


def env_files_of(service: Mapping[str, Any]) -> list[str]:
    files = service.get("env_file", [])
    files = [files] if isinstance(files, str | dict) else files
    return [f["path"] if isinstance(f, dict) else f for f in files]


def environment_of(service: Mapping[str, Any], who: str) -> dict[str, str]:
    raw = service.get("environment", {})
    if isinstance(raw, list):
        raw = dict(item.partition("=")[::2] for item in raw)
    env = {}
    for key, value in raw.items():
        assert value is not None, f"{who}: {key} without a value takes it from the host"
        text = str(value)
        assert "$" not in text, f"{who}: {key}: no compose interpolation in the environment"
        env[key] = text
    return env


def parse_port(spec: Any) -> tuple[str, int, int]:
    """(host ip, published port, container port) of a ports entry."""
    if isinstance(spec, dict):
        host_ip = spec.get("host_ip", "")
        return host_ip, int(spec.get("published", 0)), int(spec["target"])
    parts = str(spec).partition("/")[0].rsplit(":", 2)  # [[host_ip:]published:]target
    parts = [""] * (3 - len(parts)) + parts  # no host address: every address
    return parts[0].strip("[]"), int(parts[1] or 0), int(parts[2])


def named_volume_mounts(service: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(volume name, container path) of the service's named-volume mounts."""
    mounts = []
    for spec in service.get("volumes", []):
        if isinstance(spec, dict):
            if spec.get("type", "volume") == "volume":
                mounts.append((spec["source"], spec["target"]))
            continue
        source, _, rest = str(spec).partition(":")
        target = rest.partition(":")[0]
        if target and not source.startswith((".", "/", "~")):
            mounts.append((source, target))
    return mounts


def check_compose_service(
    service: Mapping[str, Any], who: str, env_file_vars: Mapping[str, str], image: Image
) -> dict[str, str]:
    """How the service builds and runs the image, and where its settings come from; the
    environment the container starts with (image ENV < env_file < environment)."""
    build = service.get("build")
    assert isinstance(build, dict), f"{who}: builds compose/Dockerfile"
    assert (COMPOSE_DIR / build["context"]).resolve() == ROOT, f"{who}: context is the root"
    assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILE, f"{who}: {build}"
    assert "entrypoint" not in service and "command" not in service, (
        f"{who}: the image's ENTRYPOINT {image.entrypoint()} must run unchanged"
    )
    assert env_files_of(service) == [".env"], f"{who}: env_file must be .env"
    environment = environment_of(service, who)
    assert all(k.startswith("CRDTKV_") for k in environment), f"{who}: {environment}"
    for secret in ("CRDTKV_CLUSTER_SECRET", "CRDTKV_AUTH_TOKEN"):
        assert secret not in environment, f"{who}: {secret} belongs in .env, not the file"
    assert env_file_vars.get("CRDTKV_CLUSTER_SECRET"), ".env must set CRDTKV_CLUSTER_SECRET"
    return {**image.env(), **env_file_vars, **environment}


def check_compose_volume(
    service: Mapping[str, Any],
    name: str,
    declared_volumes: set[str],
    volume_owner: dict[str, str],
    image: Image,
) -> None:
    """Data: one named volume of its own, mounted where the replica keeps its data."""
    who = f"compose service {name}"
    mounts = named_volume_mounts(service)
    assert len(mounts) == 1, f"{who}: exactly one named volume, got {mounts}"
    volume, target = mounts[0]
    assert volume in declared_volumes, f"{who}: volume {volume} is not declared"
    assert volume not in volume_owner, f"{who} shares {volume} with {volume_owner[volume]}"
    volume_owner[volume] = name
    assert target in image.volumes(), f"{who}: {target} is not the image's VOLUME"


def check_compose_healthcheck(service: Mapping[str, Any], who: str) -> None:
    """Health: /healthz, as the image's HEALTHCHECK."""
    health = service.get("healthcheck")
    assert health and not health.get("disable"), f"{who}: no healthcheck"
    test = health["test"]
    assert isinstance(test, list) and test[0] == "CMD", f"{who}: exec-form healthcheck"
    check_healthcheck_command(test[1:], who)
    for text in test:
        assert "$" not in text, f"{who}: compose would interpolate {text!r}"


def check_compose_config(
    name: str, service: Mapping[str, Any], configs: Mapping[str, dict[str, Any]]
) -> None:
    """The service's resolved config: its own id, every other service as a peer by its
    service name, data in its volume, its port published on loopback only."""
    who = f"compose service {name}"
    config = configs[name]
    assert config["replica_id"] == name, f"{who}: replica id {config['replica_id']}"
    assert config["host"] == "0.0.0.0", f"{who}: listens on {config['host']}"
    assert config["cluster_secret"] is not None, f"{who}: no cluster secret"
    assert config["data_dir"] == named_volume_mounts(service)[0][1], (
        f"{who}: data in {config['data_dir']}, not in its volume"
    )
    expected = {
        other: f"http://{other}:{configs[other]['port']}" for other in configs if other != name
    }
    assert config["peers"] == expected, f"{who}: peers {config['peers']}, want {expected}"
    ports = [parse_port(p) for p in service.get("ports", [])]
    assert ports, f"{who}: no published port"
    served = {config["port"], config["resp_port"]} - {0}  # HTTP, and RESP unless off
    for host_ip, _, container_port in ports:
        assert host_ip == "127.0.0.1", f"{who}: port published on {host_ip or 'every address'}"
        assert container_port in served, f"{who}: publishes {container_port}"
    published = {container_port for _, _, container_port in ports}
    assert published == served, f"{who}: publishes {sorted(published)}, serves {sorted(served)}"


def check_compose(
    compose: Mapping[str, Any], env_file_vars: Mapping[str, str], image: Image, cwd: Path
) -> dict[str, dict[str, Any]]:
    """Every service as a replica of one fully meshed cluster; the resolved configs."""
    services: dict[str, Any] = compose["services"]
    declared_volumes = set((compose.get("volumes") or {}).keys())
    envs: dict[str, dict[str, str]] = {}
    volume_owner: dict[str, str] = {}
    for name, service in services.items():
        who = f"compose service {name}"
        envs[name] = check_compose_service(service, who, env_file_vars, image)
        check_compose_volume(service, name, declared_volumes, volume_owner, image)
        check_compose_healthcheck(service, who)

    configs = in_parallel(
        {name: functools.partial(check_config, env, cwd, name) for name, env in envs.items()}
    )
    for name, service in services.items():
        check_compose_config(name, service, configs)
    return configs


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return parse_env_file(ENV_EXAMPLE)


# -- the tests -----------------------------------------------------------------------------------


def test_compose_services_resolve_to_one_meshed_cluster(
    image: Image, env_example: dict[str, str], tmp_path: Path
) -> None:
    compose = load_compose()
    assert set(compose["services"]) == {"eu", "us", "ap"}
    configs = check_compose(compose, env_example, image, tmp_path)
    assert {c["port"] for c in configs.values()} == {7001, 7002, 7003}
    for name, config in configs.items():
        assert config["durability"] == "fsync", name
        assert config["data_dir"] == DATA_DIR, name
    published = {parse_port(p)[1] for s in compose["services"].values() for p in s["ports"]}
    assert published == {7001, 7002, 7003, 6379, 6380, 6381}
    assert {c["resp_port"] for c in configs.values()} == {6379, 6380, 6381}


def test_env_example_holds_a_placeholder_and_the_real_file_is_ignored(
    env_example: dict[str, str],
) -> None:
    assert "CHANGE-ME" in env_example["CRDTKV_CLUSTER_SECRET"]
    # compose/.gitignore says "/.env"; the root .gitignore may say "compose/.env" too.
    rules = {
        (ROOT / "compose" / rule.lstrip("/")).as_posix()
        for rule in _lines(COMPOSE_DIR / ".gitignore")
    } | {(ROOT / rule.lstrip("/")).as_posix() for rule in _lines(ROOT / ".gitignore")}
    assert (COMPOSE_DIR / ".env").as_posix() in rules, "compose/.env must be ignored by git"


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _set_env(service: str, key: str, value: str) -> Callable[[dict[str, Any]], None]:
    def mutate(compose: dict[str, Any]) -> None:
        compose["services"][service]["environment"][key] = value

    return mutate


def _set(service: str, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(compose: dict[str, Any]) -> None:
        compose["services"][service][key] = value

    return mutate


def _unset(service: str, key: str) -> Callable[[dict[str, Any]], None]:
    def mutate(compose: dict[str, Any]) -> None:
        del compose["services"][service][key]

    return mutate


def _healthz_path(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(compose: dict[str, Any]) -> None:
        test = copy.deepcopy(compose["services"]["eu"]["healthcheck"])
        test["test"] = [t.replace("/healthz", path) for t in test["test"]]
        compose["services"]["eu"]["healthcheck"] = test

    return mutate


COMPOSE_BREAKAGES = {
    "lists itself as a peer": (
        _set_env("us", "CRDTKV_PEERS", "eu=http://eu:7001,ap=http://ap:7003,us=http://us:7002"),
        "us.*is this replica itself",
    ),
    "misses a peer": (_set_env("eu", "CRDTKV_PEERS", "us=http://us:7002"), "eu: peers"),
    "peer on the wrong port": (
        _set_env("ap", "CRDTKV_PEERS", "eu=http://eu:7002,us=http://us:7002"),
        "ap: peers",
    ),
    "peer by a host address": (
        _set_env("ap", "CRDTKV_PEERS", "eu=http://127.0.0.1:7001,us=http://us:7002"),
        "ap: peers",
    ),
    "wrong replica id": (_set_env("eu", "CRDTKV_REPLICA_ID", "europe"), "eu: replica id"),
    "listens on loopback": (_set_env("us", "CRDTKV_HOST", "127.0.0.1"), "us: listens on"),
    "data outside the volume": (
        _set_env("us", "CRDTKV_DATA_DIR", "/var/lib/crdtkv"),
        "us: data in",
    ),
    "port on every address": (_set("eu", "ports", ["7001:7001"]), "eu: port"),
    "port on a public address": (_set("eu", "ports", ["0.0.0.0:7001:7001"]), "eu: port"),
    "publishes another port": (_set("ap", "ports", ["127.0.0.1:7003:7001"]), "ap: publishes"),
    "shared volume": (_set("ap", "volumes", ["eu-data:/data"]), "ap shares eu-data"),
    "no volume": (_unset("us", "volumes"), "us: exactly one named volume"),
    "bind mount": (_set("us", "volumes", ["./data:/data"]), "us: exactly one named volume"),
    "no env_file": (_unset("eu", "env_file"), "eu: env_file"),
    "secret in the compose file": (
        _set_env("eu", "CRDTKV_CLUSTER_SECRET", "s3cret"),
        "CRDTKV_CLUSTER_SECRET belongs in .env",
    ),
    "no healthcheck": (_unset("ap", "healthcheck"), "ap: no healthcheck"),
    "healthcheck on another path": (_healthz_path("/v1/status"), "does not ask /healthz"),
    "entrypoint replaced": (_set("us", "entrypoint", ["sh"]), "ENTRYPOINT"),
    "bad durability": (_set_env("us", "CRDTKV_DURABILITY", "none"), "CRDTKV_DURABILITY"),
}


@pytest.mark.parametrize("breakage", COMPOSE_BREAKAGES)
def test_compose_check_fails_on_a_broken_file(
    breakage: str, image: Image, env_example: dict[str, str], tmp_path: Path
) -> None:
    mutate, message = COMPOSE_BREAKAGES[breakage]
    compose = copy.deepcopy(load_compose())
    mutate(compose)
    with pytest.raises(AssertionError, match=message):
        check_compose(compose, env_example, image, tmp_path)


def test_compose_check_fails_without_the_secret(image: Image, tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="CRDTKV_CLUSTER_SECRET"):
        check_compose(load_compose(), {}, image, tmp_path)
