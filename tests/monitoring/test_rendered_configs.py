"""What the monitoring role renders: the objects and configuration files a playbook run applies.

Rendered with Ansible's own templating from the role's defaults and vars (tests/monitoring/role_render.py).
The Prometheus scrape jobs' behaviour is proven against a real Prometheus in test_dashboard_queries.py.
"""

from __future__ import annotations

import json

import yaml

from tests.monitoring.role_render import ROLE, render_manifests, render_template, variable

ALL_PIECES = (
    "prometheus.yaml.j2",
    "grafana.yaml.j2",
    "cloudevents-sink.yaml.j2",
    "loki.yaml.j2",
    "promtail.yaml.j2",
)
GRAFANA_CLOUD = {
    "monitoring_loki_url": "https://logs-prod-012.grafana.net/loki/api/v1/push",
    "monitoring_loki_username": "123456",
    "monitoring_loki_password": "glc_secret_token",
    "monitoring_remote_write_url": "https://prometheus-prod-01.grafana.net/api/prom/push",
    "monitoring_remote_write_username": "654321",
    "monitoring_remote_write_password": "glc_remote_write_token",
}


def config_checksum(deployment: dict) -> str:
    return deployment["spec"]["template"]["metadata"]["annotations"]["kserve-ansible/config-sha256"]


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [obj for obj in objects if obj["kind"] == kind]


def test_every_object_is_namespaced_in_the_monitoring_namespace_or_cluster_scoped_and_labelled():
    for template in ALL_PIECES:
        for obj in render_manifests(template, monitoring_namespace="obs"):
            if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
                assert obj["metadata"]["namespace"] == "obs", (template, obj["kind"])
            assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kserve-ansible"


def test_prometheus_runs_the_rendered_config_and_restarts_when_it_changes():
    objects = render_manifests("prometheus.yaml.j2")
    (config_map,) = by_kind(objects, "ConfigMap")
    config = yaml.safe_load(config_map["data"]["prometheus.yml"])
    assert [job["job_name"] for job in config["scrape_configs"]] == [
        "prometheus",
        "kserve-inferenceservices",
        "kserve-model-servers",
        "knative-serving",
        "kubernetes-cadvisor",
    ]
    (deployment,) = by_kind(objects, "Deployment")
    changed = by_kind(render_manifests("prometheus.yaml.j2", monitoring_scrape_interval="30s"), "Deployment")
    assert config_checksum(changed[0]) != config_checksum(deployment)


def rules_granted_to_each_service_account(objects: list[dict]) -> dict[str, list[dict]]:
    """The RBAC rules each ServiceAccount in `objects` gets from the (Cluster)RoleBindings in `objects`."""
    roles = {(obj["kind"], obj["metadata"]["name"]): obj["rules"] for obj in objects if "rules" in obj}
    granted: dict[str, list[dict]] = {
        account["metadata"]["name"]: [] for account in by_kind(objects, "ServiceAccount")
    }
    for binding in objects:
        if binding["kind"] in ("RoleBinding", "ClusterRoleBinding"):
            rules = roles[(binding["roleRef"]["kind"], binding["roleRef"]["name"])]
            for subject in binding["subjects"]:
                assert subject["kind"] == "ServiceAccount", binding["metadata"]["name"]
                granted[subject["name"]] += rules
    return granted


def rendered_rbac(**overrides) -> dict[str, list[dict]]:
    objects = [obj for template in ALL_PIECES for obj in render_manifests(template, **overrides)]
    assert {obj["kind"] for obj in objects} & {
        "Role",
        "RoleBinding",
    } == set()  # none today: cluster-wide only
    return rules_granted_to_each_service_account(objects)


POD_DISCOVERY = {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}


