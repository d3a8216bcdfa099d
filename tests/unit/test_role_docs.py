"""Role pages in docs/roles/ say what the roles accept: generated from argument specs, kept in sync."""

import pytest

from docs import gen_role_docs as gen

PLATFORM_ROLES = ["preflight", "cert_manager", "istio", "knative", "kserve"]


@pytest.mark.parametrize("role", gen.roles())
def test_argument_specs_and_defaults_agree(role):
    spec, defaults = gen.load_role(gen.ROLES / role)
    assert gen.sync_problems(role, spec, defaults) == []


@pytest.mark.parametrize("role", gen.roles())
def test_role_page_is_up_to_date(role):
    pages, _ = gen.expected_pages([role])
    [(path, text)] = pages.items()
    if role not in PLATFORM_ROLES and not path.is_file():
        pytest.skip(f"no page for {role} yet: python docs/gen_role_docs.py {role}")
    assert path.is_file(), f"{path} missing: run python docs/gen_role_docs.py"
    assert path.read_text() == text, f"{path} is stale: run python docs/gen_role_docs.py"


def test_every_variable_is_on_the_page():
    for role in PLATFORM_ROLES:
        spec, _ = gen.load_role(gen.ROLES / role)
        page = (gen.PAGES / f"{role}.md").read_text()
        for name in spec["options"]:
            assert f"| `{name}` |" in page


def test_out_of_sync_defaults_are_reported():
    spec = {"options": {"x_state": {"type": "str", "default": "present"}, "x_only_spec": {"type": "int"}}}
    problems = gen.sync_problems("x", spec, {"x_state": "absent", "x_only_defaults": 1})
    assert problems == [
        "x: x_only_defaults is in defaults/main.yml but not in argument_specs",
        "x: x_state defaults to 'absent' in defaults/main.yml but 'present' in argument_specs",
        "x: x_only_spec is in argument_specs but not in defaults/main.yml",
    ]
