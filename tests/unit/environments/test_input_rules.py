"""The pure rules on what users send: environment names, variables, images, and the
SSH endpoint that is only ever built from validated parts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remotegpu.application.environments.access_gateway import SshEndpoint, UnsafeSshEndpoint
from remotegpu.domain.environments.images import ImagePolicy, parse_patterns, repository_of
from remotegpu.domain.environments.variables import (
    ENV_NAME_RE,
    check_environment_name,
    check_variables,
    reserved_rule,
    safe_name_from,
)
from remotegpu.domain.shared.errors import InvalidInput


@pytest.mark.parametrize("name", ["a", "train-1", "0", "a" * 63, "x-y-z9"])
def test_valid_names(name):
    assert check_environment_name(name) == name


@pytest.mark.parametrize("name", ["", "A", "a b", "a_b", "a.b", "-a", "a-", "a" * 64, "a\nProxyCommand x", " a", "é"])
def test_invalid_names_are_refused_with_the_rule(name):
    with pytest.raises(InvalidInput) as err:
        check_environment_name(name)
    assert err.value.code == "invalid_name" and err.value.details["field"] == "name"


@given(st.text(max_size=80), st.sets(st.text(alphabet="abc-0", max_size=5), max_size=5))
def test_safe_name_from_anything_is_valid_unique_and_deterministic(name, taken):
    taken = {t for t in taken if ENV_NAME_RE.fullmatch(t)}
    made = safe_name_from(name, taken)
    assert ENV_NAME_RE.fullmatch(made) and made not in taken
    assert safe_name_from(name, set(taken)) == made


def test_safe_name_examples():
    assert safe_name_from("My Env", set()) == "my-env"
    assert safe_name_from("My Env", {"my-env"}) == "my-env-2"
    assert safe_name_from("My Env", {"my-env", "my-env-2"}) == "my-env-3"
    assert safe_name_from("!!!", set()) == "env"
    long = safe_name_from("x" * 80, {"x" * 63})
    assert long == "x" * 61 + "-2"


@pytest.mark.parametrize("name, rule", [
    ("NVIDIA_VISIBLE_DEVICES", "NVIDIA_*"), ("CUDA_VISIBLE_DEVICES", "CUDA_*"), ("LD_PRELOAD", "LD_*"),
    ("Ld_Preload", "LD_*"), ("PYTHONSTARTUP", "PYTHON*"), ("REMOTEGPU_ENV_ID", "REMOTEGPU_*"),
    ("JUPYTER_TOKEN", "JUPYTER_*"), ("SSH_ORIGINAL_COMMAND", "SSH_*"), ("DOCKER_HOST", "DOCKER_*"),
    ("PATH", "PATH"), ("HOME", "HOME"), ("SHELL", "SHELL"), ("USER", "USER"), ("BASH_ENV", "BASH_ENV"),
    ("BASH_FUNC_ls%%", "BASH_FUNC_*"),
])
def test_reserved_rules(name, rule):
    assert reserved_rule(name) == rule


@pytest.mark.parametrize("name", ["WANDB_MODE", "HF_HOME", "PYTHONUNBUFFERED", "CUDA_LAUNCH_BLOCKING", "MY_PATH", "NCCL_DEBUG"])
def test_ordinary_names_are_free(name):
    assert reserved_rule(name) is None
    check_variables({name: "1"}, {})


def test_check_variables_refusals():
    with pytest.raises(InvalidInput) as err:
        check_variables({}, {"LD_PRELOAD": "/x.so"})
    assert err.value.code == "reserved_variable" and err.value.details == {
        "field": "secret_env", "name": "LD_PRELOAD", "rule": "LD_*", "reserved": err.value.details["reserved"],
    }
    with pytest.raises(InvalidInput, match="both"):
        check_variables({"A": "1"}, {"A": "2"})
    with pytest.raises(InvalidInput, match="at most 64"):
        check_variables({f"A{i}": "" for i in range(40)}, {f"B{i}": "" for i in range(25)})
    with pytest.raises(InvalidInput):
        check_variables({"A": "x" * 4097}, {})
    with pytest.raises(InvalidInput):
        check_variables({"A-B": "1"}, {})


POLICY = ImagePolicy(parse_patterns("remotegpu/*, registry.lab:5000/ml/*,pytorch/pytorch"), default_image="lab/base:1")


@pytest.mark.parametrize("image", [
    "remotegpu/base:latest", "remotegpu/base", "remotegpu/cuda/12:1", "registry.lab:5000/ml/x:2",
    "pytorch/pytorch:2.3.0-cuda12.1", "pytorch/pytorch@sha256:" + "a" * 64, "lab/base:1",
])
def test_allowed_images(image):
    POLICY.check(image)


@pytest.mark.parametrize("image, code", [
    ("ubuntu:22.04", "image_not_allowed"), ("evil.example/remotegpu/base", "image_not_allowed"),
    ("remotegpu.evil.example/base", "image_not_allowed"), ("lab/base:2", "image_not_allowed"),
    ("pytorch/pytorch-evil", "image_not_allowed"), ("Remotegpu/base", "invalid_image"),
    ("remotegpu/base\n", "invalid_image"), ("remotegpu/base:latest;id", "invalid_image"), ("", "invalid_image"),
])
def test_refused_images(image, code):
    with pytest.raises(InvalidInput) as err:
        POLICY.check(image)
    assert err.value.code == code and err.value.details["field"] == "image"


def test_repository_of():
    assert repository_of("registry.lab:5000/ml/x:2") == "registry.lab:5000/ml/x"
    assert repository_of("a/b@sha256:" + "0" * 64) == "a/b"
    assert repository_of("registry.lab:5000/ml/x") == "registry.lab:5000/ml/x"


def test_ssh_endpoint_refuses_unsafe_parts_and_the_block_has_four_lines():
    point = SshEndpoint(host="gpu-1.lab.example", port=40022, host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA")
    assert point.config("remotegpu-train-1").splitlines() == [
        "Host remotegpu-train-1", "    HostName gpu-1.lab.example", "    Port 40022", "    User root",
    ]
    assert point.command == "ssh -p 40022 root@gpu-1.lab.example"
    assert SshEndpoint(host="2001:db8::1", port=22).known_hosts == ""
    for alias in ("a\n    ProxyCommand id", "a b", "", "-oProxyCommand=id"):
        with pytest.raises(UnsafeSshEndpoint):
            point.config(alias)
    for kwargs in (
        {"host": "h\n    ProxyCommand id", "port": 22}, {"host": "fe80::1%x\nProxyCommand id", "port": 22},
        {"host": "-oProxyCommand=id", "port": 22}, {"host": "h", "port": 0}, {"host": "h", "port": 70000},
        {"host": "h", "port": 22, "user": "root\nProxyCommand id"}, {"host": "h", "port": 22, "host_key": "k\nx"},
        {"host": "", "port": 22},
    ):
        with pytest.raises(UnsafeSshEndpoint):
            SshEndpoint(**kwargs)


def test_the_operators_base_image_is_allowed_whatever_its_spelling():
    ImagePolicy(("remotegpu/*",), default_image="Lab/Base:1").check("Lab/Base:1")
    with pytest.raises(InvalidInput):
        ImagePolicy(("remotegpu/*",), default_image="Lab/Base:1").check("Lab/Base:2")
