"""Benchmark: the models role's cost over many InferenceServices (issue #21): 10 vs 100, first run and no-op.

    python -m bench.many_models [--kubeconfig PATH] [--sizes 10,100] [--repo DIR] [--json OUT]

Without --kubeconfig the local control plane is started in $KSA_CLUSTER_DIR (`python -m devcluster up`) and
the platform converged with the roles (not timed). For each size N, in a namespace of its own
(PREFIX-N, default bench-many-N), it times:

- first:  `ansible-playbook site.yml --tags models` serving N Hugging Face InferenceServices (small requests;
          their runtime image has no program here, so kwok plays their pods and the real Knative and KServe
          controllers make them Ready), waiting until every one is Ready;
- no-op:  the same playbook again (must report changed=0).

Targets: first(100) <= 3 x first(10); no-op(100) <= 15 s. Each run's slowest tasks (profile_tasks) are
printed. --repo runs the playbooks of another checkout (e.g. a `git worktree` of an older commit) against
the same cluster, to measure before/after in one session. Not a test: numbers depend on the machine.
"""

import argparse
import json
import os
import pathlib
import re
import sys
import tempfile
import time

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "collections"))  # the in-repo collection, as pytest's pythonpath has it

from bench.common import BIN, TOOLS, load_average, run
from devcluster.paths import local_playbook_args
from tests.helpers import hf_entry
from tests.upstream import UPSTREAM_DIR

PLATFORM_TAGS = "cert_manager,istio,knative,kserve"
WAIT_TASK = "models : Wait for the InferenceServices to be Ready (one watch per namespace)"
# profile_tasks pads with dashes, none left for a long name with a 4-digit time: "NAME  1190.45s"
TASK_LINE = re.compile(r"^(.*\S)\s+-*\s*(\d+\.\d+)s$")


def entries(count):
    """N Hugging Face InferenceServices with requests small enough for 100 on the local cluster's nodes."""
    return [hf_entry(index) for index in range(count)]


def recap_changed(output):
    match = re.search(r"changed=(\d+)", output.rsplit("PLAY RECAP", 1)[-1])
    return int(match.group(1)) if match else -1


def slowest_tasks(output, count=5):
    """The profile_tasks lines at the end of the output: (task, seconds), slowest first."""
    tail = output.rsplit("=" * 79, 1)[-1]
    found = [
        (m.group(1).rstrip(" -"), float(m.group(2))) for m in map(TASK_LINE.match, tail.splitlines()) if m
    ]
    return sorted(found, key=lambda item: -item[1])[:count]


class Bench:
    def __init__(self, repo, cluster_dir, workdir, prefix="bench-many"):
        self.repo, self.workdir, self.prefix = repo, workdir, prefix
        self.env = {
            **os.environ,
            "ANSIBLE_CONFIG": str(repo / "ansible.cfg"),
            "KSA_CLUSTER_DIR": str(cluster_dir),
            "PATH": f"{BIN}:{TOOLS}:{os.environ['PATH']}",
        }

    def playbook(self, tags, *extra):
        args = local_playbook_args("site.yml", *extra, mirror=UPSTREAM_DIR, tags=tags)
        return run([BIN / "ansible-playbook", *args], cwd=self.repo, env=self.env)

    def models(self, count):
        path = self.workdir / f"models-{count}.yml"
        path.write_text(
            yaml.safe_dump(
                {"models_namespace": f"{self.prefix}-{count}", "models_inference_services": entries(count)}
            )
        )
        start = time.monotonic()
        # The wait is bound by how fast the controllers reconcile, which the run reports (its slowest tasks).
        result = self.playbook("models", "-e", f"@{path}", "-e", "models_wait_timeout=3600")
        return time.monotonic() - start, result.stdout


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster-dir", type=pathlib.Path, help="default: $KSA_CLUSTER_DIR")
    parser.add_argument("--sizes", default="10,100")
    parser.add_argument("--repo", type=pathlib.Path, default=ROOT, help="checkout whose playbooks run")
    parser.add_argument("--no-platform", action="store_true", help="the platform is converged already")
    parser.add_argument("--prefix", default="bench-many", help="namespaces PREFIX-N (a fresh one: first run)")
    parser.add_argument("--json", type=pathlib.Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    cluster_dir = args.cluster_dir or pathlib.Path(os.environ["KSA_CLUSTER_DIR"])
    env = {**os.environ, "KSA_CLUSTER_DIR": str(cluster_dir)}
    run([BIN / "python", "-m", "devcluster", "up"], cwd=ROOT, env=env)
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(args.repo.resolve(), cluster_dir, pathlib.Path(tmp), args.prefix)
        if not args.no_platform:
            bench.playbook(PLATFORM_TAGS)
        rows = []
        for count in (int(size) for size in args.sizes.split(",")):
            before = load_average()
            first, first_out = bench.models(count)
            noop, noop_out = bench.models(count)
            row = {
                "count": count,
                "first_s": round(first, 1),
                "noop_s": round(noop, 1),
                "noop_changed": recap_changed(noop_out),
                "load_before": before,
                "load_after": load_average(),
                "first_wait_s": dict(slowest_tasks(first_out, 100)).get(WAIT_TASK),
                "first_slowest": slowest_tasks(first_out),
                "noop_slowest": slowest_tasks(noop_out),
            }
            rows.append(row)
            print(
                f"{count} InferenceServices: first {first:.1f} s (of which the wait for Ready "
                f"{row['first_wait_s']} s), no-op {noop:.1f} s "
                f"(changed={row['noop_changed']}); load average {before} -> {row['load_after']}",
                flush=True,
            )
            for label in ("first", "noop"):
                for task, seconds in row[f"{label}_slowest"]:
                    print(f"    {label}: {seconds:6.1f} s  {task}", flush=True)
    print(
        "\n| InferenceServices | first run | its wait for Ready | no-op run (changed) "
        "| load average before -> after |"
    )
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['count']} | {row['first_s']} s | {row['first_wait_s']} s "
            f"| {row['noop_s']} s ({row['noop_changed']}) "
            f"| {row['load_before']} -> {row['load_after']} |"
        )
    if len(rows) >= 2:
        small, large = rows[0], rows[-1]
        ratio = large["first_s"] / small["first_s"]
        print(
            f"\nfirst({large['count']}) / first({small['count']}) = {ratio:.2f}x "
            f"(target <= 3x); no-op({large['count']}) = {large['noop_s']} s (target <= 15 s)"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
