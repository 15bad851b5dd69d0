"""EnvironmentRuntime of plain local processes: for development on machines without Docker.

Not isolation: an "environment" is a sandbox directory and a long-lived placeholder
process (``REMOTEGPU_RUNTIME=local``, chosen by name only: never a fallback). Whoever may
create an environment here runs code as the server's user, so this is a single-user
development mode, and two things a multi-user platform would hand through are refused:

* user environment variables: a spec with variables other than the platform's own
  (``REMOTEGPU_*``) does not start (``PYTHONWARNINGS``, ``BROWSER``, ``LD_PRELOAD``...
  would run commands as the server's user); the environment goes ``failed`` with that
  reason in its event log;
* SSH keys: there is no sshd here, and an exec that touches ``~/.ssh`` (the agent's key
  sync) does nothing, so the host's own ``authorized_keys`` is never written.

Layout under ``root_dir``::

    envs/<env_id>/state.json   spec, generation, pid of the placeholder (null when stopped)
    envs/<env_id>/workspace/   the environment's disk: kept on stop, deleted by remove

Everything is found again from the files (``list`` scans ``envs/``), so a restarted
agent adopts what is there. The placeholder runs in its own session, so it outlives
the agent like a container outlives a restarted Docker client. ``exec`` runs a command
with the workspace as working directory; arguments under ``/root/workspace`` are
rewritten to the sandbox's workspace (also inside a ``sh -c`` snippet). Published ports and GPU binding do not exist
here: ``ports`` stay empty and GPUs are only advertised through
``CUDA_VISIBLE_DEVICES``/``NVIDIA_VISIBLE_DEVICES``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from remotegpu.adapters.runtime.threaded import ThreadedRuntime
from remotegpu.application.environments.ports import (
    WORKSPACE_PATH,
    EnvironmentRuntimeError,
    RuntimeSpec,
    RuntimeState,
    generation_of,
)

_ENV_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}$")
_STATE = "state.json"
_WORKSPACE = "workspace"
_PLACEHOLDER = "import time\nwhile True: time.sleep(3600)"
_STOP_GRACE_SECONDS = 5.0
_PLATFORM_VARIABLE_PREFIX = "REMOTEGPU_"  # set by the platform; users may not (the API refuses them)


class LocalProcessRuntime(ThreadedRuntime):
    """EnvironmentRuntime (with exec) of sandbox directories and local processes. Dev only."""

    def __init__(self, root_dir: Path | str, *, python: str = sys.executable) -> None:
        self.root = Path(root_dir)
        self._envs = self.root / "envs"
        self._trash = self.root / "trash"
        self._python = python
        self._children: dict[int, subprocess.Popen[bytes]] = {}  # ours to reap
        self._locks: dict[str, asyncio.Lock] = {}

    def sandbox(self, env_id: str) -> Path:
        _check_env_id(env_id)
        return self._envs / env_id

    def workspace(self, env_id: str) -> Path:
        return self.sandbox(env_id) / _WORKSPACE

    # -- the port ---------------------------------------------------------------

    def _validate_env_id(self, env_id: str) -> None:
        _check_env_id(env_id)

    async def exec(self, env_id: str, argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
        _check_env_id(env_id)
        if not argv:
            raise ValueError("exec needs a command")
        if any(".ssh" in arg for arg in argv):
            # The agent's authorized_keys sync: its paths are the host's own ~/.ssh here.
            return 0, "local runtime: SSH keys are not installed (no sshd; the host's ~/.ssh is left alone)\n"
        state = self._read_state(env_id)
        if state is None or not self._alive(state):
            raise EnvironmentRuntimeError(f"environment {env_id} is not running")
        workspace = self.workspace(env_id)
        args = [_rewrite(a, workspace) for a in argv]
        try:
            process = await asyncio.create_subprocess_exec(
                *args, cwd=workspace, env={**self._environ(env_id, state["spec"]), **(env or {})},
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )
        except OSError as exc:
            return 127, f"{argv[0]}: {exc.strerror or exc}\n"
        output, _ = await process.communicate()
        return int(process.returncode or 0), output.decode("utf-8", "replace")

    # -- blocking implementation --------------------------------------------------

    def _ensure_running(self, spec: RuntimeSpec) -> RuntimeState:
        refused = sorted(k for k in spec.env if not k.startswith(_PLATFORM_VARIABLE_PREFIX))
        if refused:
            raise EnvironmentRuntimeError(
                f"environment {spec.env_id}: the local runtime (single-user development: processes of the "
                f"server's user, not isolated) refuses environment variables ({', '.join(refused)}); "
                "create it without them, or run the platform on Docker"
            )
        sandbox = self.sandbox(spec.env_id)
        state = self._read_state(spec.env_id)
        if state is not None and self._alive(state):
            return self._state(spec.env_id, state)  # runs already: left alone, even if the spec changed
        workspace = sandbox / _WORKSPACE
        workspace.mkdir(parents=True, exist_ok=True)
        state = {"env_id": spec.env_id, "spec": _spec_to_json(spec), "pid": None, "proc_start": None,
                 "started_at": None, "message": ""}
        try:
            child = subprocess.Popen(
                [self._python, "-c", _PLACEHOLDER], cwd=workspace, env=self._environ(spec.env_id, state["spec"]),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, close_fds=True,
            )
        except OSError as exc:
            state["message"] = f"cannot start: {exc}"
            self._write_state(spec.env_id, state)
            raise EnvironmentRuntimeError(f"environment {spec.env_id}: cannot start its process: {exc}") from exc
        self._children[child.pid] = child
        state.update(pid=child.pid, proc_start=_proc_start(child.pid),
                     started_at=datetime.now(timezone.utc).isoformat())
        self._write_state(spec.env_id, state)
        return self._state(spec.env_id, state)

    def _stop(self, env_id: str) -> None:
        state = self._read_state(env_id)
        if state is None or (state.get("pid") is None and not state.get("message")):
            return
        if state.get("pid") is not None and self._alive(state):
            self._kill(int(state["pid"]))
        state.update(pid=None, proc_start=None, started_at=None, message="")
        self._write_state(env_id, state)

    def _remove(self, env_id: str) -> None:
        sandbox = self.sandbox(env_id)
        state = self._read_state(env_id)
        if state is not None and self._alive(state):
            self._kill(int(state["pid"]))
        if sandbox.exists():
            # Renamed first, so a crash half-way through never leaves a half-deleted
            # environment that ``list`` would still report.
            self._trash.mkdir(parents=True, exist_ok=True)
            doomed = self._trash / f"{env_id}-{uuid.uuid4().hex[:8]}"
            os.replace(sandbox, doomed)
            shutil.rmtree(doomed, ignore_errors=True)

    def _inspect(self, env_id: str) -> RuntimeState | None:
        sandbox = self.sandbox(env_id)
        if not sandbox.is_dir():
            return None
        state = self._read_state(env_id)
        if state is None:
            return RuntimeState(env_id, "stopped", None, message="disk kept, no process")
        return self._state(env_id, state)

    def _list(self) -> list[RuntimeState]:
        if self._trash.is_dir():  # leftovers of an interrupted remove
            shutil.rmtree(self._trash, ignore_errors=True)
        if not self._envs.is_dir():
            return []
        states = []
        for sandbox in sorted(self._envs.iterdir()):
            if sandbox.is_dir() and _ENV_ID.match(sandbox.name):
                state = self._inspect(sandbox.name)
                if state is not None:
                    states.append(state)
        return states

    # -- processes ----------------------------------------------------------------

    def _alive(self, state: dict[str, Any]) -> bool:
        pid = state.get("pid")
        if not isinstance(pid, int):
            return False
        child = self._children.get(pid)
        if child is not None:
            if child.poll() is None:
                return True
            del self._children[pid]  # reaped
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # exists, someone else's: the pid was reused
        started = _proc_start(pid)
        if started is not None and state.get("proc_start") is not None and started != state["proc_start"]:
            return False  # the pid was reused by another process
        return _proc_state(pid) not in ("Z", "X")

    def _kill(self, pid: int) -> None:
        for sig, grace in ((signal.SIGTERM, _STOP_GRACE_SECONDS), (signal.SIGKILL, 2.0)):
            try:
                os.killpg(pid, sig)  # the placeholder leads its own session/group
            except ProcessLookupError:
                pass
            except PermissionError:
                return
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                if self._reaped(pid):
                    return
                time.sleep(0.02)

    def _reaped(self, pid: int) -> bool:
        child = self._children.get(pid)
        if child is not None:
            if child.poll() is None:
                return False
            del self._children[pid]
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return _proc_state(pid) in ("Z", "X")  # a zombie of another parent is as good as gone

    def _environ(self, env_id: str, spec: dict[str, Any]) -> dict[str, str]:
        environ = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")}
        environ.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        environ.update({k: v for k, v in (spec.get("env") or {}).items() if k.startswith(_PLATFORM_VARIABLE_PREFIX)})
        environ["HOME"] = str(self.workspace(env_id))
        indices, uuids = spec.get("gpu_indices") or [], spec.get("gpu_uuids") or []
        if spec.get("fake_gpus") or indices or uuids:
            visible = ",".join(str(i) for i in indices) if spec.get("fake_gpus") or not uuids else ",".join(uuids)
            environ.update(CUDA_VISIBLE_DEVICES=visible, NVIDIA_VISIBLE_DEVICES=visible)
        return environ

    # -- state files -----------------------------------------------------------------

    def _read_state(self, env_id: str) -> dict[str, Any] | None:
        try:
            data = json.loads((self.sandbox(env_id) / _STATE).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and isinstance(data.get("spec"), dict) else None

    def _write_state(self, env_id: str, state: dict[str, Any]) -> None:
        path = self.sandbox(env_id) / _STATE
        tmp = path.with_name(f".{_STATE}.{uuid.uuid4().hex[:8]}")
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, path)

    def _state(self, env_id: str, state: dict[str, Any]) -> RuntimeState:
        generation = generation_of(state["spec"].get("labels"))
        pid = state.get("pid")
        if pid is None:
            if state.get("message"):
                return RuntimeState(env_id, "failed", None, message=state["message"], generation=generation)
            return RuntimeState(env_id, "stopped", None, generation=generation)
        if self._alive(state):
            started = state.get("started_at")
            return RuntimeState(env_id, "running", f"pid-{pid}", {},
                                datetime.fromisoformat(started) if started else None, generation=generation)
        return RuntimeState(env_id, "failed", f"pid-{pid}", generation=generation,
                            message=f"process {pid} is gone (it exited, or the machine restarted)")



def _check_env_id(env_id: str) -> None:
    if not _ENV_ID.match(env_id) or env_id in (".", ".."):
        raise ValueError(f"invalid environment id for a sandbox directory: {env_id!r}")


def _spec_to_json(spec: RuntimeSpec) -> dict[str, Any]:
    data = asdict(spec)
    data["ports"] = {str(c): h for c, h in spec.ports.items()}
    private = data.pop("private_ports")
    if private:  # processes share the host's network: nothing to bind differently
        data["private_ports"] = sorted(private)
    return data


def _rewrite(arg: str, workspace: Path) -> str:
    """``/root/workspace`` (also inside a shell snippet) → the sandbox's workspace."""
    return re.sub(re.escape(WORKSPACE_PATH) + r"(?=/|\b|$)", lambda _: str(workspace), arg)


def _proc_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2:].split()  # fields after "pid (comm)", starting with state


def _proc_state(pid: int) -> str | None:
    fields = _proc_stat(pid)
    return fields[0] if fields else None


def _proc_start(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (field 22): tells a reused pid apart."""
    fields = _proc_stat(pid)
    try:
        return int(fields[19]) if fields else None
    except (IndexError, ValueError):
        return None
