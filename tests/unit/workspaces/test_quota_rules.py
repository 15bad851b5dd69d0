import pytest
from hypothesis import given
from hypothesis import strategies as st

from remotegpu.domain.shared.errors import InvalidInput, QuotaExceeded
from remotegpu.domain.workspaces.quota import RESOURCES, Quota, Usage

limits = st.one_of(st.none(), st.integers(min_value=0, max_value=64))
amounts = st.integers(min_value=0, max_value=16)
quotas = st.builds(Quota, max_gpus=limits, max_environments=limits, max_cpu_cores=limits, max_memory_gib=limits, max_storage_gib=limits)
usages = st.builds(Usage, gpus=amounts, environments=amounts, cpu_cores=amounts, memory_gib=amounts, storage_gib=amounts)


@given(quota=quotas, requests=st.lists(usages, max_size=30))
def test_admitting_requests_one_by_one_never_exceeds_any_limit(quota, requests):
    used = Usage()
    for request in requests:
        try:
            quota.check_request(used, request)
        except QuotaExceeded:
            continue
        used = used + request
    for resource in RESOURCES:
        limit = quota.limit(resource)
        assert limit is None or getattr(used, resource) <= limit


@given(quota=quotas, used=usages, request=usages)
def test_a_request_is_refused_exactly_when_some_requested_resource_would_pass_its_limit(quota, used, request):
    over = [
        r for r in RESOURCES
        if quota.limit(r) is not None and getattr(request, r) > 0 and getattr(used, r) + getattr(request, r) > quota.limit(r)
    ]
    if over:
        with pytest.raises(QuotaExceeded) as info:
            quota.check_request(used, request)
        assert [v["resource"] for v in info.value.details["violations"]] == over
    else:
        quota.check_request(used, request)


@given(used=usages, request=usages)
def test_unlimited_quota_admits_everything(used, request):
    Quota().check_request(used, request)


def test_lowering_a_limit_below_usage_does_not_block_requests_that_take_none_of_it():
    quota = Quota(max_gpus=1)
    quota.check_request(Usage(gpus=4), Usage(cpu_cores=2))
    with pytest.raises(QuotaExceeded):
        quota.check_request(Usage(gpus=4), Usage(gpus=1))


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_limits_must_be_non_negative_integers(bad):
    with pytest.raises(InvalidInput):
        Quota(max_gpus=bad)


def test_storage_is_refused_by_its_limit_alone():
    quota = Quota(max_storage_gib=100)
    quota.check_request(Usage(storage_gib=50), Usage(environments=1, storage_gib=50))
    with pytest.raises(QuotaExceeded) as info:
        quota.check_request(Usage(storage_gib=60), Usage(environments=1, storage_gib=50))
    assert info.value.details["violations"] == [{"resource": "storage_gib", "limit": 100, "used": 60, "requested": 50}]
    # Starting a stopped environment requests no storage: its disk already counts.
    quota.check_request(Usage(storage_gib=150), Usage(gpus=1, cpu_cores=2, memory_gib=8))


def test_every_status_but_deleted_holds_a_disk():
    from remotegpu.domain.environments.models import EnvStatus

    assert [s for s in EnvStatus if not s.holds_disk] == [EnvStatus.DELETED]
    assert EnvStatus.STOPPED.holds_disk and not EnvStatus.STOPPED.holds_resources
