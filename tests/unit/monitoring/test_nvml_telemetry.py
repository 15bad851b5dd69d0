"""NvmlGpuProbe.telemetry against the hand-written pynvml fake: DCGM-named fields with
DCGM's units, unreadable fields left out, XID events drained from an NVML event set."""

from __future__ import annotations

from types import SimpleNamespace

from remotegpu.adapters.fleet.nvml_probe import NvmlGpuProbe
from remotegpu.domain.monitoring import metrics as m
from tests.unit.fleet.test_nvml_probe import Device, NVMLError, bus, fake_nvml


def nvml_with_telemetry(devices, xids):
    nvml = fake_nvml(devices)
    nvml.nvmlDeviceGetMemoryInfo = lambda d: SimpleNamespace(total=d.memory, used=10 * 1024**3, free=d.memory - 10 * 1024**3)
    nvml.nvmlDeviceGetPowerUsage = lambda d: 312_500  # mW
    nvml.nvmlDeviceGetTemperature = lambda d, sensor: 67
    nvml.nvmlDeviceGetClockInfo = lambda d, clock: 1980 if clock == 1 else 0

    def no_power(d):
        raise NVMLError("Not Supported")

    if len(devices) > 1:
        nvml.nvmlDeviceGetPowerUsage = lambda d: no_power(d) if d is devices[1] else 312_500
    registered = []
    nvml.nvmlEventSetCreate = lambda: "set"
    nvml.nvmlDeviceRegisterEvents = lambda d, kind, s: registered.append(d.uuid)

    def wait(s, timeout_ms):
        if not xids:
            raise NVMLError("Timeout")
        device, xid = xids.pop(0)
        return SimpleNamespace(device=device, eventData=xid)

    nvml.nvmlEventSetWait = wait
    nvml.registered = registered
    return nvml


def test_telemetry_fields_units_and_xids():
    a, b = Device("H100", "GPU-a", bus(1), utilization=87), Device("H100", "GPU-b", bus(2), utilization=None)
    xids = [(a, 48), (a, 79)]
    nvml = nvml_with_telemetry([a, b], xids)
    probe = NvmlGpuProbe(nvml, sysfs_root=None)
    first, second = probe.telemetry()
    assert first.uuid == "GPU-a" and first.values == {
        m.GPU_UTIL: 87.0, m.POWER_USAGE: 312.5, m.GPU_TEMP: 67.0, m.SM_CLOCK: 1980.0,
        m.FB_USED: 10240, m.FB_FREE: 81920 - 10240, m.XID_ERRORS: 79.0,  # the last XID of the interval
    }
    assert m.GPU_UTIL not in second.values and m.POWER_USAGE not in second.values  # unreadable: left out
    assert second.values[m.XID_ERRORS] == 0.0
    assert nvml.registered == ["GPU-a", "GPU-b"]
    (again, _) = probe.telemetry()
    assert again.values[m.XID_ERRORS] == 0.0  # drained


def test_no_driver_no_telemetry():
    assert NvmlGpuProbe(fake_nvml([], init_fails=True), sysfs_root=None).telemetry() == []
