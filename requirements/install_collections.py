"""Install the collections that requirements.yml lists from PyPI, for machines that cannot reach Galaxy.

The `ansible` package on PyPI bundles about 100 collections (some 470 MB installed); the playbooks need only
the few that requirements.yml lists. This downloads the `ansible` wheel pinned with its hash in
requirements/collections.txt (pip checks the hash; the wheel is never installed), checks that each listed
collection's version meets its range in requirements.yml, and copies just those collections into
DEST/ansible_collections. DEST defaults to this interpreter's site-packages, where ansible-core finds
collections just as it finds the `ansible` package's.

    python requirements/install_collections.py [--path DEST]

With Galaxy: `ansible-galaxy collection install -r requirements.yml` installs the same collections.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from pathlib import Path

import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "collections.txt"
REQUIREMENTS = HERE.parent / "requirements.yml"


def wanted(requirements_file=REQUIREMENTS):
    """[(namespace.name, SpecifierSet)] from requirements.yml."""
    data = yaml.safe_load(Path(requirements_file).read_text())
    result = []
    for entry in data["collections"]:
        entry = {"name": entry} if isinstance(entry, str) else entry
        version = str(entry.get("version", "*")).strip()
        result.append((entry["name"], SpecifierSet("" if version == "*" else version)))
    return result


def download(dest_dir):
    """The pinned, hash-checked `ansible` wheel, downloaded (or taken from pip's cache) into dest_dir."""
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
    subprocess.run([*pip, "--require-hashes", "-r", str(SOURCE), "-d", str(dest_dir)], check=True)
    (wheel,) = Path(dest_dir).glob("ansible-*.whl")
    return wheel


def installed_version(collection_dir):
    manifest = collection_dir / "MANIFEST.json"
    if not manifest.is_file():
        return None
    return json.loads(manifest.read_text())["collection_info"]["version"]


def install(wheel, collections, dest):
    """Copy each collection out of the wheel into dest/ansible_collections; [(name, version, action)]."""
    done = []
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        for name, spec in collections:
            prefix = "ansible_collections/{}/{}/".format(*name.split("."))
            members = [member for member in names if member.startswith(prefix) and not member.endswith("/")]
            if prefix + "MANIFEST.json" not in members:
                raise SystemExit(f"{wheel.name} does not ship the collection {name}")
            version = json.loads(archive.read(prefix + "MANIFEST.json"))["collection_info"]["version"]
            if Version(version) not in spec:
                raise SystemExit(
                    f"{wheel.name} ships {name} {version}, requirements.yml wants {spec}: "
                    f"pin another `ansible` in {SOURCE.name}"
                )
            target = dest / prefix
            if installed_version(target) == version:
                done.append((name, version, "already installed"))
                continue
            shutil.rmtree(target, ignore_errors=True)
            for member in members:
                relative = Path(member).relative_to(prefix)
                if ".." in relative.parts:
                    raise SystemExit(f"{wheel.name}: unexpected path {member}")
                path = target / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(archive.read(member))
            done.append((name, version, "installed"))
    return done


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--path",
        type=Path,
        default=Path(sysconfig.get_paths()["purelib"]),
        help="install into PATH/ansible_collections (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        results = install(download(tmp), wanted(), args.path)
    for name, version, action in results:
        print(f"{name} {version}: {action} in {args.path / 'ansible_collections'}")


if __name__ == "__main__":
    main()
