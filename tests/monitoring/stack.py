"""A real metrics stack on this machine: our model server processes scraped by a real Prometheus.

Prometheus runs the scrape jobs the monitoring role renders, relabel rules unchanged. Only their service
discovery differs: instead of asking a Kubernetes API for pods, the jobs read a file_sd file holding the
`__meta_kubernetes_pod_*` labels Kubernetes' pod discovery would produce for KServe predictor pods (one
target per container port, pod IP 127.0.0.1). Two revisions of one InferenceService are played:

- revision 00001 with metric aggregation on: KServe points `prometheus.io/port` at queue-proxy's aggregate
  port; here that port is the model server itself (queue-proxy would merge in its own metrics);
- revision 00002 with KServe's defaults (aggregation off): `prometheus.io/port` is queue-proxy's 9091 (not
  running here, so that target is down) and the model server is scraped by the second job on
  `prometheus.kserve.io/port`.

`python -m tests.monitoring.stack` starts it, sends load and prints the Prometheus URL until Ctrl-C.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime
import json
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import requests
import yaml

from tests.monitoring.processes import ROOT, free_port, running
from tests.monitoring.role_render import render_template

NAMESPACE = "kserve-test"
ISVC = "tiny-sentiment"
MODEL = "tiny-sentiment"
KSERVE_JOBS = ("kserve-inferenceservices", "kserve-model-servers")
SCRAPE_INTERVAL = "1s"
TEXTS = ["Hello, my dog is cute", "I am feeling happy", "The food was terrible and the service was slow."]


@dataclasses.dataclass
class PredictorPod:
    """One predictor pod of a revision, as KServe + Knative create it, served by a local model server."""

    revision_number: int
    metric_aggregation: bool
    http_port: int
    absent_port: int  # stands for queue-proxy's port, which does not run here

    @property
    def revision(self) -> str:
        return f"{ISVC}-predictor-{self.revision_number:05d}"

    @property
    def name(self) -> str:
        return f"{self.revision}-deployment-6d8f9c-x{self.revision_number}"

    def annotations(self) -> dict[str, str]:
        prometheus_port = self.http_port if self.metric_aggregation else self.absent_port
        return {
            "serving.kserve.io/enable-prometheus-scraping": "true",
            "serving.kserve.io/enable-metric-aggregation": str(self.metric_aggregation).lower(),
            "prometheus.io/port": str(prometheus_port),
            "prometheus.io/path": "/metrics",
            "prometheus.kserve.io/port": str(self.http_port),
            "prometheus.kserve.io/path": "/metrics",
        }

    def labels(self) -> dict[str, str]:
        return {
            "serving.kserve.io/inferenceservice": ISVC,
            "component": "predictor",
            "serving.knative.dev/revision": self.revision,
            "serving.knative.dev/configuration": f"{ISVC}-predictor",
            "serving.knative.dev/service": f"{ISVC}-predictor",
            "app": self.revision,
        }

    def containers(self) -> dict[str, int]:
        return {"kserve-container": self.http_port, "queue-proxy": self.absent_port}


def sanitize(name: str) -> str:
    """Prometheus' label-name sanitizing of Kubernetes label and annotation keys."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def kubernetes_sd_targets(pod: PredictorPod) -> list[dict]:
    """The targets Prometheus' Kubernetes pod discovery yields for `pod`: one per container port."""
    meta = {
        "__meta_kubernetes_namespace": NAMESPACE,
        "__meta_kubernetes_pod_name": pod.name,
        "__meta_kubernetes_pod_ip": "127.0.0.1",
        "__meta_kubernetes_pod_phase": "Running",
        "__meta_kubernetes_pod_ready": "true",
        "__meta_kubernetes_pod_node_name": "node-1",
    }
    for key, value in pod.labels().items():
        meta[f"__meta_kubernetes_pod_label_{sanitize(key)}"] = value
        meta[f"__meta_kubernetes_pod_labelpresent_{sanitize(key)}"] = "true"
    for key, value in pod.annotations().items():
        meta[f"__meta_kubernetes_pod_annotation_{sanitize(key)}"] = value
        meta[f"__meta_kubernetes_pod_annotationpresent_{sanitize(key)}"] = "true"
    return [
        {
            "targets": [f"127.0.0.1:{port}"],
            "labels": meta
            | {
                "__meta_kubernetes_pod_container_name": container,
                "__meta_kubernetes_pod_container_port_number": str(port),
                "__meta_kubernetes_pod_container_port_protocol": "TCP",
            },
        }
        for container, port in pod.containers().items()
    ]


