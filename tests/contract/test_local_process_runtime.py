"""LocalProcessRuntime (dev-only runtime of sandbox directories and local processes)
keeps the EnvironmentRuntime rules that the agent relies on."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from remotegpu.adapters.runtime.local_process import LocalProcessRuntime
from remotegpu.adapters.runtime.select import runtime_problem, select_runtime
from remotegpu.application.environments.ports import (
    LABEL_GENERATION,
    WORKSPACE_PATH,
    EnvironmentRuntime,
    EnvironmentRuntimeError,
    RuntimeSpec,
    RuntimeWithExec,
)
from remotegpu.application.fleet.agent import authorized_keys_command


def spec(env_id: str = "env-a", generation: int = 1, **kwargs) -> RuntimeSpec:
    return RuntimeSpec(env_id=env_id, image="ignored", labels={LABEL_GENERATION: str(generation)},
                       env={"REMOTEGPU_GREETING": "hello"}, **kwargs)


@pytest.fixture
async def runtime(tmp_path):
    rt = LocalProcessRuntime(tmp_path / "rt")
    yield rt
    for state in await rt.list():  # no placeholder outlives the test
        await rt.remove(state.env_id)


def pid_of(state) -> int:
    return int(state.container_id.removeprefix("pid-"))


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie its parent (this test process) has not reaped yet."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")


async def test_is_a_runtime_with_exec(runtime):
    assert isinstance(runtime, RuntimeWithExec)
    _: EnvironmentRuntime = runtime


async def test_start_is_idempotent(runtime):
    first = await runtime.ensure_running(spec())
    assert first.status == "running" and first.generation == 1 and first.started_at is not None
    again = await runtime.ensure_running(spec())
    assert again.container_id == first.container_id
    os.kill(pid_of(first), 0)  # the placeholder process exists
    assert [s.env_id for s in await runtime.list()] == ["env-a"]
    inspected = await runtime.inspect("env-a")
    assert inspected.status == "running" and inspected.container_id == first.container_id


async def test_exec_runs_in_the_workspace_with_the_spec_env(runtime):
    await runtime.ensure_running(spec(gpu_indices=[0, 1], fake_gpus=True))
    code, out = await runtime.exec("env-a", ["sh", "-c", f"echo $REMOTEGPU_GREETING $CUDA_VISIBLE_DEVICES > {WORKSPACE_PATH}/f; pwd"])
    assert code == 0 and out.strip() == str(runtime.workspace("env-a"))
    assert await runtime.exec("env-a", ["cat", f"{WORKSPACE_PATH}/f"]) == (0, "hello 0,1\n")
    code, _ = await runtime.exec("env-a", ["sh", "-c", "exit 3"])
    assert code == 3


async def test_stop_keeps_the_workspace_and_start_brings_it_back(runtime):
    running = await runtime.ensure_running(spec())
    await runtime.exec("env-a", ["sh", "-c", f"echo kept > {WORKSPACE_PATH}/notes.txt"])
    await runtime.stop("env-a")
    await runtime.stop("env-a")  # silent when already stopped
    stopped = await runtime.inspect("env-a")
    assert stopped.status == "stopped" and stopped.container_id is None
    assert gone(pid_of(running))
    with pytest.raises(Exception, match="not running"):
        await runtime.exec("env-a", ["true"])

    again = await runtime.ensure_running(spec(generation=2))  # a changed spec starts on the same disk
    assert again.status == "running" and again.generation == 2
    assert (runtime.workspace("env-a") / "notes.txt").read_text() == "kept\n"


async def test_remove_deletes_the_sandbox(runtime):
    state = await runtime.ensure_running(spec())
    await runtime.remove("env-a")
    assert await runtime.inspect("env-a") is None
    assert not runtime.sandbox("env-a").exists()
    assert await runtime.list() == []
    assert gone(pid_of(state))
    await runtime.remove("env-a")  # silent when absent
    await runtime.stop("env-a")


async def test_a_new_instance_on_the_same_root_adopts_everything(tmp_path, runtime):
    running = await runtime.ensure_running(spec("env-a", 4))
    await runtime.ensure_running(spec("env-b"))
    await runtime.stop("env-b")

    restarted = LocalProcessRuntime(tmp_path / "rt")
    states = {s.env_id: s for s in await restarted.list()}
    assert states["env-a"].status == "running" and states["env-a"].generation == 4
    assert states["env-a"].container_id == running.container_id
    assert states["env-b"].status == "stopped"
    assert (await restarted.ensure_running(spec("env-a", 4))).container_id == running.container_id
    await restarted.stop("env-a")
    assert (await restarted.inspect("env-a")).status == "stopped"
    assert gone(pid_of(running))


async def test_a_process_that_died_reads_as_failed_and_restarts(runtime):
    state = await runtime.ensure_running(spec())
    os.killpg(pid_of(state), signal.SIGKILL)
    deadline = time.monotonic() + 5
    while (await runtime.inspect("env-a")).status == "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    failed = await runtime.inspect("env-a")
    assert failed.status == "failed" and "gone" in failed.message
    assert (await runtime.ensure_running(spec())).status == "running"


async def test_an_unknown_leftover_sandbox_is_listed_so_it_can_be_removed(runtime):
    runtime.workspace("env-x").mkdir(parents=True)  # a crash between mkdir and the state file
    assert [(s.env_id, s.status) for s in await runtime.list()] == [("env-x", "stopped")]
    await runtime.remove("env-x")
    assert await runtime.list() == []


async def test_bad_env_ids_are_refused(runtime):
    for bad in ("../etc", "a/b", ""):
        with pytest.raises(ValueError):
            await runtime.inspect(bad)


async def test_user_environment_variables_are_refused(runtime):
    """Processes here run as the server's user: a variable such as PYTHONWARNINGS or
    BROWSER would run commands as that user. Only the platform's own pass."""
    bad = RuntimeSpec(env_id="env-a", image="ignored", env={"REMOTEGPU_ENV_ID": "env-a", "PYTHONWARNINGS": "x"})
    with pytest.raises(EnvironmentRuntimeError, match="refuses environment variables \\(PYTHONWARNINGS\\)"):
        await runtime.ensure_running(bad)
    assert (await runtime.inspect("env-a")) is None  # nothing started