def test_each_service_account_holds_only_what_its_workload_uses():
    # Prometheus: pod discovery for the scrape jobs; node discovery and the kubelets' /metrics/cadvisor
    # (nodes/metrics) for the cAdvisor job. Promtail: pod discovery. Nothing reads Secrets, exec's or
    # proxies into pods (nodes/proxy would allow both) or scrapes the API server's /metrics.
    assert rendered_rbac() == {
        "prometheus": [
            POD_DISCOVERY,
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list", "watch"]},
            {"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]},
        ],
        "promtail": [POD_DISCOVERY],
    }


def test_without_the_cadvisor_job_prometheus_cannot_read_nodes():
    assert rendered_rbac(monitoring_scrape_cadvisor=False) == {
        "prometheus": [POD_DISCOVERY],
        "promtail": [POD_DISCOVERY],
    }


def test_prometheus_api_cannot_reload_stop_or_administer_it():
    # /-/reload and /-/quit (--web.enable-lifecycle) and the admin API are unauthenticated on port 9090:
    # anyone who reaches the Service could stop Prometheus. A new config restarts the pod (config-sha256).
    (deployment,) = by_kind(render_manifests("prometheus.yaml.j2"), "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert [arg for arg in container["args"] if arg.startswith("--web.")] == []


def test_knative_scraping_can_be_left_out():
    config = yaml.safe_load(render_template("prometheus-config.yaml.j2", monitoring_scrape_knative=False))
    assert "knative-serving" not in [job["job_name"] for job in config["scrape_configs"]]


def test_an_existing_prometheus_gets_the_same_jobs_as_a_scrape_config_secret():
    mode = {"monitoring_prometheus_mode": "scrape_config"}
    (secret,) = render_manifests("scrape-config-secret.yaml.j2", **mode)
    jobs = yaml.safe_load(secret["stringData"]["kserve-scrape-configs.yaml"])
    assert jobs == variable("monitoring_scrape_jobs", **mode)
    assert "kubernetes-cadvisor" not in [job["job_name"] for job in jobs]  # the existing stack has its own


def test_an_operator_managed_prometheus_gets_the_same_relabel_rules_as_pod_monitors():
    camel = {"source_labels": "sourceLabels", "target_label": "targetLabel"}
    mode = {"monitoring_prometheus_mode": "pod_monitor"}
    monitors = render_manifests(
        "pod-monitors.yaml.j2", monitoring_pod_monitor_labels={"release": "kps"}, **mode
    )
    jobs = variable("monitoring_scrape_jobs", **mode)
    assert [monitor["metadata"]["name"] for monitor in monitors] == [job["job_name"] for job in jobs]
    for monitor, job in zip(monitors, jobs, strict=True):
        assert monitor["metadata"]["labels"]["release"] == "kps"
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        rules = job["relabel_configs"]
        assert endpoint["relabelings"] == [
            {camel.get(key, key): value for key, value in rule.items()} for rule in rules
        ]
    assert monitors[0]["spec"]["namespaceSelector"] == {"any": True}
    assert monitors[-1]["spec"]["namespaceSelector"] == {"matchNames": ["knative-serving"]}


def test_grafana_provisions_prometheus_loki_and_the_kserve_dashboard():
    objects = render_manifests("grafana.yaml.j2")
    provisioning = next(obj for obj in objects if obj["metadata"]["name"] == "grafana-provisioning")
    datasources = yaml.safe_load(provisioning["data"]["datasources.yaml"])["datasources"]
    assert [(source["uid"], source["url"]) for source in datasources] == [
        ("prometheus", "http://prometheus.kserve-monitoring.svc:9090"),
        ("loki", "http://loki.kserve-monitoring.svc:3100"),
    ]
    dashboards = next(obj for obj in objects if obj["metadata"]["name"] == "grafana-dashboards-kserve")
    dashboard = json.loads(dashboards["data"]["kserve-models.json"])
    assert dashboard["uid"] == "kserve-ansible-models"
    assert dashboard == json.loads((ROLE / "files" / "dashboards" / "kserve-models.json").read_text())


def test_grafana_cloud_credentials_only_travel_in_secrets():
    admin = {"_monitoring_grafana_admin_password": "admin-pw"}
    secrets = render_manifests("secrets.yaml.j2", **admin, **GRAFANA_CLOUD)
    assert sorted(secret["metadata"]["name"] for secret in secrets) == [
        "grafana-admin",
        "prometheus-remote-write",
        "promtail-loki",
    ]
    others = "".join(render_template(template, **GRAFANA_CLOUD) for template in ALL_PIECES)
    for secret_value in ("glc_secret_token", "glc_remote_write_token", "admin-pw"):
        assert secret_value not in others

    promtail = yaml.safe_load(render_template("promtail-config.yaml.j2", **GRAFANA_CLOUD))
    assert promtail["clients"] == [
        {
            "url": GRAFANA_CLOUD["monitoring_loki_url"],
            "basic_auth": {"username": "123456", "password_file": "/etc/promtail-secrets/password"},
        }
    ]
    prometheus = yaml.safe_load(render_template("prometheus-config.yaml.j2", **GRAFANA_CLOUD))
    assert prometheus["remote_write"][0]["basic_auth"]["password_file"] == (
        "/etc/prometheus-secrets/remote-write-password"
    )
    grafana = render_manifests("grafana.yaml.j2", **GRAFANA_CLOUD)
    datasources = yaml.safe_load(grafana[0]["data"]["datasources.yaml"])["datasources"]
    assert datasources[1]["url"] == "https://logs-prod-012.grafana.net"
    assert datasources[1]["secureJsonData"] == {"basicAuthPassword": "$__env{LOKI_PASSWORD}"}


def test_promtail_parses_the_sink_pods_lines_as_cloudevents():
    config = yaml.safe_load(render_template("promtail-config.yaml.j2"))
    (job,) = config["scrape_configs"]
    match = next(stage["match"] for stage in job["pipeline_stages"] if "match" in stage)
    assert match["selector"] == '{app="kserve-logger-sink", namespace="kserve-monitoring"}'
    json_stage = next(stage["json"] for stage in match["stages"] if "json" in stage)
    assert json_stage["expressions"]["ce_type"] == "type"
    assert json_stage["expressions"]["ce_inferenceservice"] == "inferenceservicename"
    # The sink's pods carry the label the selector's `app` comes from.
    sink = by_kind(render_manifests("cloudevents-sink.yaml.j2"), "Deployment")[0]
    assert sink["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "kserve-logger-sink"
    app_rule = next(rule for rule in job["relabel_configs"] if rule.get("target_label") == "app")
    assert app_rule["source_labels"][0] == "__meta_kubernetes_pod_label_app_kubernetes_io_name"
    assert config["clients"] == [{"url": "http://loki.kserve-monitoring.svc:3100/loki/api/v1/push"}]


def test_the_sink_pod_runs_the_script_this_repository_tests():
    config_map, deployment, service = render_manifests("cloudevents-sink.yaml.j2")
    assert config_map["data"]["cloudevents_sink.py"] == (ROLE / "files" / "cloudevents_sink.py").read_text()
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == [
        "python",
        "-u",
        "/app/cloudevents_sink.py",
        "--port",
        "8080",
        "--workers",
        "8",
        "--max-body-bytes",
        "4194304",
        "--file",
        "/data/events.jsonl",
        "--file-max-bytes",
        "104857600",
        "--file-keep",
        "2",
    ]
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]


def test_the_sink_pod_has_room_for_its_limits():
    def sink_pod(**overrides):
        deployment = by_kind(render_manifests("cloudevents-sink.yaml.j2", **overrides), "Deployment")[0]
        return deployment["spec"]["template"]["spec"]

    def memory_and_disk(pod):
        (container,) = pod["containers"]
        data = next(volume for volume in pod["volumes"] if volume["name"] == "data")
        return container["resources"]["limits"]["memory"], data["emptyDir"].get("sizeLimit")

    # 8 workers at 4 MiB bodies peak at 183 MiB (JSON of empty objects); 3 files of 100 MiB and a spare.
    assert memory_and_disk(sink_pod()) == ("256Mi", "400Mi")
    bigger = sink_pod(
        monitoring_cloudevents_sink_max_body_bytes="16777216",  # -e gives strings
        monitoring_cloudevents_sink_file_max_bytes="10485760",
        monitoring_cloudevents_sink_file_keep="5",
    )
    assert memory_and_disk(bigger) == ("832Mi", "70Mi")
    assert memory_and_disk(sink_pod(monitoring_cloudevents_sink_file="")) == ("256Mi", None)


def test_pieces_follow_their_switches():
    assert variable("_monitoring_pieces") == {
        "prometheus": True,
        "scrape_config": False,
        "pod_monitors": False,
        "grafana": True,
        "cloudevents_sink": True,
        "loki": True,
        "promtail": True,
    }
    external = variable(
        "_monitoring_pieces", monitoring_prometheus_mode="pod_monitor", monitoring_logs_enabled=False
    )
    assert [name for name, wanted in external.items() if wanted] == ["pod_monitors", "grafana"]
    from_command_line = variable("_monitoring_pieces", monitoring_logs_enabled="false")  # -e gives strings
    assert not from_command_line["loki"] and not from_command_line["promtail"]
    cloud = variable("_monitoring_pieces", **GRAFANA_CLOUD)
    assert cloud["promtail"] and not cloud["loki"]
