"""``remotegpu images``: ls, save (refused without a registry, with the API's error), rm."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.live_server import live_server


def run(*args, env):
    return subprocess.run([sys.executable, "-m", "remotegpu.entrypoints.cli", "images", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_images_ls_save_rm(tmp_path):
    with live_server(tmp_path) as srv:
        token = srv.login("admin", "admin-password-123")
        env = {**os.environ, "REMOTEGPU_URL": srv.url, "REMOTEGPU_TOKEN": token}
        out = run("ls", env=env)
        assert out.returncode == 0, out.stderr
        assert "base:latest" in out.stdout and "remotegpu/base:latest" in out.stdout  # seeded at start-up
        code, published = srv.request("POST", "/api/v1/images", {"name": "cuda", "tag": "12", "reference": "reg.test/cuda:12"},
                                      token=token)
        assert code == 201, published
        out = run("ls", "--json", env=env)
        assert out.returncode == 0 and "reg.test/cuda:12" in out.stdout
        out = run("save", "no-such-env", "x", env=env)
        assert out.returncode == 1 and "404" in out.stderr
        assert run("rm", published["id"], env=env).returncode == 0
        assert "reg.test/cuda:12" not in run("ls", env=env).stdout
        assert run("ls", env={**env, "REMOTEGPU_TOKEN": "bad"}).returncode == 1
