"""The graph served by ``langgraph dev`` from langgraph.json, as LangGraph Studio uses it."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from langgraph_moa.testing import SimulatedOpenAIServer

pytestmark = pytest.mark.langgraph_dev
ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory):
    cli = shutil.which("langgraph", path=str(Path(sys.executable).parent)) or shutil.which("langgraph")
    if cli is None:
        pytest.skip("pip install 'langgraph-cli[inmem]'")
    port = _free_port()
    log = tmp_path_factory.mktemp("dev") / "dev.log"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(LANGGRAPH_CLI_NO_ANALYTICS="1", LANGSMITH_TRACING="false")
    with open(log, "w") as out:
        process = subprocess.Popen(
            [cli, "dev", "--host", "127.0.0.1", "--port", str(port), "--no-browser", "--no-reload"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 90
        base = None
        while time.monotonic() < deadline and base is None:
            # langgraph dev moves to another port when the asked one is busy: read the one it chose
            found = re.search(r"API: \S*?(http://127\.0\.0\.1:\d+)", log.read_text())
            if found:
                try:
                    urllib.request.urlopen(found.group(1) + "/ok", timeout=1)
                    base = found.group(1)
                except OSError:
                    pass
            if process.poll() is not None:
                pytest.fail("langgraph dev exited:\n" + log.read_text()[-2000:])
            time.sleep(0.5)
        if base is None:
            pytest.fail("langgraph dev did not start:\n" + log.read_text()[-2000:])
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_studio_sees_the_graph_and_its_context_schema(dev_server: str) -> None:
    (assistant,) = _post(f"{dev_server}/assistants/search", {"graph_id": "moa"})
    with urllib.request.urlopen(f"{dev_server}/assistants/{assistant['assistant_id']}/schemas") as response:
        schemas = json.loads(response.read())
    assert {"layers", "proposers", "aggregator", "min_proposals"} <= set(schemas["context_schema"]["properties"])
    with urllib.request.urlopen(f"{dev_server}/assistants/{assistant['assistant_id']}/graph") as response:
        graph = json.loads(response.read())
    assert {"prepare", "propose", "join_layer", "aggregate"} <= {n["id"] for n in graph["nodes"]}


@pytest.mark.parametrize("via", ["context", "configurable"])
def test_a_run_through_the_langgraph_api(dev_server: str, via: str) -> None:
    with SimulatedOpenAIServer() as sim:
        settings = {"layers": 3, "proposers": ["openai:p1", "openai:p2"], "aggregator": "openai:agg", "base_url": sim.base_url}
        body = {"assistant_id": "moa", "input": {"messages": [{"role": "user", "content": "hello studio"}]}}
        body.update({"context": settings} if via == "context" else {"config": {"configurable": settings}})
        state = _post(f"{dev_server}/runs/wait", body)
        assert state["messages"][-1]["content"] == "agg answer to: hello studio [refs=2]"
        assert sim.calls("p1") == 2 and sim.calls("agg") == 1
        assert state["usage_summary"]["total"]["total_tokens"] > 0
