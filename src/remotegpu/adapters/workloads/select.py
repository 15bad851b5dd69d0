"""The JobRuntime that goes with an agent's environment runtime."""

from __future__ import annotations

from pathlib import Path

from remotegpu.application.workloads.ports import JobRuntime


def select_job_runtime(runtime_name: str, *, state_dir: Path, docker_scope: str, pids_limit: int | None = None,
                       private_address: str = "127.0.0.1") -> JobRuntime | None:
    """Docker → DockerJobRuntime (logs under ``state_dir/job-logs``); memory → in memory;
    local → None (jobs are not run by the single-user development runtime)."""
    if runtime_name == "docker":
        from remotegpu.adapters.runtime.docker_hardening import Hardening
        from remotegpu.adapters.workloads.docker_jobs import DockerJobRuntime

        hardening = Hardening(pids_limit=pids_limit) if pids_limit else None
        return DockerJobRuntime(Path(state_dir) / "job-logs", scope=docker_scope, hardening=hardening,
                                private_address=private_address)
    if runtime_name == "memory":
        from remotegpu.adapters.workloads.memory_runtime import InMemoryJobRuntime

        return InMemoryJobRuntime()
    return None