async def test_key_sync_never_touches_the_hosts_own_authorized_keys(runtime):
    await runtime.ensure_running(spec())
    target = Path(os.path.expanduser("~/.ssh/authorized_keys"))
    before = target.read_bytes() if target.exists() else None

    code, out = await runtime.exec("env-a", authorized_keys_command(["ssh-ed25519 AAAAC3Nza intruder"]))

    assert code == 0 and "not installed" in out
    assert (target.read_bytes() if target.exists() else None) == before


def test_select_runtime(tmp_path, monkeypatch):
    rt, name = select_runtime("local", data_dir=tmp_path)
    assert name == "local" and isinstance(rt, LocalProcessRuntime) and rt.root == tmp_path / "local-runtime"
    assert select_runtime("memory", data_dir=tmp_path)[1] == "memory"
    with pytest.raises(ValueError, match="unknown runtime"):
        select_runtime("nomad", data_dir=tmp_path)
    # Kubernetes is known; without a kubeconfig or a service account it says what is missing.
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ValueError, match="REMOTEGPU_KUBECONFIG"):
        select_runtime("kubernetes", data_dir=tmp_path)


@pytest.mark.parametrize("kind", ["auto", "docker"])
def test_without_docker_auto_is_an_error_saying_what_to_do_never_local(tmp_path, monkeypatch, kind):
    import remotegpu.adapters.runtime.docker_runtime as docker_runtime

    monkeypatch.setattr(docker_runtime, "docker_available", lambda timeout=2.0: False)
    with pytest.raises(ValueError) as raised:
        select_runtime(kind, data_dir=tmp_path)
    assert "install it" in str(raised.value) and "REMOTEGPU_RUNTIME=local" in str(raised.value)
    assert runtime_problem(kind) == str(raised.value)
    assert runtime_problem("local") is None and not (tmp_path / "local-runtime").exists()
