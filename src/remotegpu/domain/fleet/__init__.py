"""Fleet context: hosts, their GPUs and GPU topology."""

from remotegpu.domain.fleet.models import Gpu, Host, HostStatus, guess_memory_mib, parse_fake_gpus

__all__ = ["Gpu", "Host", "HostStatus", "guess_memory_mib", "parse_fake_gpus"]
