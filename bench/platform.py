"""Benchmark: converging the platform (cert-manager, Istio, Knative + net-istio, KServe) with our roles vs
`kubectl apply --server-side` of the same release files on the same cluster, and the no-op re-run.

    python -m bench.platform [--kubeconfig PATH] [--mirror DIR] [--rounds N] [--json OUT]

Without --kubeconfig the local control plane is started (`python -m devcluster up`). Each round
starts from a cluster without the platform (uninstalled with our roles, not timed) and times:

- kubectl:   the seed's commands with --server-side, plus the waits the roles do (CRDs Established before
             their custom resources, `kubectl wait` for every Deployment Available);
- roles:     `ansible-playbook site.yml --tags cert_manager,istio,knative,kserve` (first converge);
- no-op:     the same playbook again (nothing to change).

Targets: roles <= 1.5 x kubectl; no-op <= 0.5 x roles. Not a test: numbers depend on the machine.
"""

import argparse
import json
import os
import pathlib
import statistics
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "collections"))  # the in-repo collection, as pytest's pythonpath has it

from ansible_collections.kserve_ansible.serving.plugins.module_utils.releases import mirror_path

from bench.common import BIN, TOOLS, run, timed
from tests.upstream import UPSTREAM_DIR, role_default

COMPONENTS = ["cert_manager", "istio", "knative", "kserve"]
STATE_VARS = ["kserve_state", "knative_state", "istio_state", "cert_manager_state"]

# The seed's install, file by file, at the roles' default releases: (component, its version variable, file,
# namespace whose Deployments must be Available).
KUBECTL_STEPS = [
    ("cert-manager", "cert_manager_version", "cert-manager.yaml", "cert-manager"),
    ("net-istio", "istio_version", "istio.yaml", "istio-system"),
    ("knative-serving", "knative_version", "serving-crds.yaml", None),
    ("knative-serving", "knative_version", "serving-core.yaml", "knative-serving"),
    ("net-istio", "knative_version", "net-istio.yaml", "knative-serving"),
    ("kserve", "kserve_version", "kserve.yaml", "kserve"),
    ("kserve", "kserve_version", "kserve-cluster-resources.yaml", None),
]


class Bench:
    def __init__(self, kubeconfig, mirror, domain):
        self.kubeconfig, self.mirror, self.domain = kubeconfig, mirror, domain
        self.env = {
            **os.environ,
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "PATH": f"{BIN}:{TOOLS}:{os.environ['PATH']}",
        }

    def playbook(self, *extra):
        return run(
            [
                BIN / "ansible-playbook",
                "site.yml",
                "--tags",
                ",".join(COMPONENTS),
                "-e",
                f"kserve_ansible_kubeconfig={self.kubeconfig}",
                "-e",
                f"kserve_ansible_mirror_dir={self.mirror}",
                "-e",
                f"knative_domain={self.domain}",
                *extra,
            ],
            cwd=ROOT,
            env=self.env,
        )

    def uninstall(self):
        for component, state in zip(reversed(COMPONENTS), STATE_VARS, strict=True):
            run(
                [
                    BIN / "ansible-playbook",
                    f"playbooks/{component}.yml",
                    "-e",
                    f"{state}=absent",
                    "-e",
                    f"kserve_ansible_kubeconfig={self.kubeconfig}",
                    "-e",
                    f"kserve_ansible_mirror_dir={self.mirror}",
                ],
                cwd=ROOT,
                env=self.env,
            )

    def kubectl(self, *args):
        return run([TOOLS / "kubectl", f"--kubeconfig={self.kubeconfig}", *args], env=self.env)

    def kubectl_install(self):
        for component, version_variable, name, namespace in KUBECTL_STEPS:
            path = self.mirror / mirror_path("", component, role_default(version_variable), name)
            self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
            self.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=300s")
            if namespace:
                self.kubectl(
                    "wait",
                    "--for=condition=Available",
                    "deployment",
                    "--all",
                    "-n",
                    namespace,
                    "--timeout=300s",
                )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", help="cluster to use (default: start the local control plane)")
    parser.add_argument("--mirror", default=UPSTREAM_DIR, type=pathlib.Path)
    parser.add_argument("--domain", default="127.0.0.1.sslip.io")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", type=pathlib.Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    kubeconfig = args.kubeconfig or run([BIN / "python", "-m", "devcluster", "up"], cwd=ROOT).stdout.strip()
    bench = Bench(kubeconfig.splitlines()[-1], args.mirror, args.domain)

    samples = {"kubectl": [], "roles": [], "noop": []}
    for round_number in range(1, args.rounds + 1):
        bench.uninstall()
        samples["kubectl"].append(timed(bench.kubectl_install))
        bench.uninstall()
        samples["roles"].append(timed(bench.playbook))
        samples["noop"].append(timed(bench.playbook))
        print(
            f"round {round_number}: kubectl {samples['kubectl'][-1]:.1f}s, "
            f"roles {samples['roles'][-1]:.1f}s, no-op {samples['noop'][-1]:.1f}s",
            flush=True,
        )
    medians = {name: statistics.median(values) for name, values in samples.items()}
    report = {
        "seconds": medians,
        "samples": samples,
        "roles_vs_kubectl": medians["roles"] / medians["kubectl"],
        "noop_vs_roles": medians["noop"] / medians["roles"],
        "targets": {"roles_vs_kubectl": 1.5, "noop_vs_roles": 0.5},
    }
    print(
        f"first converge: roles {medians['roles']:.1f}s vs kubectl {medians['kubectl']:.1f}s "
        f"= {report['roles_vs_kubectl']:.2f}x (target <= 1.5x)\n"
        f"no-op re-run:   {medians['noop']:.1f}s = {report['noop_vs_roles']:.2f}x of the first converge "
        "(target <= 0.5x)"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
