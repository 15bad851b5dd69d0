"""A file below a container's root, read from its host: no link planted by the
container's user is followed (formerly covered through the agent's host-key reading)."""

from __future__ import annotations

import pytest

from remotegpu.adapters.runtime.contained import read_contained_file

PATH = "/etc/ssh/ssh_host_ed25519_key.pub"


def _container_root(tmp_path):
    root = tmp_path / "4242" / "root"
    (root / "etc" / "ssh").mkdir(parents=True)
    return root


def test_a_regular_file_is_read_up_to_the_limit(tmp_path):
    root = _container_root(tmp_path)
    (root / "etc" / "ssh" / "ssh_host_ed25519_key.pub").write_text("ssh-ed25519 AAAA root@abc\n")
    assert read_contained_file(str(root), PATH, limit=4096) == b"ssh-ed25519 AAAA root@abc\n"
    assert read_contained_file(str(root), PATH, limit=11) == b"ssh-ed25519"
    with pytest.raises(OSError):
        read_contained_file(str(root), "/etc/ssh/missing", limit=10)


@pytest.mark.parametrize("plant", ["file", "folder"])
def test_a_link_planted_in_the_container_is_not_followed(tmp_path, plant):
    host_secret = tmp_path / "host" / "ssh"
    host_secret.mkdir(parents=True)
    (host_secret / "ssh_host_ed25519_key.pub").write_text("the host's own\n")
    root = _container_root(tmp_path)
    key_file = root / "etc" / "ssh" / "ssh_host_ed25519_key.pub"
    if plant == "file":
        key_file.symlink_to(host_secret / key_file.name)
    else:
        key_file.parent.rmdir()
        key_file.parent.symlink_to(host_secret)
    with pytest.raises(OSError):
        read_contained_file(str(root), PATH, limit=4096)
