"""An inference service holds one AutoscalePolicy: created from the flat fields, changed
by a PATCH of any of them without a rolling update (an image change rolls), invalid
combinations refused with the field named; the scaler removes a draining replica only
once the router says it is drained."""

from __future__ import annotations

import pytest

from remotegpu.application.workloads.services import ServiceScaler
from remotegpu.domain.shared.errors import InvalidInput
from remotegpu.domain.workloads.autoscaler import AutoscalePolicy
from remotegpu.domain.workloads.services import Replica

pytestmark = pytest.mark.asyncio

FIELDS = dict(name="svc", command=["serve"], env={}, port=8000, health_path="/", gpus=0, cpu_cores=1, memory_gib=1,
              min_replicas=1, max_replicas=3, target_concurrency=4.0, scale_down_delay_s=60.0, scale_to_zero_after_s=120.0)


async def test_policy_is_one_object_and_patching_it_does_not_roll(world):
    owner = await world.user("owner")
    ws = await world.personal_ws(owner)
    services = world.container.inference_service_service()
    svc = await services.create(owner, ws, image=None, **FIELDS)
    assert svc.autoscale == AutoscalePolicy(min_replicas=1, max_replicas=3, target_concurrency=4.0, scale_down_delay_s=60.0,
                                            scale_to_zero_after_s=120.0)
    assert svc.desired_replicas == 1 and not hasattr(svc, "min_replicas")
    changed = await services.update(owner, svc.id, max_replicas=5, target_concurrency=2.0)
    assert (changed.autoscale.max_replicas, changed.autoscale.target_concurrency, changed.autoscale.min_replicas) == (5, 2.0, 1)
    assert changed.generation == 0  # scaling knobs: no new generation
    again = await services.get(owner, svc.id)
    assert again.autoscale == changed.autoscale
    rolled = await services.update(owner, svc.id, image="remotegpu/base:v2")
    assert rolled.generation == 1 and rolled.autoscale == changed.autoscale
    with pytest.raises(InvalidInput) as err:
        await services.update(owner, svc.id, min_replicas=6)  # above max_replicas 5
    assert err.value.details["field"] == "min_replicas"


class _Router:
    def __init__(self, drained: bool):
        self._drained = drained

    def ready(self, replica_id: str) -> bool:
        return True

    def in_flight(self, replica_id: str) -> int:
        return 0

    def drained(self, replica_id: str) -> bool:
        return self._drained


async def test_a_draining_replica_goes_only_once_drained(world):
    owner = await world.user("owner")
    ws = await world.personal_ws(owner)
    svc = await world.container.inference_service_service().create(owner, ws, image=None, **{**FIELDS, "min_replicas": 0})
    async with world.container.uow() as uow:
        saved = await uow.inference_services.get(svc.id)
        saved.replicas = [Replica(id=f"svc-{svc.id}.g0.r1", generation=0, host_id="h", host_port=20000, address="127.0.0.1",
                                  state="draining")]
        await uow.inference_services.update(saved)
        await uow.commit()
    scaler = ServiceScaler(world.container.uow, world.clock)
    out = await scaler.reconcile({svc.id: 0}, _Router(drained=False))
    assert [r.state for r in out[svc.id].replicas] == ["draining"]  # a request may still be on its way
    out = await scaler.reconcile({svc.id: 0}, _Router(drained=True))
    assert out[svc.id].replicas == []
