"""The shipped cluster files are valid for the tools that read them."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import ray
import yaml
from ray.serve.schema import ServeDeploySchema

ROOT = Path(__file__).resolve().parents[1]


def test_serve_config_is_a_valid_serve_deploy_config():
    config = ServeDeploySchema.model_validate(yaml.safe_load((ROOT / "cluster/serve_config.yaml").read_text()))
    (app,) = config.applications
    assert app.import_path == "serve_app.app:build_app"
    deployments = {d.name: d for d in app.deployments}
    assert set(deployments) == {"Ingress", "Detector", "Transcriber", "Dispatcher"}
    for name in ("Detector", "Transcriber"):
        assert deployments[name].autoscaling_config["max_replicas"] > 1
        assert "max_batch_size" in deployments[name].user_config


def test_serve_config_deployments_exist_in_the_app():
    from serve_app.app import AppArgs, Ingress
    from serve_app.deployments.detector import Detector
    from serve_app.deployments.transcriber import Transcriber
    from serve_app.dispatcher import Dispatcher

    names = {Ingress.name, Detector.name, Transcriber.name, Dispatcher.name}
    assert names == {"Ingress", "Detector", "Transcriber", "Dispatcher"}
    AppArgs.model_validate(yaml.safe_load((ROOT / "cluster/serve_config.yaml").read_text())["applications"][0]["args"])


def test_ray_cluster_yaml_matches_the_launcher_schema():
    schema = json.loads((Path(ray.__file__).parent / "autoscaler/ray-schema.json").read_text())
    config = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    jsonschema.validate(config, schema)
    gpu = config["available_node_types"]["gpu_worker"]
    assert gpu["resources"]["GPU"] >= 1 and config["head_node_type"] == "head"
    assert any("pip install" in c and "fathom" in c for c in config["setup_commands"])
    assert all("6379" not in c for c in config["head_start_ray_commands"])


def test_make_run_head_places_every_piece_at_once(monkeypatch):
    """On a 2-core machine the two model replicas must not hold every CPU token: preprocessing
    (Ray Data tasks) and training (Ray Train workers) would then wait forever."""
    import os

    from cluster.local import local_num_cpus
    from data_pipelines.preprocess import TASK_NUM_CPUS
    from schemas.settings import Settings
    from serve_app.deployments.detector import Detector
    from serve_app.deployments.transcriber import Transcriber

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    settings = Settings()
    replicas = sum(d.ray_actor_options["num_cpus"] for d in (Detector, Transcriber))
    assert local_num_cpus(settings) >= replicas + settings.train_num_workers + TASK_NUM_CPUS
    assert local_num_cpus(Settings(ray_head_num_cpus=3)) == 3
