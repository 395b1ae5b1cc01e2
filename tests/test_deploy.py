"""The deployment files under compose/, checked without a Docker engine or a cluster.

No Docker engine (nor Kubernetes) runs on the build machines, so nothing here
builds an image or starts a container.  Instead:

- every compose service's environment (image ENV < ``env_file`` < ``environment``,
  the env file's variables taken from ``compose/.env.example``) and every
  StatefulSet pod's environment (downward API and ``$(VAR)`` expansion
  resolved, then the manifest's own entrypoint script run by ``/bin/sh``) is
  handed to the real ``crdtkv serve --check-config``, and the resolved
  configuration must be the cluster the files mean: each replica's peers are
  exactly the others, by the names they are reachable under;
- the Dockerfile, .dockerignore, volumes, ports, health checks and probes are
  checked statically, and the health check commands are run against a real
  ``crdtkv serve`` process;
- the negative tests break the files in memory (a replica listing itself as a
  peer, a missing peer, a port on every interface, ...) and expect the checks
  to fail, so the checks can fail.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.procs import ROOT, Server, server_group

COMPOSE_DIR = ROOT / "compose"
K8S_DIR = COMPOSE_DIR / "k8s"
DOCKERFILE = COMPOSE_DIR / "Dockerfile"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
BASE_IMAGE = "python:3.11-slim"
ENTRYPOINT = ["crdtkv", "serve"]
DATA_DIR = "/data"
K8S_TEST_SECRET = "0123456789abcdef0123456789abcdef"  # stands in for the real Secret
CHECK_TIMEOUT_S = 60.0

# -- running crdtkv serve --check-config ---------------------------------------------------------


def run_env(env: Mapping[str, str], path_prefix: str | None = None) -> dict[str, str]:
    """Exactly ``env``, plus what it takes to run this checkout's crdtkv here."""
    out = dict(env)
    path = os.environ.get("PATH", os.defpath)
    out["PATH"] = os.pathsep.join(filter(None, [path_prefix, path]))
    out["PYTHONPATH"] = str(ROOT)
    return out


def resolved_config(proc: subprocess.CompletedProcess[str], who: str) -> dict[str, Any]:
    if proc.returncode != 0:
        raise AssertionError(
            f"{who}: crdtkv serve --check-config exited {proc.returncode}: {proc.stderr.strip()}"
        )
    config: dict[str, Any] = json.loads(proc.stdout)
    return config


