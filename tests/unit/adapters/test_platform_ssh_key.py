"""The platform's SSH key: created once (0600), stable, only its public half in authorized_keys."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor

from remotegpu.adapters.access.direct_ssh import DirectSshGateway
from remotegpu.adapters.access.platform_key import PlatformSshKey
from remotegpu.application.environments.access_gateway import Entrant


def test_created_once_with_mode_0600_and_reused(tmp_path):
    path = tmp_path / "data" / "platform_ssh_key"
    key = PlatformSshKey(path)
    public = key.public_key()
    assert public.startswith("ssh-ed25519 ") and public.endswith(" remotegpu-platform")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"OPENSSH PRIVATE KEY" in path.read_bytes()
    assert PlatformSshKey(path).public_key() == public  # another process, the same key
    assert list(path.parent.iterdir()) == [path]  # no temporary file left


def test_concurrent_creators_agree_on_one_key(tmp_path):
    path = tmp_path / "platform_ssh_key"
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: PlatformSshKey(path).public_key(), range(16)))
    assert keys == {PlatformSshKey(path).public_key()}


def test_a_too_open_key_file_is_tightened(tmp_path):
    path = tmp_path / "platform_ssh_key"
    PlatformSshKey(path).public_key()
    path.chmod(0o644)
    PlatformSshKey(path).public_key()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_the_gateway_installs_the_platform_key_first_and_never_the_private_one(tmp_path):
    key = PlatformSshKey(tmp_path / "k")
    provision = await DirectSshGateway(platform_key=key).provision(
        None, [Entrant("u1", ["ssh-ed25519 AAAA alice"]), Entrant("u2", ["ssh-ed25519 AAAA alice", "ssh-rsa BBBB bob"])],
    )
    assert provision.authorized_keys == [key.public_key(), "ssh-ed25519 AAAA alice", "ssh-rsa BBBB bob"]
    assert not any("PRIVATE" in k for k in provision.authorized_keys)


async def test_an_unreadable_platform_key_still_installs_the_users_keys(tmp_path):
    broken = tmp_path / "k"
    broken.write_text("not a key")
    broken.chmod(0o600)
    provision = await DirectSshGateway(platform_key=PlatformSshKey(broken)).provision(None, [Entrant("u1", ["ssh-ed25519 AAAA a"])])
    assert provision.authorized_keys == ["ssh-ed25519 AAAA a"]
