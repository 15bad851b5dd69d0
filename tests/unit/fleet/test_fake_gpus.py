"""Fake GPU inventories: the spec parser and the fake probe."""

from __future__ import annotations

import pytest

from remotegpu.adapters.fleet import FakeGpuProbe, NoGpuProbe, NvmlGpuProbe, detect_probe
from remotegpu.domain.fleet.models import parse_fake_gpus
from remotegpu.domain.shared.errors import InvalidInput


def test_a_mixed_spec_gives_indexed_gpus_with_memory_and_topology():
    gpus = parse_fake_gpus("4xNVIDIA A100-SXM4-80GB,2xNVIDIA H100 80GB HBM3")
    assert [g.index for g in gpus] == list(range(6))
    assert [g.model for g in gpus] == ["NVIDIA A100-SXM4-80GB"] * 4 + ["NVIDIA H100 80GB HBM3"] * 2
    assert {g.memory_mib for g in gpus} == {80 * 1024}
    assert [g.nvlink_group for g in gpus] == [0, 0, 0, 0, 1, 1]
    assert [g.numa_node for g in gpus] == [0, 0, 0, 0, 1, 1]
    assert all(g.healthy and g.uuid.startswith("GPU-") for g in gpus)


def test_groups_hold_at_most_four_gpus():
    assert [g.nvlink_group for g in parse_fake_gpus("10x RTX 4090 24GB")] == [0] * 4 + [1] * 4 + [2] * 2


def test_memory_is_zero_when_the_name_does_not_say():
    assert parse_fake_gpus("1xTesla T4")[0].memory_mib == 0
    assert parse_fake_gpus("1xRTX 4090 24GB")[0].memory_mib == 24 * 1024


def test_uuids_are_stable_unique_and_depend_on_the_seed():
    one, again = parse_fake_gpus("8xA100"), parse_fake_gpus("8xA100")
    assert [g.uuid for g in one] == [g.uuid for g in again]
    assert len({g.uuid for g in one}) == 8
    assert not {g.uuid for g in one} & {g.uuid for g in parse_fake_gpus("8xA100", seed="host-2")}


def test_an_empty_spec_is_an_empty_inventory():
    assert parse_fake_gpus("") == []
    assert parse_fake_gpus("  ") == []


@pytest.mark.parametrize("spec", ["A100", "4A100", "0xA100", "4x", "x A100", "4xA100,,2xH100", "4xA100,", "65xA100"])
def test_bad_specs_are_invalid_input_naming_the_format(spec):
    with pytest.raises(InvalidInput) as caught:
        parse_fake_gpus(spec)
    assert spec in caught.value.details["spec"]


def test_the_fake_probe_reports_its_inventory_and_settable_utilization():
    probe = FakeGpuProbe("2xA100", seed="h")
    first, second = (g.uuid for g in probe.inventory())
    assert probe.utilization() == {first: 0, second: 0}
    probe.set_utilization(90, first)
    assert probe.utilization() == {first: 90, second: 0}
    probe.set_utilization(5)
    assert set(probe.utilization().values()) == {5}
    with pytest.raises(ValueError):
        probe.set_utilization(101)
    with pytest.raises(KeyError):
        probe.set_utilization(1, "GPU-unknown")


class _NoDriver:
    class NVMLError(Exception):
        pass

    def nvmlInit(self):
        raise self.NVMLError("NVML Shared Library Not Found")


class _Driver(_NoDriver):
    def nvmlInit(self):
        pass

    def nvmlDeviceGetCount(self):
        return 0


def test_detect_probe_prefers_the_fake_spec_then_nvml_then_nothing():
    assert isinstance(detect_probe("1xA100", nvml=_Driver()), FakeGpuProbe)
    assert isinstance(detect_probe(None, nvml=_Driver()), NvmlGpuProbe)
    assert isinstance(detect_probe("  ", nvml=_Driver()), NvmlGpuProbe)
    fallback = detect_probe(None, nvml=_NoDriver())
    assert isinstance(fallback, NoGpuProbe)
    assert fallback.inventory() == [] and fallback.utilization() == {}
