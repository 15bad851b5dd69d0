"""The workspace policy comes from configuration: defaults, 'unlimited', bad values named."""

from __future__ import annotations

from datetime import timedelta

import pytest

from remotegpu.application.workspaces.quotas import CreationPolicy
from remotegpu.domain.workspaces.quota import DEFAULT_USER_QUOTA, DEFAULT_WORKSPACE_QUOTA, Quota
from remotegpu.entrypoints.config import ConfigError, load_settings
from remotegpu.entrypoints.workspace_policy import workspace_policy_from


def test_defaults_cap_every_workspace_and_user():
    policy = workspace_policy_from(load_settings())
    assert policy.default_quota == DEFAULT_WORKSPACE_QUOTA and policy.default_quota.max_gpus == 8
    assert policy.default_quota.max_storage_gib == 500
    assert policy.user_quota == DEFAULT_USER_QUOTA and policy.user_quota.max_workspaces == 5
    assert policy.creation is CreationPolicy.ANYONE and policy.invitation_ttl == timedelta(days=7)


def test_environment_variables_set_each_limit_and_unlimited_lifts_it(monkeypatch):
    monkeypatch.setenv("REMOTEGPU_DEFAULT_QUOTA_GPUS", "2")
    monkeypatch.setenv("REMOTEGPU_DEFAULT_QUOTA_STORAGE_GIB", "unlimited")
    monkeypatch.setenv("REMOTEGPU_USER_QUOTA_WORKSPACES", "")
    monkeypatch.setenv("REMOTEGPU_WORKSPACE_CREATION", "admins")
    monkeypatch.setenv("REMOTEGPU_WORKSPACE_INVITATION_DAYS", "2")
    policy = workspace_policy_from(load_settings())
    assert policy.default_quota == Quota(max_gpus=2, max_environments=10, max_cpu_cores=64, max_memory_gib=512, max_storage_gib=None)
    assert policy.user_quota.max_workspaces is None
    assert policy.creation is CreationPolicy.ADMINS and policy.invitation_ttl == timedelta(days=2)


@pytest.mark.parametrize("key, value", [
    ("REMOTEGPU_DEFAULT_QUOTA_GPUS", "-1"), ("REMOTEGPU_USER_QUOTA_GPUS", "lots"),
    ("REMOTEGPU_WORKSPACE_CREATION", "nobody"), ("REMOTEGPU_WORKSPACE_INVITATION_DAYS", "0"),
])
def test_a_bad_value_stops_start_up_naming_the_key(monkeypatch, key, value):
    monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=key):
        load_settings()
