"""The remote desktop's pure parts: which images are desktops, their ports, the VNC
password, and the Guacamole protocol's framing (adapters/access/guacd.py)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from remotegpu.adapters.access.guacd import encode, parse
from remotegpu.application.environments.placement import container_ports, port_purposes
from remotegpu.domain.environments.models import (
    DESKTOP_CONTAINER_PORT,
    JUPYTER_CONTAINER_PORT,
    SSH_CONTAINER_PORT,
    Environment,
    HostPort,
    is_desktop_image,
    vnc_password,
)


@pytest.mark.parametrize("image,desktop", [
    ("remotegpu/desktop:latest", True),
    ("remotegpu/desktop", True),
    ("127.0.0.1:5000/team/desktop@sha256:" + "a" * 64, True),
    ("registry.lab:5000/desktop:v2", True),
    ("remotegpu/base:latest", False),
    ("remotegpu/desktop-tools:latest", False),
    ("desktop.example.com/base:latest", False),
])
def test_desktop_images_are_named_desktop(image, desktop):
    assert is_desktop_image(image) is desktop


def _env(image: str) -> Environment:
    now = datetime.now(timezone.utc)
    return Environment(id="e1", name="n", workspace_id="w", owner_id="u", image=image, gpu_count=0, gpu_model=None,
                       cpu_cores=1, memory_gib=1, created_at=now, updated_at=now)


def test_only_desktops_get_a_desktop_port():
    assert port_purposes(_env("remotegpu/base:latest")) == ("ssh", "jupyter")
    assert port_purposes(_env("remotegpu/desktop:latest")) == ("ssh", "jupyter", "desktop")
    ports = [HostPort("h", 40001, "ssh", "e1"), HostPort("h", 40002, "jupyter", "e1"), HostPort("h", 40003, "desktop", "e1")]
    assert container_ports(ports) == {SSH_CONTAINER_PORT: 40001, JUPYTER_CONTAINER_PORT: 40002, DESKTOP_CONTAINER_PORT: 40003}


def test_the_vnc_password_is_derived_per_environment():
    a, b = vnc_password("token-a"), vnc_password("token-b")
    assert len(a) == 8 and a != b and a == vnc_password("token-a")
    assert "token-a" not in a


def test_guacamole_framing_counts_characters_and_keeps_partial_instructions():
    text = encode("select", "vnc") + encode("clipboard", "héllo;wörld,") + "4.sync,3.12"
    assert text.startswith("6.select,3.vnc;9.clipboard,12.héllo;wörld,;")
    done, rest = parse(text)
    assert done == [["select", "vnc"], ["clipboard", "héllo;wörld,"]]
    assert rest == "4.sync,3.12"
    done, rest = parse(rest + "3;")
    assert done == [["sync", "123"]] and rest == ""
    assert parse(encode("", "ping"))[0] == [["", "ping"]]  # the tunnel's internal opcode is empty
    with pytest.raises(ValueError):
        parse("x.select;")
    with pytest.raises(ValueError):
        parse("3.abc!")
