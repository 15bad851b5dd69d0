"""How every environment container is confined: each security setting lives here, once.

All of it is visible in ``docker inspect`` (``HostConfig``: ``CapDrop``, ``CapAdd``,
``SecurityOpt``, ``PidsLimit``, ``Memory``, ``MemorySwap``, ``NanoCpus``) and in the
container's environment (``NVIDIA_VISIBLE_DEVICES``).

The user is root inside their environment, with only the capabilities below; Docker's
default set is dropped first (``cap_drop=["ALL"]``). Left out on purpose, although Docker
grants them by default: ``NET_RAW`` (raw sockets: ARP/ICMP spoofing on the bridge),
``MKNOD`` (device nodes), ``SETFCAP`` and ``SETPCAP`` (granting capabilities to files and
processes). ``ping`` then does not work inside an environment, and a package whose
maintainer script sets file capabilities may warn; ``apt``, ``dpkg`` and ``pip`` install
as root, no ``sudo`` needed (nor possible: see ``no-new-privileges``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from remotegpu.application.environments.ports import RuntimeSpec

#: Capabilities added back after dropping all, and what needs each. Checked on the base
#: image by taking each one away in turn (sshd login with and without a pty, dpkg, apt,
#: pip, root handling other users' files and processes).
ADDED_CAPABILITIES: dict[str, str] = {
    "SETUID": "sshd's privilege separation (setresuid to 'sshd' before authentication: without it no login); "
              "apt drops to '_apt' to download",
    "SETGID": "idem for groups (sshd's setgroups: without it no login; apt's _apt sandbox)",
    "SYS_CHROOT": "sshd chroots its pre-authentication child into /run/sshd: without it no login",
    "AUDIT_WRITE": "sshd writes a login audit record when it allocates a pty: without it interactive SSH "
                   "sessions (and the web terminal over SSH) fail",
    "CHOWN": "chown to other users: useradd, package scripts giving a service its directories",
    "DAC_OVERRIDE": "root writes files it does not own whatever their mode, as root expects to",
    "FOWNER": "chmod/utime on files of other users (dpkg and tar unpacking, root tidying up)",
    "FSETID": "keep setuid/setgid bits when root sets them on files of another group (dpkg unpacking "
              "setgid binaries such as crontab)",
    "KILL": "root signals processes of other users (a user's own services, jobs run as another user)",
    "NET_BIND_SERVICE": "sshd on port 22 on Docker before 20.10 (newer Docker lets anyone bind low ports in "
                        "the container's network namespace, so there it changes nothing)",
}

#: What ``no-new-privileges`` blocks: gaining privileges through execve of a setuid/setgid
#: binary or one with file capabilities (``sudo``, ``su`` to root). Root starts with all
#: it may have, and sshd only ever drops privileges, which stays allowed.
SECURITY_OPTIONS = ["no-new-privileges"]

DEFAULT_PIDS_LIMIT = 2048


@dataclass(frozen=True)
class Hardening:
    """Per-host settings an operator may change (``REMOTEGPU_PIDS_LIMIT``)."""

    pids_limit: int = DEFAULT_PIDS_LIMIT

    def __post_init__(self) -> None:
        if self.pids_limit < 64:  # sshd + Jupyter + a shell need a few dozen
            raise ValueError(f"pids limit must be at least 64, got {self.pids_limit}")


def container_limits(spec: RuntimeSpec, hardening: Hardening) -> dict[str, Any]:
    """The docker SDK's ``containers.create`` arguments that confine the container."""
    memory = int(spec.memory_gib * 1024**3)
    return {
        "cap_drop": ["ALL"],
        "cap_add": sorted(ADDED_CAPABILITIES),
        "security_opt": list(SECURITY_OPTIONS),
        "pids_limit": hardening.pids_limit,  # a fork bomb stops here, not at the host's limit
        "nano_cpus": int(spec.cpu_cores * 1e9),
        "mem_limit": memory,
        "memswap_limit": memory,  # memory + swap = memory: no swap (Docker's default is twice)
    }


def gpu_environment(spec: RuntimeSpec, *, nvidia_runtime: bool) -> dict[str, str]:
    """The GPU variables of the container, applied *after* the spec's own variables so
    that nothing else decides which GPUs it sees.

    With NVIDIA's container runtime on the host (as Docker's default runtime, or merely
    installed), ``NVIDIA_VISIBLE_DEVICES`` alone would expose devices: ``all`` from a CUDA
    image, or indices of fake GPUs that happen to be real ones. So there it names exactly
    the allocated GPUs by UUID, or ``void`` (none) for a fake-GPU container; a GPU-less
    container gets ``void`` everywhere.
    Without that runtime, fake GPUs are advertised through both variables (machines
    without GPUs that still schedule against a fake inventory)."""
    if spec.fake_gpus and (spec.gpu_indices or spec.gpu_uuids):
        visible = ",".join(str(i) for i in spec.gpu_indices) or ",".join(spec.gpu_uuids)
        if nvidia_runtime:
            return {"CUDA_VISIBLE_DEVICES": visible, "NVIDIA_VISIBLE_DEVICES": "void"}
        return {"CUDA_VISIBLE_DEVICES": visible, "NVIDIA_VISIBLE_DEVICES": visible}
    if spec.gpu_uuids:
        return {"NVIDIA_VISIBLE_DEVICES": ",".join(spec.gpu_uuids)}
    if spec.gpu_indices:
        return {"NVIDIA_VISIBLE_DEVICES": ",".join(str(i) for i in spec.gpu_indices)}
    # Always, NVIDIA runtime or not: containers outlive stop/start, and a runtime an
    # operator installs later would otherwise expose every GPU to this one.
    return {"NVIDIA_VISIBLE_DEVICES": "void"}


def user_environment(spec: RuntimeSpec) -> dict[str, str]:
    """The spec's variables less ``NVIDIA_*``: those steer NVIDIA's runtime hook (which
    devices, MIG monitors, driver capabilities) and only the allocation may do that. The
    API refuses them already; this holds for any caller of the runtime."""
    return {k: v for k, v in spec.env.items() if not k.upper().startswith("NVIDIA_")}


def has_nvidia_runtime(docker_info: dict[str, Any]) -> bool:
    """Whether NVIDIA's container runtime is installed in this Docker (``docker info``)."""
    runtimes = docker_info.get("Runtimes") or {}
    default = str(docker_info.get("DefaultRuntime") or "")
    return "nvidia" in default.lower() or any("nvidia" in str(name).lower() for name in runtimes)
