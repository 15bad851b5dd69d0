"""A job node's or replica's dataset/model mounts survive the agent wire (a remote agent
gets them), and a target outside /datasets or /models is refused."""

from __future__ import annotations

import json

import pytest

from remotegpu.adapters.fleet.wire import training_node_desired_from_dict, training_node_desired_to_dict
from remotegpu.application.environments.ports import DataMountSpec
from remotegpu.application.fleet.agent_protocol import DesiredJobNode
from remotegpu.application.workloads.ports import JobNodeSpec


def _node(mounts) -> DesiredJobNode:
    spec = JobNodeSpec(node_id="j1.a0.n0", job_id="j1", image="img", command=["python"], data_mounts=tuple(mounts))
    return DesiredJobNode("j1.a0.n0", "running", spec, 0)


def test_mounts_round_trip():
    mounts = [DataMountSpec("/datasets/corpus", "dataset", "r1", 3), DataMountSpec("/models/bert", "model", "r2", 1)]
    back = training_node_desired_from_dict(json.loads(json.dumps(training_node_desired_to_dict(_node(mounts)))))
    assert back.spec.data_mounts == tuple(mounts)
    assert back.spec.read_only_binds == ()  # the agent fills these in from its own cache
    assert back.spec.env_id == "j1.a0.n0"


def test_a_mount_target_outside_the_data_roots_is_refused():
    raw = training_node_desired_to_dict(_node([DataMountSpec("/datasets/x", "dataset", "r1", 1)]))
    raw["spec"]["data_mounts"][0]["target"] = "/etc"
    with pytest.raises(ValueError, match="target"):
        training_node_desired_from_dict(raw)
