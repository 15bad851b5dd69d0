"""The web terminal's way in, per environment: docker exec on the embedded host, SSH elsewhere."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from remotegpu.application.environments.entry import EnvironmentEntry
from remotegpu.application.environments.terminal import TerminalRouter, TerminalTarget, private_address_of
from remotegpu.domain.environments.models import Environment, EnvStatus
from remotegpu.domain.fleet.models import Host
from remotegpu.domain.shared.errors import Conflict


class Opener:
    def __init__(self, name: str) -> None:
        self.name = name
        self.opened: list[tuple[TerminalTarget, int, int]] = []

    async def open(self, target: TerminalTarget, *, cols: int = 80, rows: int = 24):
        self.opened.append((target, cols, rows))
        return self.name


LOCAL = Host(id="h-local", name="embedded", runtime="docker", private_address="127.0.0.1")
REMOTE = Host(id="h-remote", name="gpu-7", runtime="docker", address="203.0.113.7", private_address="10.0.0.7")


def router(local: bool = True, ssh: bool = True, local_id: str | None = "h-local") -> TerminalRouter:
    return TerminalRouter(lambda: local_id, Opener("docker") if local else None, Opener("ssh") if ssh else None)


def test_the_embedded_docker_host_gets_docker_exec():
    assert router().choose(TerminalTarget("e1", LOCAL, 20001)).name == "docker"


def test_a_remote_host_gets_the_ssh_bridge():
    assert router().choose(TerminalTarget("e1", REMOTE, 20001)).name == "ssh"


def test_the_embedded_host_without_a_docker_opener_falls_back_to_ssh():
    # e.g. the server cannot talk to this machine's Docker daemon itself
    assert router(local=False).choose(TerminalTarget("e1", LOCAL, 20001)).name == "ssh"


def test_without_an_embedded_agent_every_host_is_remote():
    assert router(local_id=None).choose(TerminalTarget("e1", LOCAL, 20001)).name == "ssh"


@pytest.mark.parametrize("runtime", ["local", "memory"])
def test_runtimes_without_sshd_get_no_terminal(runtime):
    host = Host(id="h-remote", name="dev", runtime=runtime)
    assert router().choose(TerminalTarget("e1", host, 20001)) is None


def test_no_ssh_port_no_ssh_bridge():
    assert router().choose(TerminalTarget("e1", REMOTE, None)) is None


async def test_open_goes_to_the_chosen_opener_with_the_size():
    r = router()
    assert await r.open(TerminalTarget("e1", REMOTE, 20001), cols=132, rows=40) == "ssh"
    assert r.ssh.opened == [(TerminalTarget("e1", REMOTE, 20001), 132, 40)]
    assert r.local.opened == []


async def test_open_without_a_way_in_is_a_conflict():
    with pytest.raises(Conflict) as refused:
        await router(ssh=False).open(TerminalTarget("e1", REMOTE, 20001))
    assert refused.value.code == "terminal_unavailable"


def test_the_private_address_is_the_agents_or_loopback_for_hosts_that_reported_none():
    assert TerminalTarget("e1", REMOTE, 1).private_address == "10.0.0.7"
    assert private_address_of(Host(id="h", name="old")) == "127.0.0.1"


# --- where the SSH bridge dials: a Kubernetes environment's Pod -----------------------

KUBE = Host(id="h-kube", name="cluster", runtime="kubernetes", address="203.0.113.9", private_address="10.0.0.9")


class Pods:
    """What KubeAppEndpoints answers: the running Pod's (IP, container port), or None."""

    def __init__(self, found=None, fails: bool = False) -> None:
        self.found, self.fails, self.asked = found, fails, []

    def address(self, env_id: str, container_port: int):
        self.asked.append((env_id, container_port))
        if self.fails:
            raise OSError("the API server does not answer")
        return self.found


def entry(pods) -> EnvironmentEntry:
    return EnvironmentEntry(uow=None, autostop=None, gateway=None, pod_addresses=(lambda: pods) if pods is not False else None)


def env(host: Host) -> Environment:
    now = datetime.now(timezone.utc)
    return Environment(id="e1", owner_id="u1", workspace_id="w1", name="e", image="img", gpu_count=0, gpu_model=None,
                       cpu_cores=1, memory_gib=1, created_at=now, updated_at=now, host_id=host.id, status=EnvStatus.RUNNING)


async def test_a_kubernetes_environment_is_dialled_at_its_pods_ip_and_port_22():
    pods = Pods(("127.31.0.5", 22))
    target = await entry(pods).ssh_target(env(KUBE), KUBE, {"ssh": 30022})
    assert (target.private_address, target.ssh_port) == ("127.31.0.5", 22)
    assert pods.asked == [("e1", 22)]
    assert router().choose(target).name == "ssh"


async def test_a_pod_without_an_address_or_an_api_server_that_does_not_answer_is_not_running():
    for pods in (Pods(None), Pods(fails=True)):
        with pytest.raises(Conflict) as raised:
            await entry(pods).ssh_target(env(KUBE), KUBE, {"ssh": 30022})
        assert raised.value.code == "not_running"


async def test_a_server_that_reaches_no_cluster_keeps_the_published_node_port():
    for e in (entry(None), entry(False)):
        target = await e.ssh_target(env(KUBE), KUBE, {"ssh": 30022})
        assert (target.private_address, target.ssh_port) == ("10.0.0.9", 30022)


async def test_other_hosts_never_ask_the_cluster():
    pods = Pods(("127.31.0.5", 22))
    target = await entry(pods).ssh_target(env(REMOTE), REMOTE, {"ssh": 20001})
    assert (target.private_address, target.ssh_port, pods.asked) == ("10.0.0.7", 20001, [])
