"""NvmlGpuProbe against a hand-written fake of the pynvml module."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

from remotegpu.adapters.fleet.nvml_probe import NvmlGpuProbe


class NVMLError(Exception):
    pass


@dataclass
class Device:
    name: str | bytes
    uuid: str | bytes
    bus: str  # as nvmlDeviceGetPciInfo reports it: 8-digit domain
    memory: int = 80 * 1024**3
    numa: int | None = None  # None: the call raises
    affinity: list[int] | None = None  # NUMA memory-affinity mask words; None: the call raises
    links: list[str | None] = field(default_factory=list)  # remote bus per link, None = inactive
    utilization: int | None = 0  # None: the call raises
    broken_memory: bool = False


def fake_nvml(devices: list[Device], *, init_fails=False, without=(), max_links=4) -> SimpleNamespace:
    """A stand-in for the pynvml module; ``without`` drops functions old drivers lack."""
    calls = {"init": 0, "shutdown": 0}

    def init():
        calls["init"] += 1
        if init_fails:
            raise NVMLError("Driver Not Loaded")

    def handle(i):
        return devices[i]

    def memory(d):
        if d.broken_memory:
            raise NVMLError("GPU is lost")
        return SimpleNamespace(total=d.memory, free=d.memory, used=0)

    def numa(d):
        if d.numa is None:
            raise NVMLError("Not Supported")
        return d.numa

    def memory_affinity(d, words, scope):
        if d.affinity is None:
            raise NVMLError("Not Supported")
        return (d.affinity + [0] * words)[:words]

    def link_state(d, link):
        if link >= len(d.links):
            raise NVMLError("Not Supported")
        return 1 if d.links[link] is not None else 0

    def remote(d, link):
        return SimpleNamespace(busId=d.links[link].encode())

    def utilization(d):
        if d.utilization is None:
            raise NVMLError("Not Supported")
        return SimpleNamespace(gpu=d.utilization, memory=0)

    functions = dict(
        NVMLError=NVMLError,
        NVML_NVLINK_MAX_LINKS=max_links,
        nvmlInit=init,
        nvmlShutdown=lambda: calls.__setitem__("shutdown", calls["shutdown"] + 1),
        nvmlDeviceGetCount=lambda: len(devices),
        nvmlDeviceGetHandleByIndex=handle,
        nvmlDeviceGetName=lambda d: d.name,
        nvmlDeviceGetUUID=lambda d: d.uuid,
        nvmlDeviceGetMemoryInfo=memory,
        nvmlDeviceGetPciInfo=lambda d: SimpleNamespace(busId=d.bus),
        nvmlDeviceGetNumaNodeId=numa,
        nvmlDeviceGetMemoryAffinity=memory_affinity,
        nvmlDeviceGetNvLinkState=link_state,
        nvmlDeviceGetNvLinkRemotePciInfo=remote,
        nvmlDeviceGetUtilizationRates=utilization,
        calls=calls,
    )
    return SimpleNamespace(**{k: v for k, v in functions.items() if k not in without})


def bus(n: int) -> str:
    return f"00000000:{n:02X}:00.0"


def short_bus(n: int) -> str:
    return f"0000:{n:02x}:00.0"  # remote PCI info may pad the domain differently


def test_reads_names_and_uuids_given_as_bytes_or_str():
    nvml = fake_nvml([Device(b"NVIDIA H100 80GB HBM3", b"GPU-aaa", bus(1)), Device("NVIDIA H100 80GB HBM3", "GPU-bbb", bus(2))])
    gpus = NvmlGpuProbe(nvml, sysfs_root=None).inventory()
    assert [(g.index, g.uuid, g.model) for g in gpus] == [(0, "GPU-aaa", "NVIDIA H100 80GB HBM3"), (1, "GPU-bbb", "NVIDIA H100 80GB HBM3")]
    assert [g.memory_mib for g in gpus] == [81920, 81920]
    assert all(g.healthy for g in gpus)


def test_topology_is_unknown_when_the_driver_cannot_tell():
    nvml = fake_nvml([Device("A100", "GPU-a", bus(1))], without=("nvmlDeviceGetNvLinkState", "nvmlDeviceGetNvLinkRemotePciInfo", "nvmlDeviceGetNumaNodeId"))
    (gpu,) = NvmlGpuProbe(nvml, sysfs_root=None).inventory()
    assert gpu.numa_node is None and gpu.nvlink_group is None


def test_numa_node_comes_from_nvml_or_else_sysfs(tmp_path):
    nvml = fake_nvml([Device("A100", "GPU-a", bus(0x17), numa=1), Device("A100", "GPU-b", bus(0x65))])
    node_file = tmp_path / "bus/pci/devices/0000:65:00.0/numa_node"
    node_file.parent.mkdir(parents=True)
    node_file.write_text("0\n")
    assert [g.numa_node for g in NvmlGpuProbe(nvml, sysfs_root=str(tmp_path)).inventory()] == [1, 0]
    node_file.write_text("-1\n")  # single-node machines say -1: unknown
    assert [g.numa_node for g in NvmlGpuProbe(nvml, sysfs_root=str(tmp_path)).inventory()] == [1, None]


def test_direct_nvlink_pairs_become_groups():
    devices = [
        Device("A100", "GPU-0", bus(1), links=[short_bus(2), None]),
        Device("A100", "GPU-1", bus(2), links=[short_bus(1)]),
        Device("A100", "GPU-2", bus(3), links=[None, short_bus(4)]),
        Device("A100", "GPU-3", bus(4), links=[short_bus(3)]),
        Device("A100", "GPU-4", bus(5), links=[None, None]),  # no active link
    ]
    gpus = NvmlGpuProbe(fake_nvml(devices), sysfs_root=None).inventory()
    assert [g.nvlink_group for g in gpus] == [0, 0, 1, 1, None]


def test_gpus_wired_to_the_same_nvswitch_share_one_group():
    switch = "00000000:C0:00.0"
    devices = [Device("H100", f"GPU-{i}", bus(i + 1), links=[switch, switch]) for i in range(4)]
    gpus = NvmlGpuProbe(fake_nvml(devices), sysfs_root=None).inventory()
    assert {g.nvlink_group for g in gpus} == {0}


def test_a_device_with_unreadable_memory_is_reported_unhealthy():
    nvml = fake_nvml([Device("A100", "GPU-a", bus(1), broken_memory=True)])
    (gpu,) = NvmlGpuProbe(nvml, sysfs_root=None).inventory()
    assert not gpu.healthy and gpu.memory_mib == 0


def test_utilization_by_uuid_skips_unreadable_gpus():
    nvml = fake_nvml([Device("A100", b"GPU-a", bus(1), utilization=37), Device("A100", "GPU-b", bus(2), utilization=None)])
    assert NvmlGpuProbe(nvml, sysfs_root=None).utilization() == {"GPU-a": 37}


def test_init_failure_means_no_gpus_and_no_error():
    nvml = fake_nvml([Device("A100", "GPU-a", bus(1))], init_fails=True)
    probe = NvmlGpuProbe(nvml, sysfs_root=None)
    assert probe.start() is False
    assert probe.inventory() == [] and probe.utilization() == {}


def test_nvml_is_initialised_once_and_shut_down_on_close():
    nvml = fake_nvml([Device("A100", "GPU-a", bus(1))])
    probe = NvmlGpuProbe(nvml, sysfs_root=None)
    probe.inventory()
    probe.utilization()
    probe.close()
    assert nvml.calls == {"init": 1, "shutdown": 1}


def test_without_pynvml_importable_the_probe_is_simply_unavailable(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pynvml(name, *args, **kwargs):
        if name == "pynvml":
            raise ImportError("No module named 'pynvml'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pynvml)
    assert NvmlGpuProbe().inventory() == []


def test_numa_node_falls_back_to_the_memory_affinity_mask():
    # As on an H200 under gVisor: no NUMA id from NVML, no sysfs, but an affinity mask.
    nvml = fake_nvml([
        Device("H200", "GPU-a", bus(1), affinity=[0b1]),
        Device("H200", "GPU-b", bus(2), affinity=[0, 0b10]),  # node 65
        Device("H200", "GPU-c", bus(3), affinity=[0b11]),  # two nodes: no single home
        Device("H200", "GPU-d", bus(4)),  # the call fails
    ])
    assert [g.numa_node for g in NvmlGpuProbe(nvml, sysfs_root=None).inventory()] == [0, 65, None, None]
