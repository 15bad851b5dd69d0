"""The SSH gateway (the bastion) with real OpenSSH clients against a real container.

One server on Docker (its own scope) with the gateway on; one running environment,
shared in a team workspace of alice's where carol and dave are members. Through the
gateway: ssh with a command and its exit status, scp both ways (SFTP and legacy
protocol), sftp, rsync, ``-L`` forwarding, the jump form (``ProxyJump``), a stranger
refused, and revocation reaching live sessions within seconds (a deleted key, a member
removed from the workspace, a disabled account), plus the audit record of each stay.

The server records terminal sessions (``REMOTEGPU_SSH_GATEWAY_RECORD``): every test
here runs through the recording relay, and the recordings are checked against what the
client printed, byte for byte.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import IMAGE, wait_running
from tests.support.components import binary, docker_with_image, remove_scope
from tests.support.live_server import LiveServer, free_port, live_server
from tests.support.workspaces import join_workspace_live

PASSWORD = "correct horse battery"


@dataclass
class Person:
    username: str
    token: str
    user_id: str
    key: Path
    key_id: str


@dataclass
class World:
    server: LiveServer
    docker: object
    gateway_port: int
    env_id: str
    workspace_id: str
    env_ssh_port: int
    admin: str
    people: dict[str, Person]
    tmp: Path

    def config(self, person: Person) -> Path:
        """An ssh_config with the gateway form and the jump form (ProxyJump) for ``person``."""
        path = self.tmp / f"config-{person.username}"
        path.write_text(
            f"Host gw\n    HostName 127.0.0.1\n    Port {self.gateway_port}\n    User {self.env_id}\n"
            f"    IdentityFile {person.key}\n    IdentitiesOnly yes\n    BatchMode yes\n"
            f"    StrictHostKeyChecking no\n    UserKnownHostsFile /dev/null\n    LogLevel ERROR\n    ConnectTimeout 10\n"
            f"Host jump\n    HostName 127.0.0.1\n    Port {self.gateway_port}\n    User {person.username}\n"
            f"    IdentityFile {person.key}\n    IdentitiesOnly yes\n    BatchMode yes\n"
            f"    StrictHostKeyChecking no\n    UserKnownHostsFile /dev/null\n    LogLevel ERROR\n"
            f"Host {self.env_id}\n    User root\n    ProxyJump jump\n"
            f"    IdentityFile {person.key}\n    IdentitiesOnly yes\n    BatchMode yes\n"
            f"    StrictHostKeyChecking no\n    UserKnownHostsFile /dev/null\n    LogLevel ERROR\n"
        )
        return path


def run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def ssh(world: World, person: Person, *command: str, host: str = "gw") -> subprocess.CompletedProcess:
    return run([binary("ssh"), "-F", str(world.config(person)), host, *command])


def eventually(check, timeout: float = 30, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout}s: {result!r}")
        time.sleep(interval)


def new_key(tmp: Path, name: str) -> Path:
    path = tmp / f"key-{name}"
    subprocess.run([binary("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True)
    return path


def add_key(server: LiveServer, token: str, key: Path) -> str:
    code, body = server.request("POST", "/api/v1/users/me/ssh-keys",
                                {"public_key": key.with_suffix(".pub").read_text(), "name": key.name}, token=token)
    assert code == 201, body
    return body["id"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    docker = docker_with_image(IMAGE)
    binary("ssh"), binary("scp"), binary("sftp"), binary("rsync")
    tmp = tmp_path_factory.mktemp("sshgw")
    scope = f"sgw{uuid.uuid4().hex[:8]}"
    gateway_port = free_port()
    try:
        with live_server(
            tmp_path_factory.mktemp("sshgw-server"), REMOTEGPU_RUNTIME="docker", REMOTEGPU_AGENT_FAKE_GPUS="2xNVIDIA L4 24GB",
            REMOTEGPU_HEARTBEAT_SECONDS="1", REMOTEGPU_DOCKER_SCOPE=scope, REMOTEGPU_AGENT_NAME=f"host-{scope}",
            REMOTEGPU_SSH_GATEWAY_PORT=str(gateway_port), REMOTEGPU_SSH_GATEWAY_BIND="127.0.0.1",
            REMOTEGPU_SSH_GATEWAY_RECHECK_SECONDS="1", REMOTEGPU_SSH_GATEWAY_RECORD="true",
        ) as server:
            admin = server.login("admin", "admin-password-123")
            people: dict[str, Person] = {}
            for name in ("alice", "bob", "carol", "dave"):
                username = f"{name}{scope[3:9]}"
                token = server.signup(username, PASSWORD)
                code, me = server.request("GET", "/api/v1/users/me", token=token)
                assert code == 200, me
                key = new_key(tmp, username)
                people[name] = Person(username, token, me["id"], key, add_key(server, token, key))
            alice = people["alice"]
            code, ws = server.request("POST", "/api/v1/workspaces", {"name": f"team-{scope}"}, token=alice.token)
            assert code == 201, ws
            for name in ("carol", "dave"):
                join_workspace_live(server, alice.token, ws["id"], people[name].username, people[name].token)
            code, env = server.request(
                "POST", "/api/v1/environments",
                {"name": "gateway", "workspace_id": ws["id"], "gpu_count": 0, "cpu_cores": 1, "memory_gib": 1, "shared": True},
                token=alice.token,
            )
            assert code == 202, env
            env = wait_running(server, alice.token, env["id"])
            ports = {p["purpose"]: p["port"] for p in env["ports"]}
            w = World(server, docker, gateway_port, env["id"], ws["id"], ports["ssh"], admin, people, tmp)
            # The agent installs the platform's key and the entrants' keys within a beat or two.
            eventually(lambda: ssh(w, alice, "true").returncode == 0, timeout=60)
            yield w
    finally:
        remove_scope(docker, scope)


def test_ssh_through_the_gateway_runs_a_command_and_returns_its_exit_status(world):
    alice = world.people["alice"]
    result = ssh(world, alice, "echo", "hello-from-$(hostname)", ";", "echo", "oops", ">&2")
    assert result.returncode == 0, result.stderr
    container = world.docker.containers.list(filters={"label": f"remotegpu.env_id={world.env_id}"})[0]
    assert result.stdout.strip() == f"hello-from-{container.attrs['Config']['Hostname']}"
    assert result.stderr.strip() == "oops"  # stderr stays stderr
    assert ssh(world, alice, "exit", "7").returncode == 7
    shell = subprocess.run([binary("ssh"), "-F", str(world.config(alice)), "-tt", "gw"], input="echo tty-$(tty | cut -c1-8)\nexit 3\n",
                           capture_output=True, text=True, timeout=30)
    assert "tty-/dev/pts" in shell.stdout and shell.returncode == 3  # an interactive shell with a pty


def test_a_shared_environments_member_enters_and_a_stranger_is_refused(world):
    assert ssh(world, world.people["carol"], "true").returncode == 0  # a member of the workspace, environment shared
    bob = world.people["bob"]
    refused = ssh(world, bob, "true")
    assert refused.returncode == 255 and "Permission denied" in refused.stderr
    jump = ssh(world, bob, "true", host=world.env_id)  # bob's own jump login works, the forward to alice's env does not
    assert jump.returncode == 255 and "forwarding failed" in jump.stderr, jump.stderr
    unknown = run([binary("ssh"), "-F", str(world.config(world.people["alice"])), "-l", str(uuid.uuid4()), "gw", "true"])
    assert unknown.returncode == 255 and "Permission denied" in unknown.stderr


def test_scp_copies_both_ways_with_both_protocols(world):
    alice = world.people["alice"]
    source = world.tmp / "data.bin"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    config = str(world.config(alice))
    for flag in ([], ["-O"]):  # SFTP-based scp (OpenSSH ≥ 9) and the legacy scp protocol
        up = run([binary("scp"), "-F", config, *flag, str(source), "gw:/root/workspace/data.bin"])
        assert up.returncode == 0, up.stderr
        back = world.tmp / f"back{len(flag)}.bin"
        down = run([binary("scp"), "-F", config, *flag, "gw:/root/workspace/data.bin", str(back)])
        assert down.returncode == 0, down.stderr
        assert back.read_bytes() == source.read_bytes()
    # and through the jump form, end to end with the user's own key
    jumped = world.tmp / "jumped.bin"
    down = run([binary("scp"), "-F", config, f"{world.env_id}:/root/workspace/data.bin", str(jumped)])
    assert down.returncode == 0, down.stderr
    assert jumped.read_bytes() == source.read_bytes()


def test_sftp_puts_lists_and_gets(world):
    alice = world.people["alice"]
    (world.tmp / "notes.txt").write_text("sftp through the gateway\n")
    batch = world.tmp / "batch"
    batch.write_text(f"cd /root/workspace\nput {world.tmp / 'notes.txt'} notes-gw.txt\nls -l\n"
                     f"get notes-gw.txt {world.tmp / 'fetched.txt'}\n")
    done = run([binary("sftp"), "-F", str(world.config(alice)), "-b", str(batch), "gw"])
    assert done.returncode == 0, done.stderr
    assert "notes-gw.txt" in done.stdout
    assert (world.tmp / "fetched.txt").read_text() == "sftp through the gateway\n"


def test_rsync_over_the_gateway(world):
    alice = world.people["alice"]
    tree = world.tmp / "tree"
    (tree / "sub").mkdir(parents=True)
    for i in range(5):
        (tree / "sub" / f"f{i}.txt").write_text(f"file {i}\n" * (i + 1))
    rsh = f"{binary('ssh')} -F {world.config(alice)}"
    up = run([binary("rsync"), "-a", "-e", rsh, f"{tree}/", "gw:/root/workspace/tree/"])
    assert up.returncode == 0, up.stderr
    listing = ssh(world, alice, "cat", "/root/workspace/tree/sub/f3.txt")
    assert listing.stdout == "file 3\n" * 4
    (tree / "sub" / "f0.txt").write_text("changed\n")
    again = run([binary("rsync"), "-a", "--itemize-changes", "-e", rsh, f"{tree}/", "gw:/root/workspace/tree/"])
    assert again.returncode == 0, again.stderr
    assert "sub/f0.txt" in again.stdout and "sub/f1.txt" not in again.stdout  # only the change travels
    back = world.tmp / "tree-back"
    down = run([binary("rsync"), "-a", "-e", rsh, "gw:/root/workspace/tree/", f"{back}/"])
    assert down.returncode == 0, down.stderr
    assert (back / "sub" / "f0.txt").read_text() == "changed\n"


def test_local_port_forwarding_reaches_a_service_in_the_environment(world):
    alice = world.people["alice"]
    container = world.docker.containers.list(filters={"label": f"remotegpu.env_id={world.env_id}"})[0]
    container.exec_run(["sh", "-c", "mkdir -p /tmp/www && echo forwarded-ok > /tmp/www/index.html && "
                        "cd /tmp/www && nohup python3 -m http.server 8765 --bind 127.0.0.1 >/dev/null 2>&1 &"], detach=True)
    local = free_port()
    tunnel = subprocess.Popen([binary("ssh"), "-F", str(world.config(alice)), "-N", "-L", f"{local}:localhost:8765", "gw"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def fetch():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{local}/index.html", timeout=5) as r:
                    return r.read().decode()
            except OSError:
                return None
        assert eventually(fetch, timeout=30) == "forwarded-ok\n"
    finally:
        tunnel.terminate()
        tunnel.wait(10)
        container.exec_run(["sh", "-c", "pkill -f 'http.server 8765' || true"])


def _try_live(world: World, person: Person, host: str = "gw", tty: bool = False) -> subprocess.Popen | None:
    """A session that stays (``sleep``), once it printed "ready"; None when it could not log in."""
    proc = subprocess.Popen([binary("ssh"), "-F", str(world.config(person)), *(["-tt"] if tty else []), host,
                             "echo ready-$((40+2)); sleep 120"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.stdout.readline().strip() == "ready-42":
        return proc
    proc.kill()
    proc.wait()
    return None


def _live(world: World, person: Person, host: str = "gw", tty: bool = False) -> subprocess.Popen:
    proc = _try_live(world, person, host, tty)
    assert proc is not None, "could not start a session"
    return proc


def _ends_within(proc: subprocess.Popen, seconds: float) -> int:
    try:
        return proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"the session still ran {seconds}s after access was revoked") from None


def test_a_deleted_key_drops_the_live_session_and_is_refused_after(world):
    alice = world.people["alice"]
    laptop = new_key(world.tmp, "alice-laptop")
    key_id = add_key(world.server, alice.token, laptop)
    person = Person(alice.username, alice.token, alice.user_id, laptop, key_id)
    gateway = _live(world, person, tty=True)  # a terminal: recorded (test_recordings_...)
    # The jump form logs in to the environment's sshd with the key itself: once the agent installed it.
    jumped = eventually(lambda: _try_live(world, person, host=world.env_id), timeout=30)
    code, _ = world.server.request("DELETE", f"/api/v1/users/me/ssh-keys/{key_id}", token=alice.token)
    assert code == 204
    assert _ends_within(gateway, 10) == 255
    assert _ends_within(jumped, 10) == 255
    assert ssh(world, person, "true").returncode == 255
    assert ssh(world, alice, "true").returncode == 0  # her other key still works


def test_a_member_removed_from_the_workspace_is_dropped(world):
    carol = world.people["carol"]
    proc = _live(world, carol)
    code, _ = world.server.request("DELETE", f"/api/v1/workspaces/{world.workspace_id}/members/{carol.user_id}",
                                   token=world.people["alice"].token)
    assert code == 204
    assert _ends_within(proc, 10) == 255
    assert ssh(world, carol, "true").returncode == 255


def test_a_disabled_account_is_dropped(world):
    dave = world.people["dave"]
    proc = _live(world, dave)
    code, body = world.server.request("PATCH", f"/api/v1/users/{dave.user_id}", {"is_active": False}, token=world.admin)
    assert code == 200, body
    assert _ends_within(proc, 10) == 255
    assert ssh(world, dave, "true").returncode == 255


def test_the_gateway_keeps_its_host_key_and_the_hosts_port_is_not_needed(world):
    """The gateway presents one persistent key; what it relays is the environment's own sshd."""
    scan = run([binary("ssh-keyscan"), "-t", "ed25519", "-p", str(world.gateway_port), "127.0.0.1"])
    assert "ssh-ed25519" in scan.stdout
    again = run([binary("ssh-keyscan"), "-t", "ed25519", "-p", str(world.gateway_port), "127.0.0.1"])
    assert scan.stdout.split()[-1] == again.stdout.split()[-1]
    with socket.create_connection(("127.0.0.1", world.gateway_port), timeout=5) as s:
        assert s.recv(64).startswith(b"SSH-2.0-RemoteGPU_gateway")