def local_prometheus_config(targets_file: pathlib.Path, prometheus_port: int) -> dict:
    """The role's prometheus.yml with file_sd in place of Kubernetes discovery for the KServe jobs."""
    rendered = render_template("prometheus-config.yaml.j2", monitoring_scrape_interval=SCRAPE_INTERVAL)
    config = yaml.safe_load(rendered)
    jobs = []
    for job in config["scrape_configs"]:
        if job["job_name"] == "prometheus":
            job["static_configs"] = [{"targets": [f"127.0.0.1:{prometheus_port}"]}]
        elif job["job_name"] in KSERVE_JOBS:
            del job["kubernetes_sd_configs"]
            job["file_sd_configs"] = [{"files": [str(targets_file)], "refresh_interval": "1s"}]
        else:
            continue  # Knative's components do not run here
        jobs.append(job)
    config["scrape_configs"] = jobs
    return config


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        raise RuntimeError("no `prometheus` binary: run `bash tests/monitoring/install_prometheus.sh`")
    return path


@dataclasses.dataclass
class Stack:
    prometheus_url: str
    pods: list[PredictorPod]
    workdir: pathlib.Path

    def model_url(self, pod: PredictorPod) -> str:
        return f"http://127.0.0.1:{pod.http_port}"

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        params = {"query": expr} | ({"time": str(at)} if at else {})
        answer = requests.get(f"{self.prometheus_url}/api/v1/query", params=params, timeout=10).json()
        if answer["status"] != "success":
            raise ValueError(f"{expr}: {answer.get('error')}")
        return answer["data"]["result"]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        params = {"query": expr, "start": start, "end": end, "step": step}
        answer = requests.get(f"{self.prometheus_url}/api/v1/query_range", params=params, timeout=10).json()
        if answer["status"] != "success":
            raise ValueError(f"{expr}: {answer.get('error')}")
        return answer["data"]["result"]

    def targets(self) -> list[dict]:
        return requests.get(f"{self.prometheus_url}/api/v1/targets", timeout=10).json()["data"][
            "activeTargets"
        ]

    def wait_scraped_since(self, moment: float, scrapes: int = 2, timeout: float = 60) -> None:
        """Until Prometheus has scraped every model server `scrapes` times since `moment` (time.time()):
        what they counted before it is then in the TSDB, with a later sample for rates."""
        servers = {f"http://127.0.0.1:{pod.http_port}/metrics" for pod in self.pods}
        marks = {url: moment for url in servers}
        deadline = time.monotonic() + timeout
        for _ in range(scrapes):
            while True:
                seen = {
                    t["scrapeUrl"]: scrape_time(t["lastScrape"])
                    for t in self.targets()
                    if t["scrapeUrl"] in servers and t["health"] == "up"
                }
                if all(seen.get(url, 0.0) > mark for url, mark in marks.items()):
                    marks = {url: seen[url] for url in servers}
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"model servers not scraped {scrapes} times since {moment}: {seen}")
                time.sleep(0.2)


def scrape_time(rfc3339: str) -> float:
    """Prometheus' lastScrape (RFC 3339, nanoseconds) as a time.time() value."""
    trimmed = re.sub(r"(\.\d{6})\d*", r"\1", rfc3339).replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(trimmed).timestamp()


def tiny_model(cache: pathlib.Path) -> pathlib.Path:
    model_dir = cache / "tiny-model"
    if not (model_dir / "config.json").exists():
        subprocess.run([sys.executable, "-m", "model.tiny_model", str(model_dir)], cwd=ROOT, check=True)
    return model_dir