def check_config(env: Mapping[str, str], cwd: Path, who: str) -> dict[str, Any]:
    """``crdtkv serve --check-config`` (the image's ENTRYPOINT) with exactly ``env``."""
    proc = subprocess.run(
        [sys.executable, "-m", "crdtkv.cli", "serve", "--check-config"],
        env=run_env(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT_S,
    )
    return resolved_config(proc, who)


def in_parallel(jobs: Mapping[str, Callable[[], dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Run independent --check-config jobs concurrently; the first failure is raised."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


# -- the Dockerfile ------------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, arguments)

    def all(self, instruction: str) -> list[str]:
        return [args for ins, args in self.instructions if ins == instruction]

    def last(self, instruction: str) -> str | None:
        found = self.all(instruction)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for args in self.all("ENV"):
            for word in shlex.split(args):
                key, eq, value = word.partition("=")
                assert eq, f"ENV {args!r}: use the KEY=value form"
                env[key] = value
        return env


def parse_dockerfile(text: str) -> list[Stage]:
    """Instructions by stage: comments dropped, continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and pending):
            continue  # Docker drops comment lines, even inside a continuation
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        if pending or line:
            logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation"
    stages: list[Stage] = []
    for line in logical:
        instruction, _, args = line.partition(" ")
        instruction, args = instruction.upper(), args.strip()
        if instruction == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        else:
            assert stages, f"{instruction} before FROM"
            stages[-1].instructions.append((instruction, args))
    return stages


@dataclass
class Image:
    """What the final stage of compose/Dockerfile gives a container."""

    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def env(self) -> dict[str, str]:
        """The image's ENV a container starts with (PATH stays the host's, to run here)."""
        env = {}
        for key, value in self.final.env().items():
            if key != "PATH":
                assert "$" not in value, f"ENV {key}={value}: not expanded by this test"
                env[key] = value
        return env

    def entrypoint(self) -> list[str]:
        args = self.final.last("ENTRYPOINT")
        assert args is not None, "no ENTRYPOINT"
        value = json.loads(args)
        assert isinstance(value, list), "ENTRYPOINT must be in exec (JSON) form"
        return value

    def user(self) -> str:
        user = self.final.last("USER")
        assert user is not None, "the image runs as root: no USER"
        return user

    def volumes(self) -> list[str]:
        out: list[str] = []
        for args in self.final.all("VOLUME"):
            out += json.loads(args) if args.startswith("[") else args.split()
        return out

    def healthcheck(self) -> list[str]:
        args = self.final.last("HEALTHCHECK")
        assert args is not None, "no HEALTHCHECK"
        _options, cmd, command = args.partition("CMD ")
        assert cmd, f"HEALTHCHECK {args!r} has no CMD"
        value = json.loads(command)
        assert isinstance(value, list) and value, "HEALTHCHECK CMD must be in exec (JSON) form"
        return value


def load_image() -> Image:
    return Image(parse_dockerfile(DOCKERFILE.read_text()))


def check_healthcheck_command(test: list[str], who: str) -> None:
    """An exec-form health check that GETs /healthz with Python (slim has no curl)."""
    assert test, f"{who}: empty health check"
    text = " ".join(test)
    assert "/healthz" in text, f"{who}: the health check does not ask /healthz: {text}"
    assert not re.search(r"\b(curl|wget)\b", text), f"{who}: curl and wget are not in the image"
    assert test[0] == "python", f"{who}: the health check should run python: {test}"


def check_dockerfile(image: Image) -> None:
    for stage in image.stages:
        assert stage.base == BASE_IMAGE, f"FROM {stage.base}: expected {BASE_IMAGE}"
    final = image.final
    assert image.entrypoint() == ENTRYPOINT, image.entrypoint()
    assert final.last("CMD") is None, "a CMD would add arguments to crdtkv serve"
    env = final.env()
    assert env.get("CRDTKV_HOST") == "0.0.0.0", env
    assert env.get("CRDTKV_PORT") == "7001", env
    assert env.get("CRDTKV_DATA_DIR") == DATA_DIR, env
    assert DATA_DIR in image.volumes(), image.volumes()
    assert "7001" in " ".join(final.all("EXPOSE")).split()
    user = image.user()
    assert user.split(":")[0] not in ("root", "0"), f"USER {user} is root"
    check_healthcheck_command(image.healthcheck(), "Dockerfile HEALTHCHECK")
    # The package is installed with `pip install .`: no test or bench extras.
    installs = [r for s in image.stages for r in s.all("RUN") if "pip install" in r]
    assert installs, "no pip install"
    for run in installs:
        assert re.search(r"pip install [\"']?\.", run), f"not `pip install .`: {run}"
        assert "test" not in run and "bench" not in run, run
    for stage in image.stages:
        for arg in stage.all("ARG"):
            if arg.startswith("EXTRAS="):
                extras = arg.partition("=")[2].strip("\"'").split(",")
                assert set(extras) <= {"", "fast"}, f"ARG {arg}: only the fast extra"


def dockerfile_copy_sources(image: Image) -> list[str]:
    """The build-context paths the Dockerfile COPYs (not those from another stage)."""
    sources: list[str] = []
    for stage in image.stages:
        for args in stage.all("COPY") + stage.all("ADD"):
            words = args.split()
            if any(w.startswith("--from=") for w in words):
                continue
            words = [w for w in words if not w.startswith("--")]
            sources += words[:-1]
    return sources


# -- .dockerignore -------------------------------------------------------------------------------


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(exclusion?, regex) for each line of .dockerignore, in order."""
    patterns = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        line = line.lstrip("!").strip().strip("/")
        patterns.append((exclude, _ignore_regex(os.path.normpath(line))))
    return patterns


def in_build_context(path: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parents wins."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for exclude, regex in patterns:
        if any(regex.match(c) for c in candidates):
            included = not exclude
    return included


# -- compose -------------------------------------------------------------------------------------


def load_compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


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


def check_compose(
    compose: Mapping[str, Any], env_file_vars: Mapping[str, str], image: Image, cwd: Path
) -> dict[str, dict[str, Any]]:
    """Every service as a replica of one fully meshed cluster; the resolved configs."""
    services: dict[str, Any] = compose["services"]
    declared_volumes = set((compose.get("volumes") or {}).keys())
    image_env = image.env()
    envs: dict[str, dict[str, str]] = {}
    volume_owner: dict[str, str] = {}
    for name, service in services.items():
        who = f"compose service {name}"
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
        envs[name] = {**image_env, **env_file_vars, **environment}

        # Data: one named volume of its own, mounted where the replica keeps its data.
        mounts = named_volume_mounts(service)
        assert len(mounts) == 1, f"{who}: exactly one named volume, got {mounts}"
        volume, target = mounts[0]
        assert volume in declared_volumes, f"{who}: volume {volume} is not declared"
        assert volume not in volume_owner, f"{who} shares {volume} with {volume_owner[volume]}"
        volume_owner[volume] = name
        assert target in image.volumes(), f"{who}: {target} is not the image's VOLUME"

        # Health: /healthz, as the image's HEALTHCHECK.
        health = service.get("healthcheck")
        assert health and not health.get("disable"), f"{who}: no healthcheck"
        test = health["test"]
        assert isinstance(test, list) and test[0] == "CMD", f"{who}: exec-form healthcheck"
        check_healthcheck_command(test[1:], who)
        for text in test:
            assert "$" not in text, f"{who}: compose would interpolate {text!r}"

    configs = in_parallel(
        {name: functools.partial(check_config, env, cwd, name) for name, env in envs.items()}
    )

    for name, service in services.items():
        who = f"compose service {name}"
        config = configs[name]
        assert config["replica_id"] == name, f"{who}: replica id {config['replica_id']}"
        assert config["host"] == "0.0.0.0", f"{who}: listens on {config['host']}"
        assert config["cluster_secret"] is not None, f"{who}: no cluster secret"
        assert config["data_dir"] == named_volume_mounts(service)[0][1], (
            f"{who}: data in {config['data_dir']}, not in its volume"
        )
        expected = {
            other: f"http://{other}:{configs[other]['port']}" for other in services if other != name
        }
        assert config["peers"] == expected, f"{who}: peers {config['peers']}, want {expected}"
        ports = [parse_port(p) for p in service.get("ports", [])]
        assert ports, f"{who}: no published port"
        for host_ip, _, container_port in ports:
            assert host_ip == "127.0.0.1", f"{who}: port published on {host_ip or 'every address'}"
            assert container_port == config["port"], f"{who}: publishes {container_port}"
    return configs


# -- Kubernetes ----------------------------------------------------------------------------------


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


def check_k8s(
    docs: list[dict[str, Any]],
    image: Image,
    namespace: str,
    secrets: Mapping[tuple[str, str], str],
    cwd: Path,
) -> dict[str, dict[str, Any]]:
    """The StatefulSet and its Services; the resolved config of every pod."""
    sts = one(docs, "StatefulSet")
    name = sts["metadata"]["name"]
    spec = sts["spec"]
    replicas = spec["replicas"]
    pod_spec = spec["template"]["spec"]
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

    assert pod_spec.get("enableServiceLinks") is False, "Service env vars could shadow CRDTKV_*"
    (container,) = pod_spec["containers"]
    ports = {p.get("name"): p["containerPort"] for p in container["ports"]}
    uid = int(image.user().split(":")[0])
    assert pod_spec["securityContext"]["runAsUser"] == uid, "runAsUser is the image's USER"
    assert pod_spec["securityContext"].get("fsGroup") == uid, "fsGroup makes the volume writable"

    # Storage: a claim per pod, mounted where the replica keeps its data.
    claims = {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}
    assert claims, "no volumeClaimTemplates: the data would not survive the pod"
    data_mounts = [m["mountPath"] for m in container["volumeMounts"] if m["name"] in claims]
    assert len(data_mounts) == 1, f"one claim mounted in the container: {data_mounts}"

    # The secret comes from a Secret, never from the manifest.
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

    # Probes and resources.
    for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
        if kind == "startupProbe" and kind not in container:
            continue
        path, port = probe_target(container.get(kind), kind)
        assert path == "/healthz", f"{kind} asks {path}"
        assert port in ports or port in ports.values(), f"{kind} port {port}"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"].get(kind, {})), kind

    # The entrypoint must still run the image's crdtkv serve (as PID 1: exec).
    command = container.get("command")
    if command:
        script = " ".join(map(str, command))
        assert "exec " + " ".join(image.entrypoint()) in script, "exec crdtkv serve"

    # Every pod, with the environment the kubelet gives it.
    shim_dir = write_crdtkv_shim(cwd / "bin")
    pods = [f"{name}-{i}" for i in range(replicas)]

    def run(pod: str) -> dict[str, Any]:
        env = pod_env(container, pod, namespace, secrets)
        return resolved_config(run_pod(container, image, env, cwd, shim_dir), f"pod {pod}")

    configs = in_parallel({pod: functools.partial(run, pod) for pod in pods})
    for pod, config in configs.items():
        assert config["replica_id"] == pod, f"pod {pod}: replica id {config['replica_id']}"
        assert config["host"] == "0.0.0.0", f"pod {pod}: listens on {config['host']}"
        assert config["port"] in ports.values(), f"pod {pod}: port {config['port']}"
        assert config["data_dir"] == data_mounts[0], f"pod {pod}: data in {config['data_dir']}"
        assert config["cluster_secret"] is not None, f"pod {pod}: no cluster secret"
        dns = f"{spec['serviceName']}.{namespace}.svc.cluster.local"
        expected = {
            other: f"http://{other}.{dns}:{configs[other]['port']}"
            for other in pods
            if other != pod
        }
        assert config["peers"] == expected, f"pod {pod}: peers {config['peers']}, want {expected}"
    return configs


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image() -> Image:
    return load_image()


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return parse_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def k8s_docs() -> list[dict[str, Any]]:
    return load_k8s()


K8S_SECRETS = {("crdtkv", "cluster-secret"): K8S_TEST_SECRET}


# -- the Dockerfile and the build context --------------------------------------------------------


def test_dockerfile(image: Image) -> None:
    check_dockerfile(image)


def test_dockerfile_copies_what_pip_install_needs(image: Image) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    sources = {os.path.normpath(s) for s in dockerfile_copy_sources(image)}
    assert {"pyproject.toml", pyproject["project"]["readme"]} <= sources, sources
    includes = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = [
        p.name
        for p in ROOT.iterdir()
        if (p / "__init__.py").is_file() and any(fnmatch.fnmatch(p.name, i) for i in includes)
    ]
    assert packages
    for package in packages:
        assert package in sources, f"the Dockerfile does not COPY {package}/"
    patterns = dockerignore_patterns()
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file"
        assert in_build_context(source, patterns), f"COPY {source}: excluded by .dockerignore"


def test_dockerignore_keeps_the_sources_and_nothing_else() -> None:
    patterns = dockerignore_patterns()
    for package in ("crdtkv", "replication"):  # sources and package data (py.typed, openapi.json)
        for path in (ROOT / package).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                rel = path.relative_to(ROOT).as_posix()
                assert in_build_context(rel, patterns), f"{rel} is excluded"
    for kept in ("pyproject.toml", "README.md", "crdtkv/py.typed"):
        assert in_build_context(kept, patterns), kept
    for left_out in (
        ".venv/bin/python",
        "data/eu/CURRENT",
        "tests/test_deploy.py",
        "compose/.env",
        ".env",
        ".git/config",
        ".hypothesis/examples/x",
        ".mypy_cache/3.11/x.json",
        ".pytest_cache/v/x",
        ".ruff_cache/x",
        "crdtkv/__pycache__/cli.cpython-311.pyc",
        "crdtkv/api/__pycache__/app.cpython-311.pyc",
        "crdtkv.egg-info/PKG-INFO",
        "benchmarks/results/x.json",
        "build/lib/crdtkv/cli.py",
    ):
        assert not in_build_context(left_out, patterns), f"{left_out} reaches the build context"


def test_dockerignore_matcher_can_fail() -> None:
    # The matcher the test above relies on: a later "!" pattern lets a path back in.
    patterns = [(True, _ignore_regex("*")), (False, _ignore_regex("crdtkv"))]
    assert in_build_context("crdtkv/cli.py", patterns)
    assert not in_build_context("tests/x.py", patterns)
    patterns.append((True, _ignore_regex("**/__pycache__")))
    assert not in_build_context("crdtkv/api/__pycache__/x.pyc", patterns)


# -- compose -------------------------------------------------------------------------------------


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
    assert published == {7001, 7002, 7003}


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


# -- the health checks, run against a real replica -----------------------------------------------


def run_healthcheck(test: list[str], port: int) -> int:
    assert test[0] == "python"
    return subprocess.run(
        [sys.executable, *test[1:]],
        env=run_env({"CRDTKV_PORT": str(port)}),
        capture_output=True,
        timeout=CHECK_TIMEOUT_S,
    ).returncode


def test_healthchecks_pass_on_a_serving_replica_and_fail_without_one(
    image: Image, tmp_path: Path
) -> None:
    commands = {"Dockerfile": image.healthcheck()}
    for name, service in load_compose()["services"].items():
        commands[f"compose {name}"] = service["healthcheck"]["test"][1:]
    with server_group() as group:
        server = group.add(Server("eu", tmp_path / "eu")).start()
        for who, test in commands.items():
            assert run_healthcheck(test, server.port) == 0, who
        assert server.stop() == 0
    for who, test in commands.items():
        assert run_healthcheck(test, server.port) != 0, f"{who} passes with no replica"


# -- Kubernetes ----------------------------------------------------------------------------------


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
