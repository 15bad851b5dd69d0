"""`remotegpu dataset|model ...` against a running app: create, push (dedup, resume after a
dropped connection), ls, versions, diff, pull (skip verified files, resume a partial file)."""

from __future__ import annotations

import asyncio
import hashlib
import os

import aiohttp
import pytest

from remotegpu.entrypoints import storage_cli
from remotegpu.entrypoints.cli import main
from tests.conftest import signup

MiB = 1024 * 1024


@pytest.fixture
async def cli(client, tmp_path, monkeypatch):
    me = await signup(client)
    r = await client.post("/api/v1/users/me/tokens", json={"name": "cli"}, headers=me.headers)
    token = (await r.json())["token"]
    monkeypatch.setattr(storage_cli, "STATE_DIR", tmp_path / "state")
    base = str(client.make_url("")).rstrip("/")

    async def run(*argv: str) -> int:
        return await asyncio.to_thread(main, [*argv[:2], *argv[2:], "--url", base, "--token", token, "--quiet"])

    run.base, run.token, run.account = base, token, me
    return run


def _tree(root, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


BIG = os.urandom(8 * MiB) + os.urandom(3 * MiB)  # two parts at 8 MiB


async def test_push_ls_versions_diff_pull(cli, tmp_path, capsys):
    src = tmp_path / "src"
    _tree(src, {"data/big.bin": BIG, "README.md": b"v1", "gone.txt": b"bye"})
    assert await cli("dataset", "create", "corpus") == 0
    assert await cli("dataset", "push", "corpus", str(src), "--part-size", "8", "--tag", "first") == 0
    (src / "gone.txt").unlink()
    _tree(src, {"README.md": b"v2", "new.txt": b"hi"})
    assert await cli("dataset", "push", "corpus", str(src), "--part-size", "8") == 0
    capsys.readouterr()
    assert await cli("dataset", "ls") == 0
    out = capsys.readouterr().out
    assert "corpus" in out and "private" in out
    assert await cli("dataset", "versions", "corpus") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[0] == "1" and "first" in out[1] and out[2].split()[0] == "2"
    assert await cli("dataset", "diff", "corpus", "first", "latest") == 0
    assert capsys.readouterr().out.splitlines() == ["+ new.txt", "- gone.txt", "M README.md"]

    dst = tmp_path / "dst"
    assert await cli("dataset", "pull", "corpus:first", str(dst)) == 0
    assert (dst / "data/big.bin").read_bytes() == BIG and (dst / "gone.txt").read_bytes() == b"bye"
    # A partial download resumes by Range; a complete, verified file is not fetched again.
    (dst / "data/big.bin").unlink()
    (dst / "data/big.bin.part").write_bytes(BIG[: 5 * MiB])
    (dst / "README.md").write_bytes(b"xx")  # corrupted: fetched again
    assert await cli("dataset", "pull", "corpus:first", str(dst)) == 0
    assert (dst / "data/big.bin").read_bytes() == BIG and (dst / "README.md").read_bytes() == b"v1"
    assert not (dst / "data/big.bin.part").exists()
    # A partial file whose bytes are wrong: the resumed download does not verify, is removed, and the next pull fixes it.
    (dst / "data/big.bin").unlink()
    (dst / "data/big.bin.part").write_bytes(b"\0" * (5 * MiB))
    assert await cli("dataset", "pull", "corpus:first", str(dst)) == 1
    assert not (dst / "data/big.bin.part").exists() and not (dst / "data/big.bin").exists()
    assert await cli("dataset", "pull", "corpus:first", str(dst)) == 0
    assert (dst / "data/big.bin").read_bytes() == BIG

    assert await cli("model", "create", "bert-ft", "--framework", "pytorch", "--metric", "f1=0.91") == 0
    assert await cli("dataset", "versions", "nope") == 1


async def test_killed_push_resumes_sending_only_missing_parts(cli, client, tmp_path, monkeypatch):
    src = tmp_path / "src"
    _tree(src, {"big.bin": BIG})
    assert await cli("dataset", "create", "resumable") == 0
    sent: list[str] = []
    real_put = aiohttp.ClientSession.put

    def counting_put(self, url, *a, **kw):
        sent.append(str(url))
        if fail["on"] and "/parts/2" in str(url):
            raise aiohttp.ClientConnectionError("connection dropped")
        return real_put(self, url, *a, **kw)

    fail = {"on": True}
    monkeypatch.setattr(aiohttp.ClientSession, "put", counting_put)
    assert await cli("dataset", "push", "resumable", str(src), "--part-size", "8", "--parallel", "1") == 1
    assert len(list((tmp_path / "state").glob("*.json"))) == 1
    fail["on"] = False
    sent.clear()
    assert await cli("dataset", "push", "resumable", str(src), "--part-size", "8") == 0
    assert [u.rsplit("/parts/", 1)[1] for u in sent] == ["2"]  # part 1 was not sent again
    r = await client.get("/api/v1/datasets", headers=cli.account.headers)
    r = await client.get(f"/api/v1/datasets?workspace_id={cli.account.personal_workspace_id}", headers=cli.account.headers)
    ds = (await r.json())["items"][0]
    r = await client.get(f"/api/v1/datasets/{ds['id']}/versions/latest/file?path=big.bin", headers=cli.account.headers)
    assert hashlib.sha256(await r.read()).digest() == hashlib.sha256(BIG).digest()
    assert not list((tmp_path / "state").glob("*.json"))


async def test_push_records_its_source(cli, client, tmp_path):
    r = await client.post("/api/v1/environments", json={"workspace_id": cli.account.personal_workspace_id, "name": "trainer",
                                                       "cpu_cores": 1, "memory_gib": 1}, headers=cli.account.headers)
    env = await r.json()
    src = tmp_path / "out"
    _tree(src, {"model.safetensors": b"weights"})
    assert await cli("model", "create", "made") == 0
    assert await cli("model", "push", "made", str(src), "--source", f"environment:{env['id']}") == 0
    assert await cli("model", "push", "made", str(src), "--source", "host:x") == 1  # refused before anything is sent
    r = await client.get("/api/v1/models?workspace_id=" + cli.account.personal_workspace_id, headers=cli.account.headers)
    model = next(m for m in (await r.json())["items"] if m["name"] == "made")
    r = await client.get(f"/api/v1/models/{model['id']}/versions/1", headers=cli.account.headers)
    assert (await r.json())["source"] == {"kind": "environment", "id": env["id"]}