def test_access_info_offers_the_gateway_first_and_its_pinned_key_works(world):
    alice = world.people["alice"]
    code, access = world.server.request("GET", f"/api/v1/environments/{world.env_id}/access", token=alice.token)
    assert code == 200, access
    ssh_info = access["ssh"]
    assert ssh_info["via"] == "gateway" and ssh_info["port"] == world.gateway_port and ssh_info["user"] == world.env_id
    assert ssh_info["command"] == f"ssh -p {world.gateway_port} {world.env_id}@{ssh_info['host']}"
    assert f"User {world.env_id}" in ssh_info["config"] and f"Port {world.gateway_port}" in ssh_info["config"]
    assert ssh_info["jump_command"] == f"ssh -J {alice.username}@{ssh_info['host']}:{world.gateway_port} root@{world.env_id}"
    assert access["ssh_direct"]["via"] == "direct" and access["ssh_direct"]["port"] == world.env_ssh_port  # still an option
    # The known_hosts line pins the gateway's own key: OpenSSH with strict checking accepts it.
    pinned = world.tmp / "gateway_known_hosts"
    line = ssh_info["known_hosts"]
    pinned.write_text(line.replace(line.split()[0], f"[127.0.0.1]:{world.gateway_port}") + "\n")
    result = run([binary("ssh"), "-i", str(alice.key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                  "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={pinned}", "-p", str(world.gateway_port),
                  f"{world.env_id}@127.0.0.1", "echo", "pinned"])
    assert result.returncode == 0 and result.stdout.strip() == "pinned", result.stderr


TYPED = (
    "echo first-$((1+1))\n"
    "seq 1 20000 | sed 's/^/line-/'\n"  # a long stretch of output: many packets, the window refilled
    "printf 'snow \\342\\230\\203 done\\n'\n"  # multi-byte output
    "echo last-$((6*7)); exit 5\n"  # the tail: printed just before the shell exits
)


def _sessions(world: World) -> list[dict]:
    code, page = world.server.request("GET", f"/api/v1/ssh-sessions?environment_id={world.env_id}&limit=500",
                                      token=world.admin)
    assert code == 200, page
    return page["items"]


def _cast(world: World, session_id: str, token: str) -> tuple[int, dict, list]:
    request = urllib.request.Request(f"{world.server.url}/api/v1/ssh-sessions/{session_id}/recording",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            assert r.headers["Content-Type"].startswith("application/x-asciicast")
            lines = r.read().decode().splitlines()
    except urllib.error.HTTPError as e:
        return e.code, {}, []
    return 200, json.loads(lines[0]), [json.loads(line) for line in lines[1:]]


def test_a_recorded_terminal_session_is_announced_and_its_cast_is_what_the_client_saw(world):
    """The tail included: the cast's output is byte for byte what OpenSSH printed, in order."""
    alice = world.people["alice"]
    before = {i["id"] for i in _sessions(world)}
    # stdin closes right after the last line (as piping into ssh -tt does): the shell's
    # own output still races that EOF, recorded or not.
    shell = subprocess.run([binary("ssh"), "-F", str(world.config(alice)), "-o", "LogLevel=INFO", "-tt", "gw"],
                           input=TYPED.encode(), capture_output=True, timeout=60)
    printed = shell.stdout.decode()
    assert shell.returncode == 5, shell.stderr
    assert "interactive sessions through this gateway are recorded" in shell.stderr.decode()  # the banner
    assert "line-20000\r\n" in printed and "snow \u2603 done" in printed
    assert "last-42\r\n" in printed

    def ended() -> dict | None:
        return next((i for i in _sessions(world) if i["id"] not in before and i["user_id"] == alice.user_id
                     and i["channels"] == ["shell"] and i["ended_at"]), None)

    item = eventually(ended, timeout=20)
    assert item["recorded"] is True
    code, header, events = _cast(world, item["id"], world.admin)
    assert code == 200
    assert header["version"] == 2 and header["width"] > 0 and header["height"] > 0 and header["env"]["TERM"]
    assert {kind for _, kind, _ in events} == {"o"}
    assert [t for t, _, _ in events] == sorted(t for t, _, _ in events)
    recorded = "".join(text for _, _, text in events)
    assert recorded == printed  # every byte the client got, in order, the tail included
    assert (recorded.index("echo first-$((1+1))") < recorded.index("first-2\r\n") < recorded.index("line-1\r\n")
            < recorded.index("line-20000\r\n") < recorded.index("snow \u2603 done") < recorded.rindex("last-42"))


def test_recordings_are_kept_for_dropped_sessions_not_for_copies_and_only_admins_read_them(world):
    alice, bob = world.people["alice"], world.people["bob"]
    items = eventually(lambda: (r := _sessions(world)) and all(i["ended_at"] for i in r) and r, timeout=20)
    # The deleted key's live terminal (test_a_deleted_key_...): dropped, and its recording kept.
    dropped = [i for i in items if i["user_id"] == alice.user_id and i["end_reason"] == "revoked" and i["recorded"]]
    assert dropped, items
    code, _, events = _cast(world, dropped[0]["id"], world.admin)
    assert code == 200 and "ready-42" in "".join(text for _, _, text in events)
    # No terminal, no recording: sftp, scp, rsync, plain commands, jumps.
    assert not any(i["recorded"] for i in items if i["kind"] == "jump" or "sftp" in i["channels"]
                   or "forward:localhost:8765" in i["channels"])
    assert any(not i["recorded"] for i in items if i["kind"] == "session" and i["channels"] == ["exec"])
    # The platform admins' only: the session's own user and anyone else get a 404, as for a made-up id.
    for token in (alice.token, bob.token):
        assert _cast(world, dropped[0]["id"], token)[0] == 404
    assert _cast(world, str(uuid.uuid4()), world.admin)[0] == 404
    unrecorded = next(i for i in items if not i["recorded"])
    assert _cast(world, unrecorded["id"], world.admin)[0] == 404
    # The same from a shell: remotegpu ssh-sessions ls / recording.
    env = {**os.environ, "REMOTEGPU_URL": world.server.url, "REMOTEGPU_TOKEN": world.admin}
    cli = [sys.executable, "-m", "remotegpu.entrypoints.cli", "ssh-sessions"]
    listed = subprocess.run([*cli, "ls", "--environment", world.env_id, "--limit", "500"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    line = next(row for row in listed.stdout.splitlines() if row.startswith(dropped[0]["id"]))
    assert line.rstrip().endswith("yes") and "revoked" in line
    saved = world.tmp / "dropped.cast"
    got = subprocess.run([*cli, "recording", dropped[0]["id"], "-o", str(saved)], env=env, capture_output=True, timeout=60)
    assert got.returncode == 0 and b"ready-42" in saved.read_bytes(), got.stderr
    refused = subprocess.run([*cli, "recording", dropped[0]["id"]], env={**env, "REMOTEGPU_TOKEN": alice.token},
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "404" in refused.stderr


def test_every_stay_is_in_the_audit_record(world):
    """Who entered which environment, when, from where, for how long, what ran — and who was dropped."""
    alice, carol, dave = world.people["alice"], world.people["carol"], world.people["dave"]

    def records() -> list[dict]:
        code, page = world.server.request("GET", f"/api/v1/workspaces/{world.workspace_id}/ssh-sessions?limit=500",
                                          token=alice.token)
        assert code == 200, page
        return page["items"]

    # Sessions end a moment after the client goes: every one of the earlier tests' stays is closed.
    items = eventually(lambda: (r := records()) and all(i["ended_at"] for i in r) and r, timeout=20)
    assert {i["environment_id"] for i in items} == {world.env_id}
    assert all(i["client_address"] == "127.0.0.1" and i["key_fingerprint"].startswith("SHA256:") for i in items)
    assert all(i["duration_seconds"] is not None and i["duration_seconds"] >= 0 for i in items)
    mine = [i for i in items if i["user_id"] == alice.user_id]
    assert {i["kind"] for i in mine} == {"session", "jump"}
    channels = {c for i in mine for c in i["channels"]}
    assert {"exec", "shell", "sftp", "forward:localhost:8765"} <= channels
    revoked = {i["username"] for i in items if i["end_reason"] == "revoked"}
    assert {carol.username, dave.username, alice.username} <= revoked  # removed, disabled, key deleted
    # Platform admins see it too; a stranger's workspace does not exist for them.
    code, page = world.server.request("GET", f"/api/v1/ssh-sessions?environment_id={world.env_id}", token=world.admin)
    assert code == 200 and page["total"] == len(items)
    code, _ = world.server.request("GET", f"/api/v1/workspaces/{world.workspace_id}/ssh-sessions",
                                   token=world.people["bob"].token)
    assert code == 404
