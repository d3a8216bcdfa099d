"""Compute threads follow the container's CPU limit (cgroup), not the node's core count."""

from __future__ import annotations

import pytest

from model.cpu import cgroup_cpu_quota, compute_threads, schedulable_cpus


def cgroup_v2(tmp_path, cpu_max: str):
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    return tmp_path


def cgroup_v1(tmp_path, quota: int, period: int = 100000):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text(f"{period}\n")
    return tmp_path


@pytest.fixture(autouse=True)
def no_env_override(monkeypatch):
    monkeypatch.delenv("MODEL_NUM_THREADS", raising=False)


def test_cgroup_v2_limit(tmp_path):
    assert cgroup_cpu_quota(cgroup_v2(tmp_path, "150000 100000")) == 1.5
    assert compute_threads(cgroup_root=tmp_path) == 1  # 1.5 CPUs: never more threads than the quota


def test_cgroup_v2_without_limit_uses_the_schedulable_cpus(tmp_path):
    assert cgroup_cpu_quota(cgroup_v2(tmp_path, "max 100000")) is None
    assert compute_threads(cgroup_root=tmp_path) == schedulable_cpus()


def test_cgroup_v1_limit(tmp_path):
    assert cgroup_cpu_quota(cgroup_v1(tmp_path, 100000)) == 1.0
    assert compute_threads(cgroup_root=tmp_path) == 1


def test_cgroup_v1_without_limit(tmp_path):
    assert cgroup_cpu_quota(cgroup_v1(tmp_path, -1)) is None


def test_limit_above_the_cpus_available_is_capped(tmp_path):
    assert compute_threads(cgroup_root=cgroup_v2(tmp_path, "6400000 100000")) == schedulable_cpus()


def test_small_limit_still_gets_one_thread(tmp_path):
    assert compute_threads(cgroup_root=cgroup_v2(tmp_path, "20000 100000")) == 1


def test_no_cgroup_files(tmp_path):
    assert compute_threads(cgroup_root=tmp_path) == schedulable_cpus()


def test_explicit_setting_and_environment_win(tmp_path, monkeypatch):
    root = cgroup_v2(tmp_path, "100000 100000")
    assert compute_threads(3, cgroup_root=root) == 3
    monkeypatch.setenv("MODEL_NUM_THREADS", "4")
    assert compute_threads(cgroup_root=root) == 4
    with pytest.raises(ValueError, match="at least 1"):
        compute_threads(0, cgroup_root=root)
