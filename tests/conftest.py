"""Shared pytest set-up.

`module_utils/` is put on `ansible.module_utils`' package path, so tests import our shared code exactly as
Ansible does at run time (`ansible.module_utils.kserve_ansible...`), with no copy and no mock.
"""

import pathlib

import ansible.module_utils

ROOT = pathlib.Path(__file__).resolve().parent.parent
_MODULE_UTILS = str(ROOT / "module_utils")
if _MODULE_UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_MODULE_UTILS)

pytest_plugins = ["tests.localcluster.pytest_plugin"]
