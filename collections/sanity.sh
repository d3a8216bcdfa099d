#!/usr/bin/env bash
# `ansible-test sanity` on the collection as it is shipped: build it (collections/build.sh), then test the
# staged copy in build/ansible_collections/kserve_ansible/serving with kubernetes.core (our dependency,
# from the venv's `ansible` package) beside it, each sanity test in its own virtual environment.
# Usage: bash collections/sanity.sh [ansible-test sanity options, e.g. --test validate-modules]
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON_VERSION:-3.11}
out=$root/build
bash "$root/collections/build.sh" "$out" >/dev/null
stage=$out/ansible_collections/kserve_ansible/serving

# Dependencies must sit in the same collection root for ansible-test.
core=$(ansible-galaxy collection list kubernetes.core --format json |
    python -c 'import json, sys; print(next(f"{path}/kubernetes/core" for path in json.load(sys.stdin)))')
rm -rf "$out/ansible_collections/kubernetes"
mkdir -p "$out/ansible_collections/kubernetes"
cp -r "$core" "$out/ansible_collections/kubernetes/core"

# ansible-test bootstraps pip in its virtual environments with a script from a host we cannot reach.
pip_version=$(python - <<'PY'
import re, pathlib, ansible_test
source = pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
print(re.search(r"pip='([0-9.]+)'", source.read_text()).group(1))
PY
)
cache=$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py
if [ ! -s "$cache" ] || grep -q "^Stand-in for the pip bootstrap" "$cache"; then  # never replace a real get-pip
    mkdir -p "$(dirname "$cache")"
    cp "$root/collections/get_pip.py" "$cache"
fi

cd "$stage"
# ANSIBLE_TEST_CONTENT_ROOT: take the staged files as they are, not the (ignoring) git repository around them.
ANSIBLE_TEST_CONTENT_ROOT=$stage exec ansible-test sanity --venv --requirements --python "$python" --color no "$@"
