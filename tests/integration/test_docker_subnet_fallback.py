"""Workspace networks keep being made when Docker's own address pools are used up
(about 30 networks with Docker's defaults; CI once ran out of 172.30.0.0/16 alone)."""

from __future__ import annotations

import ipaddress
import uuid

import pytest
from docker.errors import APIError

from remotegpu.adapters.runtime.docker_network import WorkspaceNetworks
from remotegpu.adapters.runtime.docker_subnets import pools_exhausted, used_subnets
from tests.support.components import docker_client

FILLER_LABEL = "remotegpu.test.subnet-filler"


@pytest.fixture
def docker():
    return docker_client()


@pytest.fixture
def exhausted(docker):
    """Docker's default pools filled with networks of this test, removed afterwards."""
    tag = uuid.uuid4().hex[:8]
    made = []
    try:
        for i in range(80):
            try:
                made.append(docker.networks.create(f"rgpu-test-filler-{tag}-{i}", labels={FILLER_LABEL: tag}))
            except APIError as exc:
                assert pools_exhausted(exc), exc
                break
        else:
            pytest.fail("Docker's address pools never ran out after 80 networks")
        yield made
    finally:
        for network in made:
            network.remove()


def _fallback_range(docker) -> ipaddress.IPv4Network:
    used = used_subnets(docker)
    for third in range(0, 250, 2):
        block = ipaddress.ip_network(f"10.214.{third}.0/23")
        if not any(block.overlaps(u) for u in used):
            return block
    pytest.fail("no free /23 in 10.214.0.0/16 for the test's fallback range")


def test_networks_come_from_the_fallback_range_once_docker_runs_out(docker, exhausted, monkeypatch):
    block = _fallback_range(docker)
    monkeypatch.setenv("REMOTEGPU_DOCKER_FALLBACK_SUBNETS", str(block))
    scope = "rgsubnet" + uuid.uuid4().hex[:8]
    networks = WorkspaceNetworks(docker, scope)
    try:
        subnets = []
        for tenant in ("ws-a", "ws-b"):
            name = networks.ensure(tenant)
            config = docker.networks.get(name).attrs["IPAM"]["Config"][0]
            subnets.append(ipaddress.ip_network(config["Subnet"]))
            assert config["Gateway"] == str(subnets[-1].network_address + 1)
        assert all(s.subnet_of(block) and s.prefixlen == 24 for s in subnets), subnets
        assert subnets[0] != subnets[1]
        # the /23 holds two /24s: a third workspace gets a clear error, not a wrong network
        with pytest.raises(APIError, match="fallback ranges .* are all used up"):
            networks.ensure("ws-c")
    finally:
        for network in networks.list():
            network.remove()
    assert networks.list() == []
