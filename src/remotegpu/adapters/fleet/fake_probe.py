"""GpuProbe for machines without GPUs, and the choice between fake and real."""

from __future__ import annotations

from typing import Any

from remotegpu.adapters.fleet.nvml_probe import NvmlGpuProbe
from remotegpu.application.fleet.ports import GpuProbe
from remotegpu.domain.fleet.models import Gpu, parse_fake_gpus


class FakeGpuProbe:
    """A fixed inventory from a spec like ``"4xNVIDIA A100-SXM4-80GB"``.

    Utilization starts at 0 and is set by tests (or a demo) to drive idle auto-stop.
    """

    def __init__(self, spec: str, *, seed: str = ""):
        self._gpus = parse_fake_gpus(spec, seed=seed)  # bad spec: InvalidInput at start-up
        self._utilization = {gpu.uuid: 0 for gpu in self._gpus}

    def inventory(self) -> list[Gpu]:
        return list(self._gpus)

    def utilization(self) -> dict[str, int]:
        return dict(self._utilization)

    def set_utilization(self, percent: int, uuid: str | None = None) -> None:
        """Set one GPU's utilization, or every GPU's when ``uuid`` is None."""
        if not 0 <= percent <= 100:
            raise ValueError("utilization is a percentage, 0-100")
        if uuid is not None and uuid not in self._utilization:
            raise KeyError(uuid)
        for key in [uuid] if uuid is not None else list(self._utilization):
            self._utilization[key] = percent


class NoGpuProbe:
    """A machine with no GPUs (or no usable driver): CPU-only environments still run."""

    def inventory(self) -> list[Gpu]:
        return []

    def utilization(self) -> dict[str, int]:
        return {}


def detect_probe(fake_spec: str | None, *, seed: str = "", nvml: Any = None) -> GpuProbe:
    """Fake inventory when a spec is configured, else NVML when it initialises, else none."""
    if fake_spec is not None and fake_spec.strip():
        return FakeGpuProbe(fake_spec, seed=seed)
    probe = NvmlGpuProbe(nvml)
    if probe.start():
        return probe
    return NoGpuProbe()
