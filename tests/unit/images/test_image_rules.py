"""Pure rules of the images context: what a saved image leaves out, which FROM lines a
build may have, names and metadata."""

from __future__ import annotations

import pytest

from remotegpu.domain.images.models import (
    ImageJob,
    JobKind,
    MAX_LOG_CHARS,
    check_metadata,
    check_name,
    dockerfile_bases,
    excluded_from_save,
)
from remotegpu.domain.shared.errors import InvalidInput


@pytest.mark.parametrize("path", [
    "root/workspace/data.txt", "root/.bash_history", "home/bob/.bash_history", "root/.python_history",
    "root/.ssh/authorized_keys", "root/.ssh/id_ed25519", "home/bob/.ssh/authorized_keys",
    "etc/ssh/ssh_host_ed25519_key", "etc/ssh/ssh_host_rsa_key.pub", "root/.local/share/jupyter/runtime/jpserver-1.json",
    "root/.jupyter/lab/token.txt", "tmp/x", "run/sshd.pid", "root/.cache/pip/wheel", "./root/.bash_history",
])
def test_data_and_secrets_stay_out(path):
    assert excluded_from_save(path)


@pytest.mark.parametrize("path", [
    "opt/tool/run.sh", "usr/local/lib/python3.11/site-packages/torch/__init__.py", "root/.bashrc", "root/.ssh",
    "root/workspace", "etc/ssh/sshd_config", "tmp", "etc/environment", "root/.config/pip/pip.conf",
])
def test_what_the_user_installed_stays_in(path):
    assert not excluded_from_save(path)


def test_dockerfile_bases():
    assert dockerfile_bases("FROM reg/a:1\nRUN x\n") == ["reg/a:1"]
    assert dockerfile_bases("from reg/a:1 AS build\nRUN x\nFROM reg/b:2\nCOPY --from=build /x /x\nFROM build\n") == ["reg/a:1", "reg/b:2"]
    assert dockerfile_bases("FROM --platform=linux/amd64 reg/a:1\n") == ["reg/a:1"]
    for bad in ("RUN x\n", "ARG B=reg/a\nFROM $B\n", "FROM\n"):
        with pytest.raises(InvalidInput):
            dockerfile_bases(bad)


def test_names_and_metadata():
    assert check_name("team/tools") == "team/tools"
    for bad in ("Tools", "a//b", "-a", "a/b/c/d", "x" * 101):
        with pytest.raises(InvalidInput):
            check_name(bad)
    assert check_metadata({"cuda": "12.4"}) == {"cuda": "12.4"}
    for bad in ({"CUDA": "1"}, {"cuda": "a\nb"}, {f"k{i}": "v" for i in range(31)}):
        with pytest.raises(InvalidInput):
            check_metadata(bad)


def test_job_log_keeps_its_end_and_counts_what_it_dropped():
    from datetime import datetime, timezone

    job = ImageJob("j", JobKind.BUILD, "i", None, "u", datetime.now(timezone.utc), "t")
    job.append_log("a" * MAX_LOG_CHARS)
    job.append_log("bcd")
    assert len(job.log) == MAX_LOG_CHARS and job.log.endswith("bcd")
    assert job.log_dropped == 3 and job.log_received == MAX_LOG_CHARS + 3
