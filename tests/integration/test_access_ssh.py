"""SSH into an environment with a real OpenSSH client: the owner's registered keys are
installed and kept in sync (no restart); any other key is refused; scp works."""

from __future__ import annotations

import subprocess
import time

from tests.integration.conftest import AccessWorld, ssh_argv


def ssh(world: AccessWorld, key, *command: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(ssh_argv(key, world.ssh_port, *command), capture_output=True, text=True, timeout=timeout)


def eventually(check, timeout: float = 30, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout}s: {result!r}")
        time.sleep(interval)


def test_owner_key_runs_a_command(access_world):
    result = eventually(lambda: (r := ssh(access_world, access_world.alice.key, "echo", "hello-from-$(hostname)")).returncode == 0 and r)
    assert result.stdout.strip().startswith("hello-from-")


def test_a_strangers_key_is_refused(access_world):
    eventually(lambda: ssh(access_world, access_world.alice.key, "true").returncode == 0)
    result = ssh(access_world, access_world.bob.key, "true")
    assert result.returncode == 255
    assert "Permission denied" in result.stderr


def test_access_describes_the_ssh_endpoint(access_world):
    code, access = access_world.server.request("GET", f"/api/v1/environments/{access_world.env_id}/access", token=access_world.alice.token)
    assert code == 200, access
    assert access["ssh"]["port"] == access_world.ssh_port
    assert access["ssh"]["command"] == f"ssh -p {access_world.ssh_port} root@{access['ssh']['host']}"
    port = access_world.server.url.rsplit(":", 1)[1]
    assert access["jupyter"]["url"] == f"http://{access_world.env_id}--jupyter.localhost:{port}/"  # the app's own host
    assert access["terminal"]["path"] == f"/api/v1/environments/{access_world.env_id}/terminal"


def test_the_known_hosts_line_pins_the_key_sshd_presents(access_world, tmp_path):
    """OpenSSH with strict host key checking accepts the environment on the line the
    access info gives, and refuses it when another key is pinned for that address."""
    world = access_world

    def known_hosts() -> str | None:
        code, access = world.server.request("GET", f"/api/v1/environments/{world.env_id}/access", token=world.alice.token)
        assert code == 200, access
        return access["ssh"]["known_hosts"]

    line = known_hosts()  # the platform made the key with the environment: there at once
    assert line.startswith(f"[{access_world.server.url.split('//')[1].split(':')[0]}]:{world.ssh_port} ssh-ed25519 ")
    pinned = tmp_path / "known_hosts"
    pinned.write_text(line.replace(line.split()[0], f"[127.0.0.1]:{world.ssh_port}") + "\n")

    def strict(key_file) -> subprocess.CompletedProcess:
        argv = ssh_argv(world.alice.key, world.ssh_port, "true")
        argv[argv.index("StrictHostKeyChecking=no")] = "StrictHostKeyChecking=yes"
        argv[argv.index("UserKnownHostsFile=/dev/null")] = f"UserKnownHostsFile={key_file}"
        return subprocess.run(argv, capture_output=True, text=True, timeout=20)

    result = eventually(lambda: (r := strict(pinned)).returncode == 0 and r)
    assert result.returncode == 0
    other = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], capture_output=True)
    assert other.returncode == 0
    impostor = " ".join((tmp_path / "other.pub").read_text().split()[:2])
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"[127.0.0.1]:{world.ssh_port} {impostor}\n")
    result = strict(wrong)
    assert result.returncode == 255 and "verification failed" in result.stderr.lower()


def test_a_key_added_after_start_works_and_a_removed_one_stops_working_without_restart(access_world):
    world = access_world
    container = world.container()
    started = container.attrs["State"]["StartedAt"]
    laptop = world.new_key("alice-laptop")
    assert ssh(world, laptop, "true").returncode == 255  # not registered yet
    key_id = world.add_key(world.alice, laptop)
    eventually(lambda: ssh(world, laptop, "true").returncode == 0)

    code, _ = world.server.request("DELETE", f"/api/v1/users/me/ssh-keys/{key_id}", token=world.alice.token)
    assert code == 204
    eventually(lambda: ssh(world, laptop, "true").returncode == 255)
    assert ssh(world, world.alice.key, "true").returncode == 0  # the other key still works
    container.reload()
    assert container.attrs["State"]["StartedAt"] == started  # never restarted


def test_scp_copies_files_both_ways(access_world, tmp_path):
    world = access_world
    eventually(lambda: ssh(world, world.alice.key, "true").returncode == 0)
    source = tmp_path / "data.bin"
    source.write_bytes(bytes(range(256)) * 4096)
    common = ["-i", str(world.alice.key), "-P", str(world.ssh_port), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
              "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
    up = subprocess.run(["scp", *common, str(source), "root@127.0.0.1:/root/workspace/data.bin"], capture_output=True, text=True, timeout=30)
    assert up.returncode == 0, up.stderr
    back = tmp_path / "back.bin"
    down = subprocess.run(["scp", *common, "root@127.0.0.1:/root/workspace/data.bin", str(back)], capture_output=True, text=True, timeout=30)
    assert down.returncode == 0, down.stderr
    assert back.read_bytes() == source.read_bytes()


def test_sftp_lists_puts_and_gets(access_world, tmp_path):
    world = access_world
    eventually(lambda: ssh(world, world.alice.key, "true").returncode == 0)
    (tmp_path / "notes.txt").write_text("sftp works\n")
    batch = tmp_path / "batch"
    batch.write_text(f"cd /root/workspace\nput {tmp_path / 'notes.txt'} notes-sftp.txt\nls -l\nget notes-sftp.txt {tmp_path / 'fetched.txt'}\n")
    common = ["-i", str(world.alice.key), "-P", str(world.ssh_port), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
              "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
    done = subprocess.run(["sftp", *common, "-b", str(batch), "root@127.0.0.1"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "notes-sftp.txt" in done.stdout
    assert (tmp_path / "fetched.txt").read_text() == "sftp works\n"
    stranger = subprocess.run(["sftp", *common[:1], str(world.bob.key), *common[2:], "-b", str(batch), "root@127.0.0.1"],
                              capture_output=True, text=True, timeout=30)
    assert stranger.returncode != 0  # a key that is not the owner's is refused for sftp too
    assert "Permission denied" in stranger.stderr or "publickey" in stranger.stderr, stranger.stderr
