"""A real Prometheus (Debian's, started here on a free port) scrapes the test server's
/metrics with the scrape token: a query by environment label returns that environment's
series, the Prometheus MetricsStore answers history from it, and every PromQL query of
the Grafana dashboard (deploy/grafana) returns series."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest

from remotegpu.adapters.db.migrate import upgrade
from remotegpu.adapters.fleet.credentials import FileCredentialStore
from remotegpu.adapters.fleet.fake_probe import FakeGpuProbe
from remotegpu.adapters.fleet.http_link import HttpAgentLink
from remotegpu.adapters.fleet.system_info import HostSystemInfo
from remotegpu.adapters.monitoring.prometheus_store import PrometheusMetricsStore
from remotegpu.adapters.runtime.memory import InMemoryRuntime
from remotegpu.application.fleet.agent import HostAgent
from remotegpu.application.monitoring.collector import MetricsCollector
from remotegpu.application.monitoring.ports import SeriesFilter
from remotegpu.domain.monitoring import metrics as m
from remotegpu.entrypoints.containers import build_container
from remotegpu.entrypoints.http.app import create_app
from tests.conftest import make_settings, signup
from tests.support.components import binary
from tests.support.live_server import free_port

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "remotegpu-dashboard.json"
TOKEN = "prometheus-scrape-token-0123"


@pytest.fixture
def prometheus(tmp_path):
    """Starts Prometheus; ``start(target)`` points its scrape at host:port."""
    exe = os.environ.get("REMOTEGPU_PROMETHEUS_BIN") or binary("prometheus")
    procs = []

    def start(target: str) -> str:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: remotegpu\n"
            "    metrics_path: /metrics\n"
            f"    authorization: {{credentials: {TOKEN}}}\n"
            f"    static_configs: [{{targets: ['{target}']}}]\n")
        proc = subprocess.Popen([exe, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "w"))
        procs.append(proc)
        return f"http://127.0.0.1:{port}"

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def test_prometheus_scrapes_per_environment_series_and_the_dashboard_queries_answer(aiohttp_client, tmp_path, prometheus):
    settings = make_settings(tmp_path, embedded_agent=False, metrics_token=TOKEN)
    container = build_container(settings)
    await asyncio.to_thread(upgrade, settings.effective_database_url)
    client = await aiohttp_client(create_app(container, run_background=False), cookie_jar=aiohttp.DummyCookieJar())
    admin = await signup(client, admin_container=container)
    user = await signup(client)
    r = await client.post("/api/v1/hosts", json={"name": "gpu-1"}, headers=admin.headers)
    host_id = (await r.json())["id"]
    control = tmp_path / "fake.json"
    probe = FakeGpuProbe("2xNVIDIA A100-SXM4-80GB", seed="gpu-1", control_file=control)
    link = HttpAgentLink(str(client.make_url("")))
    agent = HostAgent(InMemoryRuntime(), probe, link, HostSystemInfo(tmp_path), name="gpu-1",
                      join_token=(await r.json())["join_token"], credentials=FileCredentialStore(tmp_path / "agent"),
                      collector=MetricsCollector(probe, None, interval_seconds=1))
    try:
        await agent.beat_once()
        r = await client.post("/api/v1/environments", json={"name": "train", "workspace_id": user.personal_workspace_id,
                                                            "gpu_count": 1, "cpu_cores": 1, "memory_gib": 1}, headers=user.headers)
        env_id = (await r.json())["id"]
        await agent.beat_once()
        ws = user.personal_workspace_id
        control.write_text(json.dumps({"*": {"DCGM_FI_DEV_GPU_UTIL": 95}}))

        async def feed() -> None:
            """GPU readings through the agent, plus container readings for the environment
            (the in-memory runtime has no cgroups) on the same agent route."""
            await agent.collector.collect_once()
            now = time.time()
            container.metrics_service().forget_tags()
            await agent.beat_once()
            rows = [[now, name, value, env_id, ""] for name, value in (
                (m.CPU_PERCENT, 80.0), (m.CPU_CORES, 0.8), (m.MEM_USED, 300.0), (m.MEM_LIMIT, 1024.0),
                (m.NET_RX, 1000.0), (m.NET_TX, 2000.0), (m.DISK_READ, 0.0), (m.DISK_WRITE, 10.0))]
            r = await client.post("/api/v1/agent/metrics", json={"samples": rows},
                                  headers={"Authorization": f"Bearer {agent._token}"})
            assert (await r.json())["accepted"] == len(rows)

        await feed()
        url = prometheus(f"{client.server.host}:{client.server.port}")
        store = PrometheusMetricsStore(url)
        selector = f'DCGM_FI_DEV_GPU_UTIL{{environment="{env_id}"}}'
        deadline = time.monotonic() + 60
        found = []
        while time.monotonic() < deadline:
            try:
                found = await store.query(selector)
            except (aiohttp.ClientError, Exception):  # noqa: BLE001 - not up yet
                found = []
            if found:
                break
            await asyncio.sleep(0.5)
            await feed()
        assert len(found) == 1, (tmp_path / "prometheus.log").read_text()[-2000:]
        labels = found[0]["metric"]
        assert (labels["environment"], labels["workspace"], labels["host"]) == (env_id, ws, host_id)
        assert float(found[0]["value"][1]) == 95.0

        for _ in range(4):  # a few more scrapes of history
            await feed()
            await asyncio.sleep(1)
        now = time.time()
        [series] = await store.history(SeriesFilter(env_id=env_id), m.GPU_UTIL, now - 60, now, 10, now=now)
        assert series.env_id == env_id and series.points and all(p.max == 95.0 for p in series.points)

        # every query of the Grafana dashboard returns series (variables filled in)
        dashboard = json.loads(DASHBOARD.read_text())
        exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
        exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
        assert len(exprs) >= 15
        for expr in exprs:
            filled = expr.replace("$environment", env_id).replace("$host", host_id).replace("$workspace", ws)
            lv = re.fullmatch(r"label_values\((.+), (\w+)\)", filled)
            query = f"group by ({lv.group(2)}) ({lv.group(1)})" if lv else filled
            result = await store.query(query)
            assert result, f"no series for {expr!r}"
    finally:
        await link.close()
