"""Migration 0009 on existing rows: names that are no DNS label are rewritten
(deterministic, unique within the workspace, valid names untouched), and every row
gets no secret variables."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import remotegpu
from remotegpu.domain.environments.variables import ENV_NAME_RE, safe_name_from
from tests.support.migrations import rows_after_upgrade

_COLUMNS = ("id, name, workspace_id, owner_id, image, gpu_count, cpu_cores, memory_gib, disk_gib, created_at, updated_at,"
            " status, desired, env, with_gpu, generation, idle_gpu_threshold, status_message, jupyter_token, shared")


def _row(env_id: str, name: str, ws: str, minute: int) -> str:
    name = name.replace("'", "''")
    return (f"('{env_id}', '{name}', '{ws}', 'u1', 'img', 0, 2, 8, 50, '2026-01-01 00:{minute:02d}:00',"
            " '2026-01-01 00:00:00', 'running', 'running', '{}', 1, 0, 5, '', '', 0)")


async def test_invalid_names_are_rewritten_uniquely_per_workspace_and_secret_env_is_empty(tmp_path):
    rows = [
        _row("e1", "my-env", "w1", 1),  # already valid: kept, and taken
        _row("e2", "My Env", "w1", 2),  # → my-env-2 (my-env is taken)
        _row("e3", "MY  ENV!", "w1", 3),  # → my-env-3
        _row("e4", "My Env", "w2", 4),  # another workspace: my-env is free there
        _row("e5", "x\n    ProxyCommand touch /tmp/pwned", "w1", 5),
        _row("e6", "日本語", "w1", 6),  # nothing usable left → env
        _row("e7", "ok", "w2", 7),
    ]
    got = await rows_after_upgrade(
        tmp_path, "0008", f"INSERT INTO environments ({_COLUMNS}) VALUES " + ", ".join(rows),
        "SELECT id, name, secret_env FROM environments ORDER BY id",
    )
    names = {env_id: name for env_id, name, _ in got}
    assert names == {
        "e1": "my-env", "e2": "my-env-2", "e3": "my-env-3", "e4": "my-env",
        "e5": "x-proxycommand-touch-tmp-pwned", "e6": "env", "e7": "ok",
    }
    assert all(ENV_NAME_RE.fullmatch(n) for n in names.values())
    assert {s for _, _, s in got} == {"{}"}


def test_the_frozen_copy_agrees_with_the_domain_rule():
    path = next((Path(remotegpu.__file__).parent / "adapters/db/migrations/versions").glob("0009_*.py"))
    spec = importlib.util.spec_from_file_location("m0009", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("My Env", "x" * 80, "!!!", "a--b", "-a-", "Ünï code"):
        for taken in (set(), {"my-env"}, {"x" * 63, "x" * 61 + "-2"}):
            assert module._safe_name(name, set(taken)) == safe_name_from(name, set(taken))