def model_server_argv(model_dir: pathlib.Path, pod: PredictorPod) -> list[str]:
    return [
        sys.executable,
        "-m",
        "model.server",
        "--model_name",
        MODEL,
        "--model_dir",
        str(model_dir),
        "--http_port",
        str(pod.http_port),
        "--grpc_port",
        str(free_port()),
        "--enable_grpc",
        "false",
        "--max_batch_wait_ms",
        "5",
    ]


@contextlib.contextmanager
def metrics_stack(workdir: pathlib.Path) -> Iterator[Stack]:
    """Two model server processes (two revisions) and a Prometheus scraping them with the role's jobs."""
    workdir.mkdir(parents=True, exist_ok=True)
    model_dir = tiny_model(workdir)
    pods = [
        PredictorPod(1, metric_aggregation=True, http_port=free_port(), absent_port=free_port()),
        PredictorPod(2, metric_aggregation=False, http_port=free_port(), absent_port=free_port()),
    ]
    targets_file = workdir / "kubernetes-pods.json"
    targets_file.write_text(json.dumps([target for pod in pods for target in kubernetes_sd_targets(pod)]))
    prometheus_port = free_port()
    config_file = workdir / "prometheus.yml"
    config_file.write_text(
        yaml.safe_dump(local_prometheus_config(targets_file, prometheus_port), sort_keys=False)
    )
    prometheus_url = f"http://127.0.0.1:{prometheus_port}"
    prometheus_argv = [
        prometheus_binary(),
        f"--config.file={config_file}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prometheus_port}",
    ]

    def ready(url: str):
        return lambda: requests.get(url, timeout=2).status_code == 200

    with contextlib.ExitStack() as stack:
        for pod in pods:
            stack.enter_context(
                running(
                    model_server_argv(model_dir, pod),
                    f"model server {pod.revision}",
                    ready(f"http://127.0.0.1:{pod.http_port}/v1/models/{MODEL}"),
                    workdir / f"{pod.revision}.log",
                    timeout=180,
                )
            )
        stack.enter_context(
            running(
                prometheus_argv, "prometheus", ready(f"{prometheus_url}/-/ready"), workdir / "prometheus.log"
            )
        )
        yield Stack(prometheus_url, pods, workdir)


def send_load(stack: Stack, seconds: float, concurrency: int = 4) -> dict[int, int]:
    """Inference traffic for `seconds` (bounded): v1 and v2 requests, plus a few refused ones (4xx).

    Returns how many answers each status code got.
    """
    session = requests.Session()
    valid = [
        ("v1", {"instances": TEXTS}),
        ("v1", {"sequence": TEXTS[0]}),
        ("v2", {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": TEXTS[:2]}]}),
    ]
    refused = ("v1", {"instances": "not a list"})  # 400: 2 requests in 10, one per revision

    def one(index: int) -> int:
        pod = stack.pods[index % len(stack.pods)]
        protocol, body = refused if index % 10 >= 8 else valid[(index // 2) % len(valid)]
        path = f"/v1/models/{MODEL}:predict" if protocol == "v1" else f"/v2/models/{MODEL}/infer"
        return session.post(stack.model_url(pod) + path, json=body, timeout=30).status_code

    codes: dict[int, int] = {}
    deadline = time.monotonic() + seconds
    index = 0
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        while time.monotonic() < deadline:
            for code in pool.map(one, range(index, index + concurrency * 4)):
                codes[code] = codes.get(code, 0) + 1
            index += concurrency * 4
    return codes


def stop_on_sigterm() -> None:
    """Let SIGTERM (e.g. from `timeout`) unwind the context managers, so no process is left behind."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def main() -> None:
    stop_on_sigterm()
    workdir = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/kserve-ansible-monitoring")
    with metrics_stack(workdir) as stack:
        print(f"prometheus: {stack.prometheus_url}", flush=True)
        print(f"answers: {send_load(stack, 20)}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main()
