"""GPU inventory adapters: NVML (real GPUs) and a fake inventory from a spec string."""

from remotegpu.adapters.fleet.fake_probe import FakeGpuProbe, NoGpuProbe, detect_probe
from remotegpu.adapters.fleet.nvml_probe import NvmlGpuProbe

__all__ = ["FakeGpuProbe", "NoGpuProbe", "NvmlGpuProbe", "detect_probe"]
