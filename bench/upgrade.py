"""Benchmark: upgrading KServe with playbooks/upgrade.yml vs the same steps by hand with
`kubectl apply --server-side` and waits, on the same cluster, with the guide's InferenceServices served.

    python -m bench.upgrade [--kubeconfig PATH] [--mirror DIR] [--source 0.14.1] [--target 0.15.2]
                            [--rounds N] [--json OUT]

Without --kubeconfig the local control plane is started (`python -m devcluster up`) and the platform and
models converged at --source (`site.yml -e @inventory/local-cluster.yml`, not timed). Each round starts at
--source, not timed: KServe converged at --source and the models deleted and served again (going back with
`playbooks/upgrade.yml` does not work: the older controller cannot update the Knative Services a newer one
made, see docs/troubleshooting.md), then it times:

- kubectl:  the same steps by hand: `kubectl apply --server-side` of the target's kserve.yaml (as field
            manager kserve-ansible, so both paths own the same fields), `kubectl wait` for the CRDs
            Established and `kubectl rollout status` of the controller, then kserve-cluster-resources.yaml
            (retried while the webhook does not answer yet), `kubectl rollout restart` of the controller
            (KServe does not watch runtimes), polling until each --restarted InferenceService has a new
            revision, then `kubectl wait` for every InferenceService Ready;
- playbook: `ansible-playbook playbooks/upgrade.yml -e kserve_version=TARGET` (preview, upgrade, webhook
            check, readiness waits and the smoke tests).

Not a test: numbers depend on the machine.
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "collections"))  # the in-repo collection, as pytest's pythonpath has it

from ansible_collections.kserve_ansible.serving.plugins.module_utils.releases import mirror_path

from bench.common import BIN, TOOLS, run, timed
from devcluster.paths import local_playbook_args
from tests.upstream import UPSTREAM_DIR


class Bench:
    def __init__(self, kubeconfig, mirror, local):
        self.kubeconfig, self.mirror, self.local = kubeconfig, mirror, local
        self.env = {
            **os.environ,
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "PATH": f"{BIN}:{TOOLS}:{os.environ['PATH']}",
        }

    def playbook(self, path, *extra):
        connection = ["-e", f"kserve_ansible_kubeconfig={self.kubeconfig}", *extra]
        if self.local:
            args = local_playbook_args(path, *connection, mirror=self.mirror)
        else:
            args = [path, "-e", f"kserve_ansible_mirror_dir={self.mirror}", *connection]
        return run([BIN / "ansible-playbook", *args], cwd=ROOT, env=self.env)

    def upgrade(self, version):
        self.playbook("playbooks/upgrade.yml", "-e", f"kserve_version={version}")

    def reset(self, version):
        """KServe at `version` and the models made again by its controller."""
        pin = f"kserve_version={version}"
        self.playbook("site.yml", "--tags", "kserve", "-e", pin)
        self.delete_runtimes_not_in(version)
        self.playbook("site.yml", "--tags", "models", "-e", pin, "-e", "models_state=absent")
        self.playbook("site.yml", "--tags", "models", "-e", pin)

    def delete_runtimes_not_in(self, version):
        """Converging an older KServe leaves the runtimes only a newer release ships (the kserve role applies
        its release's set and prunes nothing else); the older controller would then pick one for the
        Hugging Face model (0.15.2's kserve-huggingfaceserver-multinode, which Knative's webhook rejects)."""
        release = self.mirror / mirror_path("", "kserve", version) / "kserve-cluster-resources.yaml"
        shipped = {
            doc["metadata"]["name"]
            for doc in yaml.safe_load_all(release.read_text())
            if doc and doc["kind"] == "ClusterServingRuntime"
        }
        live = self.kubectl("get", "clusterservingruntimes", "-o", "name").stdout.split()
        extra = [name for name in live if name.split("/", 1)[1] not in shipped]
        if extra:
            self.kubectl("delete", *extra)

    def kubectl(self, *args):
        return run([TOOLS / "kubectl", f"--kubeconfig={self.kubeconfig}", *args], env=self.env)

    def kubectl_upgrade(self, version, restarted):
        before = {name: self.revision(name) for name in restarted}
        release = self.mirror / mirror_path("", "kserve", version)
        apply = ["apply", "--server-side", "--force-conflicts", "--field-manager=kserve-ansible", "-f"]
        self.kubectl(*apply, str(release / "kserve.yaml"))
        self.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=300s")
        self.kubectl(
            "rollout", "status", "deployment/kserve-controller-manager", "-n", "kserve", "--timeout=300s"
        )
        deadline = time.monotonic() + 300
        while True:  # the webhook validates ClusterServingRuntimes and may not answer yet
            result = subprocess.run(
                [
                    TOOLS / "kubectl",
                    f"--kubeconfig={self.kubeconfig}",
                    *apply,
                    str(release / "kserve-cluster-resources.yaml"),
                ],
                capture_output=True,
                text=True,
                env=self.env,
                check=False,
            )
            if result.returncode == 0:
                break
            if "failed calling webhook" not in result.stderr or time.monotonic() > deadline:
                raise SystemExit(f"kubectl apply of the runtimes failed:\n{result.stderr[-3000:]}")
            time.sleep(1)
        self.kubectl("rollout", "restart", "deployment/kserve-controller-manager", "-n", "kserve")
        self.kubectl(
            "rollout", "status", "deployment/kserve-controller-manager", "-n", "kserve", "--timeout=300s"
        )
        for name, revision in before.items():
            while self.revision(name) == revision:
                if time.monotonic() > deadline + 300:
                    raise SystemExit(f"{name} got no new revision")
                time.sleep(1)
        self.kubectl("wait", "--for=condition=Ready", "inferenceservice", "--all", "-A", "--timeout=600s")

    def revision(self, name):
        namespace, name = name.split("/")
        path = "jsonpath={.status.components.predictor.latestCreatedRevision}"
        return self.kubectl("get", "inferenceservice", name, "-n", namespace, "-o", path).stdout.strip()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", help="cluster to use (default: the local control plane, converged)")
    parser.add_argument("--mirror", default=UPSTREAM_DIR, type=pathlib.Path)
    parser.add_argument("--source", default="0.14.1")
    parser.add_argument("--target", default="0.15.2")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--restarted",
        action="append",
        default=None,
        help="NAMESPACE/NAME of an InferenceService that gets a new revision (by hand, you wait for it)",
    )
    parser.add_argument("--json", type=pathlib.Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    local = not args.kubeconfig
    kubeconfig = args.kubeconfig or run([BIN / "python", "-m", "devcluster", "up"], cwd=ROOT).stdout.strip()
    bench = Bench(kubeconfig.splitlines()[-1], args.mirror, local)
    if local:
        tags = "cert_manager,istio,knative,kserve,models"
        bench.playbook("site.yml", "--tags", tags, "-e", f"kserve_version={args.source}")

    samples = {"kubectl": [], "playbook": []}
    restarted = args.restarted or ["kserve-test/huggingface-distilbert"]
    for round_number in range(1, args.rounds + 1):
        bench.reset(args.source)
        samples["kubectl"].append(timed(lambda: bench.kubectl_upgrade(args.target, restarted)))
        bench.reset(args.source)
        samples["playbook"].append(timed(lambda: bench.upgrade(args.target)))
        print(
            f"round {round_number}: kubectl {samples['kubectl'][-1]:.1f}s, "
            f"playbook {samples['playbook'][-1]:.1f}s",
            flush=True,
        )
    bench.reset(args.source)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    report = {
        "upgrade": f"{args.source} -> {args.target}",
        "seconds": medians,
        "samples": samples,
        "playbook_vs_kubectl": medians["playbook"] / medians["kubectl"],
    }
    print(
        f"upgrade {args.source} -> {args.target}: playbook {medians['playbook']:.1f}s vs kubectl "
        f"{medians['kubectl']:.1f}s = {report['playbook_vs_kubectl']:.2f}x"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
