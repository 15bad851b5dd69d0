"""One-shot check of the agent's GPU inventory on a machine with real NVIDIA GPUs.

Runs exactly what ``remotegpu agent`` runs to fill its heartbeat — ``detect_probe``
(NVML when it initialises) and ``HostSystemInfo`` — and prints the wire form of the
report (``report_to_dict``). It then loads the GPU for a few seconds (PyTorch, when
present) and samples ``utilization()`` again, so the figure the idle policy relies on
is seen moving. Needs only the stdlib, ``pynvml`` (nvidia-ml-py) and this source tree:

    PYTHONPATH=src python3 deploy/device/nvml_inventory.py
"""

from __future__ import annotations

import json
import sys
import threading
import time

from remotegpu.adapters.fleet.fake_probe import detect_probe
from remotegpu.adapters.fleet.nvml_probe import NvmlGpuProbe
from remotegpu.adapters.fleet.system_info import HostSystemInfo
from remotegpu.adapters.fleet.wire import report_to_dict
from remotegpu.application.fleet.agent_protocol import HostReport


def _load_gpu(seconds: float, running: threading.Event, stop: threading.Event) -> str:
    try:
        import torch
    except ImportError:
        return "torch missing: no load generated"
    if not torch.cuda.is_available():
        return "torch sees no CUDA device"
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    torch.cuda.synchronize()
    running.set()  # CUDA start-up takes seconds: sample only once kernels really run
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not stop.is_set():
        for _ in range(20):
            a = (a @ a).clamp_(-1, 1)
        torch.cuda.synchronize()
    return f"torch {torch.__version__} matmul load on {torch.cuda.get_device_name(0)}"


def main() -> int:
    probe = detect_probe(None, seed="device-check")
    print("probe:", type(probe).__name__)
    if not isinstance(probe, NvmlGpuProbe):
        print("NVML did not initialise: no real GPUs seen", file=sys.stderr)
        return 1
    system = HostSystemInfo("/tmp")
    started = time.perf_counter()
    gpus = probe.inventory()
    inventory_ms = (time.perf_counter() - started) * 1000
    idle = probe.utilization()
    report = HostReport(
        gpus=gpus, cpu_cores=system.cpu_cores(), memory_gib=system.memory_gib(), disk_gib=system.disk_gib(),
        runtime="none", runtime_healthy=True, fake_gpus=False, observed=[], utilization=idle,
        address="", agent_version="device-check",
    )
    print("heartbeat report (wire form):")
    print(json.dumps(report_to_dict(report), indent=2))
    print(f"inventory() took {inventory_ms:.1f} ms")

    stop, running = threading.Event(), threading.Event()
    outcome: list[str] = []
    worker = threading.Thread(target=lambda: outcome.append(_load_gpu(8.0, running, stop)))
    worker.start()
    samples = []
    running.wait(timeout=60)
    time.sleep(1.0)  # NVML averages utilisation over its last sample period
    for _ in range(6):
        samples.append(probe.utilization())
        time.sleep(0.5)
    stop.set()
    worker.join()
    print(outcome[0] if outcome else "load thread failed")
    print("utilization at idle:", idle)
    print("utilization under load:", samples)
    peak = max((max(s.values(), default=0) for s in samples), default=0)
    print(f"peak utilization under load: {peak}%")
    probe.close()
    return 0 if gpus and peak > 0 else 2


if __name__ == "__main__":
    sys.exit(main())
