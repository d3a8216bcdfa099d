#!/usr/bin/env bash
# Install a real Prometheus (server + promtool) for the monitoring tests, from Debian's packages.
# Debian bookworm ships Prometheus 2.42 (built without Kubernetes discovery, which the tests replace with
# file discovery). Idempotent: does nothing when `prometheus` and `promtool` are already on PATH.
set -euo pipefail
if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install_prometheus.sh: run as root (apt-get), or install Debian's 'prometheus' package yourself" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends prometheus
# The package enables a systemd service; the tests run their own Prometheus on a free port instead.
if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
  systemctl disable --now prometheus || true
fi
prometheus --version | head -1
