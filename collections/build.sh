#!/usr/bin/env bash
# Build the installable collection kserve_ansible.serving from the in-repo view
# (collections/ansible_collections/kserve_ansible/serving), links resolved, into build/:
#   build/ansible_collections/kserve_ansible/serving/   the staged collection (what ansible-test sanity checks)
#   build/kserve_ansible-serving-<version>.tar.gz       the tarball for `ansible-galaxy collection install`
# Nothing is committed twice: the staging copy is made fresh on every build and is git-ignored.
# Usage: bash collections/build.sh [OUTPUT_DIR]   (default: build/ at the top of the repository)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source_dir=$root/collections/ansible_collections/kserve_ansible/serving
out=$(mkdir -p "${1:-$root/build}" && cd "${1:-$root/build}" && pwd)
stage=$out/ansible_collections/kserve_ansible/serving

rm -rf "$stage"
mkdir -p "$(dirname "$stage")"
cp -rL "$source_dir" "$stage"
find "$stage" -depth \( -name __pycache__ -o -name .pytest_cache \) -exec rm -rf {} +
find "$stage" -name '*.py[co]' -delete

ansible-galaxy collection build --force --output-path "$out" "$stage" >/dev/null
version=$(sed -n 's/^version: *//p' "$stage/galaxy.yml")
echo "$out/kserve_ansible-serving-$version.tar.gz"
