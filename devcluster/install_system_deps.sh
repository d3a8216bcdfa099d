#!/usr/bin/env bash
# What the local cluster needs from Debian's packages: nftables (`nft`, which kube-proxy's nftables mode runs)
# and iproute2 (`ip`: network namespaces, veth, bridges). Root is needed anyway (network namespaces).
# Idempotent: does nothing when both commands are there.
set -euo pipefail
if command -v nft >/dev/null && command -v ip >/dev/null; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install_system_deps.sh: run as root (apt-get), or install Debian's 'nftables' and 'iproute2' yourself" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends nftables iproute2
