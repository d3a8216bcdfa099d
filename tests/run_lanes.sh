#!/usr/bin/env bash
# make test's pytest and molecule in two lanes at once: the cluster tests mostly wait on controllers, so on
# 2 cores the rest runs beside them.
#   lane "session cluster": the tests on the session's local cluster, in CLUSTER_MODULE_ORDER
#     (tests/cluster_plugin.py); its output streams here.
#   lane "own clusters": the tests that need no cluster or start their own private ones (marker
#     private_cluster), then the site molecule scenario (its own cluster too); its output goes to a log,
#     printed here when the lane ends.
# The run fails when either lane fails.
set -uo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d "${TMPDIR:-/tmp}/ksa-test-lanes-XXXXXX")
other_log="$work/own-clusters.log"

(
  pytest -q -m "not cluster or private_cluster" --basetemp="$work/own-clusters" &&
    molecule --base-config .config/molecule/config.yml test -s site
) >"$other_log" 2>&1 &
other=$!

echo "== lane 'session cluster' (lane 'own clusters' writes to $other_log)"
pytest -q -m "cluster and not private_cluster" --basetemp="$work/session-cluster"
session=$?

wait "$other"
own=$?
echo "== lane 'own clusters' (exit $own):"
cat "$other_log"
echo "== lanes: session cluster exit $session, own clusters exit $own"
[ "$session" -eq 0 ] && [ "$own" -eq 0 ]
