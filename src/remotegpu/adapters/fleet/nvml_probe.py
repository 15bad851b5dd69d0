"""GpuProbe over NVML (the ``pynvml`` module from nvidia-ml-py).

The module is injectable (``nvml=``) so tests drive this adapter with a fake NVML;
by default ``pynvml`` is imported on first use, so importing this file never needs
a driver. Older drivers lack some calls (NUMA id, NVLink): those degrade to
"topology unknown" rather than failing the inventory.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from remotegpu.domain.fleet.models import Gpu

log = logging.getLogger(__name__)

_AFFINITY_SCOPE_NODE = 0  # NVML_AFFINITY_SCOPE_NODE
_DEFAULT_MAX_LINKS = 18  # NVML_NVLINK_MAX_LINKS on drivers of the Hopper era


def _text(value: Any) -> str:
    # pynvml returns str in recent releases and bytes in older ones (and in fakes).
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)


def _bus_key(bus_id: Any) -> str | None:
    """Canonical ``dddd:bb:dd.f``: NVML pads the domain to 8 digits in one call and
    4 in another, sysfs uses 4 and lowercase."""
    text = _text(bus_id).strip().lower()
    try:
        domain, bus, rest = text.split(":")
        device, function = rest.split(".")
        return f"{int(domain, 16):04x}:{int(bus, 16):02x}:{int(device, 16):02x}.{int(function, 16):x}"
    except ValueError:
        return None


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[object, object] = {}

    def find(self, item: object) -> object:
        self.parent.setdefault(item, item)
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, a: object, b: object) -> None:
        self.parent[self.find(a)] = self.find(b)


class NvmlGpuProbe:
    """Inventory and utilization from NVML. See ``GpuProbe`` for the contract."""

    def __init__(self, nvml: Any = None, *, sysfs_root: str | None = "/sys"):
        self._nvml = nvml
        self._sysfs_root = sysfs_root  # NUMA fallback; None disables it (tests)
        self._started = False

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> bool:
        """Initialise NVML once; False (and logged) when the module or driver is missing."""
        if self._started:
            return True
        try:
            if self._nvml is None:
                import pynvml  # lazily: machines without the package still import us

                self._nvml = pynvml
            self._nvml.nvmlInit()
        except Exception as exc:  # ImportError, NVMLError, OSError from the loader
            log.info("NVML unavailable: %s", exc)
            return False
        self._started = True
        return True

    def close(self) -> None:
        if self._started:
            self._started = False
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # shutting down a broken driver is not worth failing for
                pass

    # --- GpuProbe --------------------------------------------------------------------

    def inventory(self) -> list[Gpu]:
        if not self.start():
            return []
        nvml = self._nvml
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError as exc:
            log.warning("NVML device count failed: %s", exc)
            return []
        devices: list[tuple[int, Any, str, str]] = []  # index, handle, uuid, model
        for index in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                uuid = _text(nvml.nvmlDeviceGetUUID(handle))
                model = _text(nvml.nvmlDeviceGetName(handle))
            except nvml.NVMLError as exc:
                log.warning("GPU %d skipped: %s", index, exc)  # no UUID, nothing to allocate
                continue
            devices.append((index, handle, uuid, model))
        bus_ids = {index: self._bus_id(handle) for index, handle, _, _ in devices}
        groups = self._nvlink_groups(devices, bus_ids)
        gpus = []
        for index, handle, uuid, model in devices:
            memory_mib, healthy = self._memory(handle)
            gpus.append(
                Gpu(
                    index=index,
                    uuid=uuid,
                    model=model,
                    memory_mib=memory_mib,
                    numa_node=self._numa_node(handle, bus_ids[index]),
                    nvlink_group=groups.get(index),
                    healthy=healthy,
                )
            )
        return gpus

    def utilization(self) -> dict[str, int]:
        if not self.start():
            return {}
        nvml = self._nvml
        result: dict[str, int] = {}
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError:
            return {}
        for index in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                uuid = _text(nvml.nvmlDeviceGetUUID(handle))
                result[uuid] = int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except nvml.NVMLError:
                continue
        return result

    def telemetry(self) -> list:
        """DCGM-named fields of every GPU (``GpuTelemetry``); a field the driver cannot
        read is left out. XID errors come from an NVML event set polled without waiting."""
        from remotegpu.application.monitoring.ports import GpuReading
        from remotegpu.domain.monitoring import metrics as m

        if not self.start():
            return []
        nvml = self._nvml
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError:
            return []
        xids = self._poll_xids(count)
        out = []
        for index in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                uuid = _text(nvml.nvmlDeviceGetUUID(handle))
            except nvml.NVMLError:
                continue
            values: dict[str, float] = {}
            reads = [
                (m.GPU_UTIL, lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
                (m.POWER_USAGE, lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0),  # mW → W
                (m.GPU_TEMP, lambda: nvml.nvmlDeviceGetTemperature(handle, getattr(nvml, "NVML_TEMPERATURE_GPU", 0))),
                (m.SM_CLOCK, lambda: nvml.nvmlDeviceGetClockInfo(handle, getattr(nvml, "NVML_CLOCK_SM", 1))),
            ]
            for name, read in reads:
                try:
                    values[name] = float(read())
                except (nvml.NVMLError, AttributeError, TypeError):
                    pass
            try:
                info = nvml.nvmlDeviceGetMemoryInfo(handle)
                values[m.FB_USED] = int(info.used) // (1024 * 1024)
                values[m.FB_FREE] = int(info.free) // (1024 * 1024)
            except (nvml.NVMLError, AttributeError):
                pass
            values[m.XID_ERRORS] = float(xids.get(uuid, 0))
            out.append(GpuReading(uuid, values))
        return out

    def _poll_xids(self, count: int) -> dict[str, int]:
        """uuid → the last XID since the previous poll (critical XID events)."""
        nvml = self._nvml
        event_set = getattr(self, "_xid_set", None)
        if event_set is None:
            try:
                event_set = nvml.nvmlEventSetCreate()
                kind = getattr(nvml, "nvmlEventTypeXidCriticalError", 8)
                for index in range(count):
                    try:
                        nvml.nvmlDeviceRegisterEvents(nvml.nvmlDeviceGetHandleByIndex(index), kind, event_set)
                    except nvml.NVMLError:
                        pass
            except (nvml.NVMLError, AttributeError):
                event_set = False
            self._xid_set = event_set
        if not event_set:
            return {}
        out: dict[str, int] = {}
        for _ in range(100):
            try:
                event = nvml.nvmlEventSetWait(event_set, 0)
            except nvml.NVMLError:
                break  # timeout: nothing more pending
            try:
                out[_text(nvml.nvmlDeviceGetUUID(event.device))] = int(event.eventData)
            except (nvml.NVMLError, AttributeError):
                continue
        return out

    # --- device details --------------------------------------------------------------

    def _memory(self, handle: Any) -> tuple[int, bool]:
        try:
            return int(self._nvml.nvmlDeviceGetMemoryInfo(handle).total) // (1024 * 1024), True
        except self._nvml.NVMLError:
            return 0, False  # e.g. GPU_IS_LOST: present but not usable

    def _bus_id(self, handle: Any) -> str | None:
        try:
            return _bus_key(self._nvml.nvmlDeviceGetPciInfo(handle).busId)
        except (self._nvml.NVMLError, AttributeError):
            return None

    def _numa_node(self, handle: Any, bus_id: str | None) -> int | None:
        getter = getattr(self._nvml, "nvmlDeviceGetNumaNodeId", None)
        if getter is not None:
            try:
                node = int(getter(handle))
                return node if node >= 0 else None
            except self._nvml.NVMLError:
                pass
        node = self._sysfs_numa_node(bus_id)
        return node if node is not None else self._affinity_numa_node(handle)

    def _affinity_numa_node(self, handle: Any) -> int | None:
        """The NUMA node from the GPU's memory affinity mask, when exactly one bit is set.

        Seen on an H200 in a gVisor sandbox (driver 580): nvmlDeviceGetNumaNodeId says
        Not Supported and sysfs has no PCI tree, while the affinity mask still answers.
        """
        getter = getattr(self._nvml, "nvmlDeviceGetMemoryAffinity", None)
        if getter is None:
            return None
        words = 4  # 4 × 64 bits: 256 NUMA nodes
        try:
            mask = getter(handle, words, _AFFINITY_SCOPE_NODE)
            bits = [w * 64 + b for w in range(words) for b in range(64) if (int(mask[w]) >> b) & 1]
        except (self._nvml.NVMLError, TypeError, IndexError, ValueError):
            return None
        return bits[0] if len(bits) == 1 else None  # several nodes: no single home

    def _sysfs_numa_node(self, bus_id: str | None) -> int | None:
        if self._sysfs_root is None or bus_id is None:
            return None
        try:
            node = int(Path(self._sysfs_root, "bus/pci/devices", bus_id, "numa_node").read_text().strip())
        except (OSError, ValueError):
            return None
        return node if node >= 0 else None  # -1: single-node machine or unknown

    def _nvlink_groups(self, devices: list[tuple[int, Any, str, str]], bus_ids: dict[int, str | None]) -> dict[int, int]:
        """index → group id for GPUs with at least one active NVLink.

        Each active link joins the GPU with whatever sits at the far end: a peer GPU
        (direct NVLink) or an NVSwitch, whose PCI id then joins every GPU wired to the
        same switch fabric.
        """
        nvml = self._nvml
        state_of = getattr(nvml, "nvmlDeviceGetNvLinkState", None)
        remote_of = getattr(nvml, "nvmlDeviceGetNvLinkRemotePciInfo", None)
        if state_of is None or remote_of is None:
            return {}
        by_bus = {bus: index for index, bus in bus_ids.items() if bus is not None}
        max_links = int(getattr(nvml, "NVML_NVLINK_MAX_LINKS", _DEFAULT_MAX_LINKS))
        links = _UnionFind()
        linked: set[int] = set()
        for index, handle, _, _ in devices:
            for link in range(max_links):
                try:
                    if not state_of(handle, link):
                        continue
                    remote = _bus_key(remote_of(handle, link).busId)
                except (nvml.NVMLError, AttributeError):
                    continue  # links past the device's count answer NOT_SUPPORTED
                if remote is None:
                    continue
                linked.add(index)
                links.union(("gpu", index), ("gpu", by_bus[remote]) if remote in by_bus else ("bus", remote))
        groups: dict[object, int] = {}
        result: dict[int, int] = {}
        for index in sorted(linked):  # number groups by their lowest GPU index
            root = links.find(("gpu", index))
            result[index] = groups.setdefault(root, len(groups))
        return result
