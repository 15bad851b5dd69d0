"""Images: save-as-image vs raw ``docker commit`` + ``docker push``; start from the
registry vs raw ``docker pull`` + ``docker run``. Same run, same registry, same machine.

Runs the real ``remotegpu serve`` (SQLite, embedded agent, Docker runtime, its own
Docker scope) configured with a Debian ``docker-registry`` started here (htpasswd auth,
loopback). An environment gets ``--gib`` GiB of changes (random bytes under /opt, so
compression cannot shrink them), then:

* **save**: raw = ``docker commit`` of the container + ``docker push`` of the result to
  a fresh repository (its base layer too: nothing is in the registry yet); then the
  blob is rewritten (another GiB of random bytes) and raw is timed again, the base
  layer now in the registry ("raw, base already pushed"); then platform =
  ``POST /environments/{id}/save-image`` until the job succeeded (docker diff + export
  filtered of data and secrets → one layer on the image's own, streamed straight to the
  registry: gzip members, stored where they do not compress, the base's layers mounted;
  no docker load, no docker push; the base layer is in the registry by then, like the
  second raw). The fair pair is the second raw vs platform.
* **start from the registry**: both images removed locally (the save kept none); raw = ``docker pull`` +
  ``docker run -d`` until the container runs; platform = ``POST /environments`` with the
  saved image until ``running`` (the agent pulls it with progress, then starts it).

    .venv/bin/python bench/images.py [--gib 1] [--reps 1]

Aim (issue 15): save ≤ 1.3× raw commit + push.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import docker  # noqa: E402

from tests.support.live_server import live_server  # noqa: E402
from tests.support.registry import running_registry  # noqa: E402

IMAGE = "remotegpu/base:latest"


def wait(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out: {what}")
        time.sleep(interval)


def env_status(srv, token, env_id):
    code, env = srv.request("GET", f"/api/v1/environments/{env_id}", token=token)
    if env.get("status") == "failed":
        raise SystemExit(f"environment failed: {env}")
    return env.get("status")


def docker_cli(*args: str) -> None:
    subprocess.run(["docker", *args], check=True, capture_output=True)


def report(args, rows) -> None:
    print(f"\n{args.gib:g} GiB of changes, {args.reps} repetition(s); seconds (median)")
    print(f"{'':34} {'median':>8} {'min':>8}")
    for name, values in rows.items():
        if values:
            print(f"{name:34} {statistics.median(values):8.1f} {min(values):8.1f}")
    if rows["raw save"] and rows["platform save"]:
        print(f"\nsave: platform / raw commit+push (base already pushed, the same state) = "
              f"{statistics.median(rows['platform save']) / statistics.median(rows['raw save, base already pushed']):.2f}x"
              f" (vs the first raw, which also pushed the base: "
              f"{statistics.median(rows['platform save']) / statistics.median(rows['raw save']):.2f}x)")
        print(f"start from registry: platform / raw pull+run = "
              f"{statistics.median(rows['platform start from registry']) / statistics.median(rows['raw pull + run']):.2f}x")



def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--reps", type=int, default=1)
    args = parser.parse_args()
    client = docker.from_env(timeout=1800)
    client.images.get(IMAGE)
    scope = f"bimg{int(time.time())}"
    rows: dict[str, list[float]] = {k: [] for k in ("raw save", "raw save, base already pushed", "platform save",
                                                    "raw pull + run", "platform start from registry")}
    with running_registry() as reg:
        auth = {"username": reg.username, "password": reg.password}
        with live_server(Path(f"/tmp/{scope}"), REMOTEGPU_RUNTIME="docker", REMOTEGPU_AGENT_FAKE_GPUS="1xNVIDIA L4 24GB",
                         REMOTEGPU_HEARTBEAT_SECONDS="1", REMOTEGPU_DOCKER_SCOPE=scope, REMOTEGPU_AGENT_NAME=f"host-{scope}",
                         REMOTEGPU_REGISTRY_URL=reg.address, REMOTEGPU_REGISTRY_USERNAME=reg.username,
                         REMOTEGPU_REGISTRY_PASSWORD=reg.password) as srv:
            token = srv.login("admin", "admin-password-123")
            ws = srv.request("GET", "/api/v1/workspaces", token=token)[1]["items"][0]["id"]
            wait(lambda: any(h["status"] == "ready" for h in srv.request("GET", "/api/v1/hosts", token=token)[1]["items"]),
                 60, "host")
            try:
                for rep in range(args.reps):
                    code, env = srv.request("POST", "/api/v1/environments", {
                        "name": f"bench{rep}", "workspace_id": ws, "cpu_cores": 1, "memory_gib": 2}, token=token)
                    assert code == 202, env
                    wait(lambda: env_status(srv, token, env["id"]) == "running", 180, "env running")
                    box = client.containers.list(filters={"label": f"remotegpu.env_id={env['id']}"})[0]
                    mib = int(args.gib * 1024)
                    code, out = box.exec_run(["/bin/sh", "-c", f"head -c {mib}M /dev/urandom > /opt/blob && sync"])
                    assert code == 0, out

                    # raw: docker commit + docker push (fresh repository, nothing in the registry yet)
                    raw_ref = f"{reg.address}/raw/r{rep}:1"
                    t0 = time.perf_counter()
                    box.commit(repository=f"{reg.address}/raw/r{rep}", tag="1")
                    for line in client.api.push(f"{reg.address}/raw/r{rep}", tag="1", stream=True, decode=True, auth_config=auth):
                        assert "error" not in line, line
                    rows["raw save"].append(time.perf_counter() - t0)
                    # raw again, after another GiB of changes: the base layer is in the registry now
                    code, out = box.exec_run(["/bin/sh", "-c", f"head -c {mib}M /dev/urandom > /opt/blob && sync"])
                    assert code == 0, out
                    raw_ref2 = f"{reg.address}/raw/r{rep}b:1"
                    t0 = time.perf_counter()
                    box.commit(repository=f"{reg.address}/raw/r{rep}b", tag="1")
                    for line in client.api.push(f"{reg.address}/raw/r{rep}b", tag="1", stream=True, decode=True, auth_config=auth):
                        assert "error" not in line, line
                    rows["raw save, base already pushed"].append(time.perf_counter() - t0)

                    # platform: save-image until the job succeeded
                    t0 = time.perf_counter()
                    code, body = srv.request("POST", f"/api/v1/environments/{env['id']}/save-image",
                                             {"name": f"bench{rep}", "tag": "1"}, token=token)
                    assert code == 202, body

                    def done():
                        job = srv.request("GET", f"/api/v1/image-jobs/{body['job']['id']}", token=token)[1]
                        if job["status"] in ("failed", "cancelled"):
                            raise SystemExit(f"save failed: {job['error']}")
                        return job["status"] == "succeeded"

                    wait(done, 3600, "save", 0.2)
                    rows["platform save"].append(time.perf_counter() - t0)
                    saved = srv.request("GET", f"/api/v1/images/{body['image']['id']}", token=token)[1]

                    # start from the registry: nothing local
                    for ref in (raw_ref, raw_ref2, saved["reference"]):
                        try:
                            client.images.remove(ref, force=True)
                        except docker.errors.ImageNotFound:
                            pass  # the save keeps no copy on the host
                    t0 = time.perf_counter()
                    for line in client.api.pull(f"{reg.address}/raw/r{rep}", tag="1", stream=True, decode=True, auth_config=auth):
                        assert "error" not in line, line
                    raw_box = client.containers.run(raw_ref, detach=True, labels={"remotegpu.scope": scope})
                    wait(lambda: (raw_box.reload() or raw_box.status) == "running", 120, "raw run")
                    rows["raw pull + run"].append(time.perf_counter() - t0)
                    raw_box.remove(force=True)
                    client.images.remove(raw_ref, force=True)

                    t0 = time.perf_counter()
                    code, env2 = srv.request("POST", "/api/v1/environments", {
                        "name": f"from{rep}", "workspace_id": ws, "cpu_cores": 1, "memory_gib": 2, "image_id": saved["id"]},
                        token=token)
                    assert code == 202, env2
                    wait(lambda: env_status(srv, token, env2["id"]) == "running", 1800, "env from registry", 0.05)
                    rows["platform start from registry"].append(time.perf_counter() - t0)
                    for e in (env, env2):
                        srv.request("DELETE", f"/api/v1/environments/{e['id']}", token=token)
                    time.sleep(3)
                    srv.request("DELETE", f"/api/v1/images/{saved['id']}", token=token)
                report(args, rows)  # before the cleanup: a cleanup error must not lose the figures
            finally:
                from tests.support.components import remove_scope

                for c in client.containers.list(all=True, filters={"label": f"remotegpu.scope={scope}"}):
                    try:
                        c.remove(force=True)
                    except docker.errors.APIError:
                        pass  # the server is removing it (409) or did (404)
                try:
                    remove_scope(client, scope)
                except docker.errors.APIError as exc:
                    print(f"cleanup: {exc}", file=sys.stderr)
                for image in client.images.list():
                    for ref in image.tags:
                        if ref.startswith(reg.address + "/"):
                            client.images.remove(ref, force=True)


if __name__ == "__main__":
    main()
