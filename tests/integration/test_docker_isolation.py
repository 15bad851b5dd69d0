"""Tenants are confined on real Docker: hardened containers (what ``docker inspect``
shows, and that sshd, package managers and a fork bomb behave as they should), one
network per workspace (A cannot reach another workspace's sshd/Jupyter, a container of
its own workspace it can), and egress rules (A cannot reach a service on the host's
own addresses; the host still reaches A). Everything made here goes away at the end:
containers, volumes, networks and firewall rules."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
import uuid
from typing import Any

import pytest

from remotegpu.adapters.runtime.docker_hardening import ADDED_CAPABILITIES, Hardening
from remotegpu.adapters.runtime.docker_network import interface_prefix
from remotegpu.adapters.runtime.docker_runtime import DockerRuntime
from remotegpu.adapters.runtime.egress import EgressPolicy, EgressRules
from remotegpu.application.environments.ports import RuntimeSpec
from remotegpu.application.fleet.agent import authorized_keys_command
from tests.integration.conftest import IMAGE, ssh_argv
from tests.support.components import binary, docker_with_image

PIDS_LIMIT = 200  # small, so that the fork bomb hits it fast on a shared machine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def iptables_rules() -> str:
    return subprocess.run(["iptables", "-S"], capture_output=True, text=True, check=True).stdout


class World:
    def __init__(self, docker: Any, scope: str) -> None:
        self.docker = docker
        self.scope = scope
        self.egress = EgressRules(scope, interface_prefix(scope), EgressPolicy.parse("198.18.0.0/15"))
        self.runtime = DockerRuntime(docker, scope=scope, bind_address="0.0.0.0", stop_timeout=2,
                                     hardening=Hardening(pids_limit=PIDS_LIMIT), egress=self.egress)
        self.env_ids: list[str] = []

    def spec(self, workspace: str, **overrides: Any) -> RuntimeSpec:
        env_id = f"iso-{uuid.uuid4().hex[:10]}"
        self.env_ids.append(env_id)
        values: dict[str, Any] = dict(
            env_id=env_id, image=IMAGE, cpu_cores=0.5, memory_gib=0.5, ports={22: free_port()},
            env={"REMOTEGPU_JUPYTER_ENABLED": "0"}, workspace_id=workspace,
        )
        values.update(overrides)
        return RuntimeSpec(**values)

    def container(self, env_id: str) -> Any:
        return self.docker.containers.get(DockerRuntime.container_name(env_id))

    def ip(self, env_id: str) -> str:
        networks = self.container(env_id).attrs["NetworkSettings"]["Networks"]
        (settings,) = networks.values()
        return settings["IPAddress"]

    def gateway(self, env_id: str) -> str:
        (settings,) = self.container(env_id).attrs["NetworkSettings"]["Networks"].values()
        return settings["Gateway"]

    async def sh(self, env_id: str, script: str) -> tuple[int, str]:
        return await self.runtime.exec(env_id, ["bash", "-c", script])

    async def can_connect(self, env_id: str, host: str, port: int) -> bool:
        """Whether a TCP connect from inside ``env_id`` to host:port succeeds (5 s)."""
        code, _ = await self.sh(env_id, f"timeout 5 bash -c 'exec 3<>/dev/tcp/{host}/{port}' 2>/dev/null")
        return code == 0


@pytest.fixture(scope="module")
def world():
    docker = docker_with_image(IMAGE)
    binary("iptables")
    w = World(docker, f"iso{uuid.uuid4().hex[:8]}")
    try:
        yield w
    finally:
        async def teardown() -> None:
            for env_id in w.env_ids:
                await w.runtime.remove(env_id)
            await w.runtime.close()

        try:
            asyncio.run(teardown())
        finally:
            label = {"label": f"remotegpu.scope={w.scope}"}
            for container in docker.containers.list(all=True, filters=label):
                container.remove(force=True)
            for volume in docker.volumes.list(filters=label):
                volume.remove(force=True)
        leftovers = docker.networks.list(filters={"label": f"remotegpu.scope={w.scope}"})
        rules = iptables_rules()
        # What the test leaves behind is a failure (and is cleaned up anyway).
        for network in leftovers:
            network.remove()
        w.egress.remove()
        assert not leftovers, f"networks left behind: {[n.name for n in leftovers]}"
        assert w.egress.input_chain not in rules and w.egress.forward_chain not in rules


async def eventually(check, timeout: float = 60, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout}s: {result!r}")
        await asyncio.sleep(interval)


def host_reaches(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


# -- hardening ----------------------------------------------------------------------------


async def test_the_container_is_hardened_as_docker_inspect_shows(world):
    spec = world.spec("ws-h")
    await world.runtime.ensure_running(spec)
    host = world.container(spec.env_id).attrs["HostConfig"]

    assert host["CapDrop"] == ["ALL"]
    assert sorted(host["CapAdd"]) == sorted(ADDED_CAPABILITIES) and "NET_RAW" not in host["CapAdd"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["PidsLimit"] == PIDS_LIMIT
    assert host["Memory"] == host["MemorySwap"] == 512 * 1024**2
    assert host["NanoCpus"] == 500_000_000
    # Inside: no raw sockets, NoNewPrivs set on the processes.
    code, out = await world.sh(spec.env_id, "grep NoNewPrivs /proc/self/status; python3 -c 'import socket; "
                                            "socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)'")
    assert "NoNewPrivs:\t1" in out
    assert code != 0 and "Operation not permitted" in out


async def test_root_logs_in_over_ssh_and_installs_packages(world, tmp_path):
    """sshd (privilege separation, PAM) works under the capability set and
    no-new-privileges; dpkg and pip install as root without sudo (offline: local packages)."""
    spec = world.spec("ws-h")
    await world.runtime.ensure_running(spec)
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    code, out = await world.runtime.exec(spec.env_id, authorized_keys_command([(tmp_path / "key.pub").read_text().strip()]))
    assert code == 0, out

    def login() -> subprocess.CompletedProcess:
        return subprocess.run(ssh_argv(key, spec.ports[22], "id -u; grep NoNewPrivs /proc/self/status"),
                              capture_output=True, text=True, timeout=30)

    result = await eventually(lambda: asyncio.to_thread(lambda: (r := login()).returncode == 0 and r))
    assert result.stdout.split()[0] == "0" and "NoNewPrivs:\t1" in result.stdout
    with_pty = ssh_argv(key, spec.ports[22], "tty")
    with_pty.insert(1, "-tt")  # an interactive session: sshd allocates a pty (needs AUDIT_WRITE)
    result = subprocess.run(with_pty, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode == 0 and "/dev/pts/" in result.stdout, result.stderr

    package = (
        "set -e; d=$(mktemp -d); mkdir -p $d/pkg/DEBIAN $d/pkg/opt/rgpu-probe; echo hi > $d/pkg/opt/rgpu-probe/file; "
        "printf 'Package: rgpu-probe\\nVersion: 1.0\\nArchitecture: all\\nMaintainer: t <t@t>\\nDescription: t\\n' "
        "> $d/pkg/DEBIAN/control; dpkg-deb --build $d/pkg $d/probe.deb >/dev/null; dpkg -i $d/probe.deb >/dev/null; "
        "dpkg -s rgpu-probe | grep -q 'install ok installed'; cat /opt/rgpu-probe/file; "
        # A wheel made by hand (no build backend, no index needed), installed into the image's venv.
        "/opt/jupyter/bin/python - $d/rgpu_probe-1.0-py3-none-any.whl <<'PY'\n"
        "import sys, zipfile\n"
        "with zipfile.ZipFile(sys.argv[1], 'w') as w:\n"
        "    w.writestr('rgpu_probe/__init__.py', '')\n"
        "    w.writestr('rgpu_probe-1.0.dist-info/METADATA', 'Metadata-Version: 2.1\\nName: rgpu-probe\\nVersion: 1.0\\n')\n"
        "    w.writestr('rgpu_probe-1.0.dist-info/WHEEL', 'Wheel-Version: 1.0\\nGenerator: t\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n')\n"
        "    w.writestr('rgpu_probe-1.0.dist-info/RECORD', '')\n"
        "PY\n"
        "/opt/jupyter/bin/pip install -q --no-index $d/rgpu_probe-1.0-py3-none-any.whl; "
        "/opt/jupyter/bin/python -c 'import rgpu_probe; print(\"pip-ok\")'"
    )
    code, out = await world.sh(spec.env_id, package)
    assert code == 0, out
    assert "hi" in out and "pip-ok" in out


async def test_a_fork_bomb_stops_at_the_pid_limit_and_the_host_keeps_answering(world):
    spec = world.spec("ws-h")
    await world.runtime.ensure_running(spec)
    container = world.container(spec.env_id)
    container.exec_run(["bash", "-c", "bomb() { bomb | bomb & }; bomb"], detach=True)
    try:
        def pids() -> int:
            return int(container.stats(stream=False).get("pids_stats", {}).get("current") or 0)

        reached = await eventually(lambda: asyncio.to_thread(lambda: (n := pids()) >= PIDS_LIMIT - 5 and n), timeout=120)
        assert reached <= PIDS_LIMIT
        # It stays there (the bomb keeps trying), and the host still starts processes.
        for _ in range(3):
            assert await asyncio.to_thread(pids) <= PIDS_LIMIT
            await asyncio.sleep(0.5)
        assert subprocess.run(["sh", "-c", "echo alive"], capture_output=True, text=True, timeout=10).stdout == "alive\n"
        assert world.docker.ping()
    finally:
        await world.runtime.remove(spec.env_id)  # kills the bomb with its container
    world.env_ids.remove(spec.env_id)


# -- networks -----------------------------------------------------------------------------


async def test_workspaces_cannot_reach_each_other_but_a_workspace_reaches_itself(world):
    jupyter = {"REMOTEGPU_JUPYTER_TOKEN": "t0ken"}  # Jupyter on 8888, like every environment
    a, a2 = world.spec("ws-one"), world.spec("ws-one")
    b = world.spec("ws-two", env=jupyter, ports={22: free_port(), 8888: free_port()})
    for spec in (a, a2, b):
        await world.runtime.ensure_running(spec)
    assert world.container(a.env_id).attrs["HostConfig"]["NetworkMode"] == f"rgpu-net-{world.scope}-ws-one"
    b_ip = world.ip(b.env_id)
    # B's sshd and Jupyter answer (the host reaches them) ...
    await eventually(lambda: asyncio.to_thread(host_reaches, b_ip, 22))
    await eventually(lambda: asyncio.to_thread(host_reaches, b_ip, 8888), timeout=90)
    # ... and the same shell reaches a container of its own workspace,
    assert await eventually(lambda: world.can_connect(a.env_id, world.ip(a2.env_id), 22))
    # but not B: neither by container IP nor through B's published port on the host.
    assert not await world.can_connect(a.env_id, b_ip, 22)
    assert not await world.can_connect(a.env_id, b_ip, 8888)
    host_ip = first_non_loopback_address()
    assert host_reaches(host_ip, b.ports[22])
    assert not await world.can_connect(a.env_id, host_ip, b.ports[22])


async def test_a_container_cannot_reach_services_on_the_hosts_own_addresses(world):
    a = world.spec("ws-egress")
    await world.runtime.ensure_running(a)
    host_ip, gateway = first_non_loopback_address(), world.gateway(a.env_id)
    with tcp_listener() as port:
        assert host_reaches(host_ip, port) and host_reaches(gateway, port)  # the service is up
        assert not await world.can_connect(a.env_id, host_ip, port)
        assert not await world.can_connect(a.env_id, gateway, port)
    # The host still reaches the container (replies pass): the platform's proxy does this.
    assert await eventually(lambda: asyncio.to_thread(host_reaches, world.ip(a.env_id), 22))
    # Link-local (metadata) and the operator's ranges are dropped on the way out.
    rules = iptables_rules()
    assert f"-A {world.egress.forward_chain} -d 169.254.0.0/16 -j DROP" in rules
    assert f"-A {world.egress.forward_chain} -d 198.18.0.0/15 -j DROP" in rules
    assert f"-A INPUT -i {interface_prefix(world.scope)}+" in rules


async def test_the_egress_rules_are_put_back_when_something_flushed_them(world):
    a = world.spec("ws-egress")
    await world.runtime.ensure_running(a)
    world.egress.remove()  # a firewall reload, say
    assert not world.egress.installed()
    world.runtime._egress_checked_at = float("-inf")  # the next round re-checks at once
    await world.runtime.list()  # starts the round in the background
    await eventually(lambda: asyncio.to_thread(world.egress.installed), timeout=30)


async def test_networks_go_with_their_last_container(world):
    a = world.spec("ws-short")
    await world.runtime.ensure_running(a)
    name = f"rgpu-net-{world.scope}-ws-short"
    await world.runtime.stop(a.env_id)
    world.runtime._networks.prune(grace_seconds=0)
    assert world.docker.networks.list(names=[name]), "a stopped container still needs its network"
    await world.runtime.remove(a.env_id)
    world.env_ids.remove(a.env_id)
    assert world.docker.networks.list(names=[name]), "a network younger than a minute is kept a while"
    world.runtime._networks.prune(grace_seconds=0)  # what housekeeping does once it is older
    assert not world.docker.networks.list(names=[name])


async def test_a_container_from_before_workspace_networks_moves_to_its_own_at_its_next_start(world):
    a = world.spec("ws-move")
    await world.runtime.ensure_running(a)
    await world.runtime.stop(a.env_id)
    own = f"rgpu-net-{world.scope}-ws-move"
    world.docker.networks.get("bridge").connect(world.container(a.env_id))  # as an older version left it
    world.docker.networks.get(own).disconnect(world.container(a.env_id))

    await world.runtime.ensure_running(a)

    assert list(world.container(a.env_id).attrs["NetworkSettings"]["Networks"]) == [own]


# -- helpers --------------------------------------------------------------------------------


def first_non_loopback_address() -> str:
    """This machine's address on its default route (not loopback, not a Docker bridge)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.200", 9))  # no packet is sent: it only picks the route's source address
            address = sock.getsockname()[0]
        except OSError:
            address = ""
    if not address or address.startswith("127."):
        pytest.fail("this machine has no non-loopback IPv4 address to test egress against", pytrace=False)
    return address


class tcp_listener:
    """A TCP service on all of the host's addresses, answering every connection."""

    def __enter__(self) -> int:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        return self.sock.getsockname()[1]

    def _serve(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            conn.close()

    def __exit__(self, *exc: object) -> None:
        self.stopping = True
        self.thread.join(timeout=5)
        self.sock.close()
