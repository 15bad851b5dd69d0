"""GpuProbe for machines without GPUs, and the choice between fake and real."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from remotegpu.adapters.fleet.nvml_probe import NvmlGpuProbe
from remotegpu.application.fleet.ports import GpuProbe
from remotegpu.application.monitoring.ports import GpuReading
from remotegpu.domain.monitoring import metrics as m
from remotegpu.domain.fleet.models import Gpu, parse_fake_gpus


class FakeGpuProbe:
    """A fixed inventory from a spec like ``"4xNVIDIA A100-SXM4-80GB"``.

    Utilization starts at 0 and is set by tests (or a demo) to drive idle auto-stop.

    ``telemetry()`` gives plausible DCGM fields derived from each GPU's utilization
    (memory, power, temperature and SM clock rise with it). Tests and demos control
    them in process (``set_utilization``, ``set_reading``) or from outside through a
    JSON control file (``control_file``, REMOTEGPU_AGENT_FAKE_GPU_CONTROL), read on
    every call: ``{"*": {"DCGM_FI_DEV_GPU_UTIL": 95}, "<uuid>": {"DCGM_FI_DEV_XID_ERRORS": 79}}``
    (``"*"``: every GPU; a GPU's own entry wins). The utilization set there is also
    what ``utilization()`` reports.
    """

    def __init__(self, spec: str, *, seed: str = "", control_file: str | Path | None = None):
        self._gpus = parse_fake_gpus(spec, seed=seed)  # bad spec: InvalidInput at start-up
        self._utilization = {gpu.uuid: 0 for gpu in self._gpus}
        self._overrides: dict[str, dict[str, float]] = {}
        self.control_file = Path(control_file) if control_file else None

    def inventory(self) -> list[Gpu]:
        return list(self._gpus)

    def utilization(self) -> dict[str, int]:
        control = self._control()
        return {uuid: int(self._fields(uuid, control).get(m.GPU_UTIL, util)) for uuid, util in self._utilization.items()}

    def set_reading(self, field: str, value: float | None, uuid: str | None = None) -> None:
        """Force one DCGM field (None: back to the derived value) of one GPU or all."""
        m.check_metric(field)
        for key in [uuid] if uuid is not None else [g.uuid for g in self._gpus]:
            if value is None:
                self._overrides.get(key, {}).pop(field, None)
            else:
                self._overrides.setdefault(key, {})[field] = float(value)

    def _control(self) -> dict[str, dict[str, float]]:
        if self.control_file is None:
            return {}
        try:
            data = json.loads(self.control_file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            logging.getLogger(__name__).warning("fake GPU control file %s unreadable: %s", self.control_file, exc)
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): {f: float(v) for f, v in vals.items() if f in m.METRICS and isinstance(v, (int, float))}
                for k, vals in data.items() if isinstance(vals, dict)}

    def _fields(self, uuid: str, control: dict[str, dict[str, float]]) -> dict[str, float]:
        return {**control.get("*", {}), **self._overrides.get(uuid, {}), **control.get(uuid, {})}

    def telemetry(self) -> list[GpuReading]:
        control = self._control()
        out = []
        for gpu in self._gpus:
            forced = self._fields(gpu.uuid, control)
            util = float(forced.get(m.GPU_UTIL, self._utilization[gpu.uuid]))
            total = float(gpu.memory_mib)
            used = float(forced.get(m.FB_USED, round(total * (0.02 + 0.6 * util / 100))))
            values = {
                m.GPU_UTIL: util,
                m.FB_USED: used,
                m.FB_FREE: max(0.0, total - used),
                m.POWER_USAGE: 60.0 + 3.4 * util,
                m.GPU_TEMP: 32.0 + 0.5 * util,
                m.SM_CLOCK: 1410.0 if util > 0 else 210.0,
                m.XID_ERRORS: 0.0,
            }
            values.update(forced)
            out.append(GpuReading(gpu.uuid, values))
        return out

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

    def telemetry(self) -> list[GpuReading]:
        return []


def detect_probe(fake_spec: str | None, *, seed: str = "", nvml: Any = None, control_file: str | None = None) -> GpuProbe:
    """Fake inventory when a spec is configured, else NVML when it initialises, else none."""
    if fake_spec is not None and fake_spec.strip():
        return FakeGpuProbe(fake_spec, seed=seed, control_file=control_file)
    probe = NvmlGpuProbe(nvml)
    if probe.start():
        return probe
    return NoGpuProbe()
