"""Metric names, samples and their aggregates.

GPU metrics follow DCGM's field vocabulary (``DCGM_FI_DEV_*``, with DCGM's units), so a
dashboard written for dcgm-exporter reads the same names here; container metrics are the
platform's own (``remotegpu_container_*``). Every sample is tagged with the host it came
from, and — decided by the server from its own records, never by the agent — the
environment and workspace that held the GPU or container at that moment.

Aggregates keep ``count``, ``sum`` (``math.fsum``: correctly rounded, so independent of
the order samples arrive in), ``min`` and ``max``; ``avg = sum / count``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, NamedTuple

from remotegpu.domain.shared.errors import InvalidInput

# --- names ----------------------------------------------------------------------------

GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"  # percent
FB_USED = "DCGM_FI_DEV_FB_USED"  # MiB
FB_FREE = "DCGM_FI_DEV_FB_FREE"  # MiB
POWER_USAGE = "DCGM_FI_DEV_POWER_USAGE"  # W
GPU_TEMP = "DCGM_FI_DEV_GPU_TEMP"  # °C
SM_CLOCK = "DCGM_FI_DEV_SM_CLOCK"  # MHz
XID_ERRORS = "DCGM_FI_DEV_XID_ERRORS"  # the last XID seen in the interval, 0 = none

CPU_PERCENT = "remotegpu_container_cpu_percent"  # percent of the container's CPU limit
CPU_CORES = "remotegpu_container_cpu_cores"  # cores in use
MEM_USED = "remotegpu_container_memory_used_mib"
MEM_LIMIT = "remotegpu_container_memory_limit_mib"
NET_RX = "remotegpu_container_network_rx_bytes_per_second"
NET_TX = "remotegpu_container_network_tx_bytes_per_second"
DISK_READ = "remotegpu_container_disk_read_bytes_per_second"
DISK_WRITE = "remotegpu_container_disk_write_bytes_per_second"


@dataclass(frozen=True)
class MetricInfo:
    name: str
    unit: str
    kind: str  # "gpu" (tagged with a GPU UUID) | "container" (tagged with an environment)
    help: str


METRICS: dict[str, MetricInfo] = {m.name: m for m in [
    MetricInfo(GPU_UTIL, "%", "gpu", "GPU utilization"),
    MetricInfo(FB_USED, "MiB", "gpu", "GPU framebuffer memory used"),
    MetricInfo(FB_FREE, "MiB", "gpu", "GPU framebuffer memory free"),
    MetricInfo(POWER_USAGE, "W", "gpu", "GPU power draw"),
    MetricInfo(GPU_TEMP, "C", "gpu", "GPU temperature"),
    MetricInfo(SM_CLOCK, "MHz", "gpu", "SM clock"),
    MetricInfo(XID_ERRORS, "xid", "gpu", "last XID error in the interval (0: none)"),
    MetricInfo(CPU_PERCENT, "%", "container", "CPU used, percent of the container's limit"),
    MetricInfo(CPU_CORES, "cores", "container", "CPU cores in use"),
    MetricInfo(MEM_USED, "MiB", "container", "memory used"),
    MetricInfo(MEM_LIMIT, "MiB", "container", "memory limit"),
    MetricInfo(NET_RX, "B/s", "container", "network received"),
    MetricInfo(NET_TX, "B/s", "container", "network sent"),
    MetricInfo(DISK_READ, "B/s", "container", "disk read"),
    MetricInfo(DISK_WRITE, "B/s", "container", "disk written"),
]}

#: Collection interval bounds (seconds): default every 10 s, never faster than 1 s.
DEFAULT_INTERVAL_SECONDS = 10.0
MIN_INTERVAL_SECONDS = 1.0


def check_metric(name: str) -> str:
    if name not in METRICS:
        raise InvalidInput(f"unknown metric {name!r}", code="unknown_metric", details={"known": sorted(METRICS)})
    return name


# --- samples --------------------------------------------------------------------------


class Sample(NamedTuple):
    """One reading. ``ts`` is seconds since the epoch; "" = not applicable.

    A named tuple, not a dataclass: ingestion makes one per sample (tens of thousands a
    second), and a tuple is built about five times faster than a frozen dataclass."""

    ts: float
    metric: str
    value: float
    host_id: str
    env_id: str = ""
    workspace_id: str = ""
    gpu_uuid: str = ""

    @property
    def series(self) -> tuple[str, str, str, str]:
        """What identifies its series (the workspace follows from the environment)."""
        return (self.metric, self.host_id, self.env_id, self.gpu_uuid)


@dataclass(frozen=True)
class Aggregate:
    count: int
    sum: float
    min: float
    max: float

    @property
    def avg(self) -> float:
        return self.sum / self.count


def aggregate(values: Iterable[float]) -> Aggregate:
    """count / fsum / min / max of ``values`` (at least one)."""
    vals = list(values)
    if not vals:
        raise ValueError("aggregate of no values")
    return Aggregate(len(vals), math.fsum(vals), min(vals), max(vals))


def bucket_of(ts: float, resolution: int) -> int:
    """Start (epoch seconds) of the ``resolution``-second bucket holding ``ts``."""
    return int(math.floor(ts / resolution)) * resolution


@dataclass(frozen=True)
class Rollup:
    """The aggregate of one series over ``[bucket, bucket + resolution)``."""

    resolution: int
    bucket: int
    metric: str
    host_id: str
    env_id: str
    workspace_id: str
    gpu_uuid: str
    agg: Aggregate


def downsample(samples: Iterable[Sample], resolution: int) -> list[Rollup]:
    """One rollup per (series, bucket) of ``samples``, exact: fsum, min, max of the raw values."""
    groups: dict[tuple, list[float]] = {}
    workspace: dict[tuple, str] = {}
    for s in samples:
        key = (*s.series, bucket_of(s.ts, resolution))
        groups.setdefault(key, []).append(s.value)
        if s.workspace_id:
            workspace[key] = s.workspace_id
    return [
        Rollup(resolution, key[4], key[0], key[1], key[2], workspace.get(key, ""), key[3], aggregate(values))
        for key, values in sorted(groups.items())
    ]


# --- retention --------------------------------------------------------------------------


@dataclass(frozen=True)
class Retention:
    """How long each resolution is kept (seconds). Raw 24 h, 1-min 30 days, 1-h a year."""

    raw_seconds: int = 24 * 3600
    minute_seconds: int = 30 * 86400
    hour_seconds: int = 365 * 86400

    def resolution_for(self, start: float, now: float) -> int:
        """The finest stored resolution (0 = raw) that still covers ``start``."""
        if start >= now - self.raw_seconds:
            return 0
        if start >= now - self.minute_seconds:
            return 60
        return 3600


#: Resolutions the embedded store keeps aggregates at: minutes and 10 minutes for the
#: 30 days, hours for the year. A range query reads the coarsest one its step is a whole
#: multiple of (the 10-minute tier is what a 30-day chart of 4,320 points reads).
ROLLUP_RESOLUTIONS = (60, 600, 3600)
#: A bucket is rolled up once it ended this long ago (a late batch still lands in it).
ROLLUP_GRACE_SECONDS = 120
#: Longest range query answered in one call, in points.
MAX_POINTS = 11_000


#: Values are stored as multiples of 1/1024 (below 2**31; whole numbers above). Sums of
#: such values are exact in binary floating point while they stay under 2**43, in any
#: order: so stored aggregates and range queries equal the raw samples' sum, min, max
#: and avg exactly, whichever database adds them up.
QUANTUM = 1024
_QUANTIZE_BELOW = 2.0 ** 31


#: Adding and taking away 1.5 * 2**52 rounds a float below 2**51 to a whole number, half
#: to even, as ``round`` does (IEEE round-to-nearest-even), at a third of its cost.
_ROUNDER = 1.5 * 2.0 ** 52
_Q = float(QUANTUM)


def quantize(value: float) -> float:
    """The nearest multiple of 1/1024 (ties to even), as ``round(value * 1024) / 1024``."""
    if -_QUANTIZE_BELOW < value < _QUANTIZE_BELOW:
        return ((value * _Q + _ROUNDER) - _ROUNDER) / _Q
    return float(round(value))
