"""llama.cpp's server for one GGUF file, in a process of its own: ``python langgraph_moa/local_engine.py``.

:func:`langgraph_moa.local.llama_server` starts it; nothing else needs to.
The engine is ``xllamacpp.Server``, llama.cpp's own C++ server in a prebuilt
wheel: OpenAI-compatible routes on loopback, ``--slots`` parallel slots with
continuous batching (one per concurrent request), jinja chat templates (tool
calls) and JSON-schema grammars.

It runs in a child process rather than in the caller's because an in-process
server cannot be stopped promptly: dropping ``xllamacpp.Server`` waits for
every generation in progress to finish (31 s with three long answers running,
measured here), and it leaves a thread behind. A process can be killed at once.

The child prints its base URL (``http://127.0.0.1:<port>``) on one line of
stdout once the model is loaded, then serves until its stdin closes (the
parent exited or closed the pipe) or it is killed. It exits with
``os._exit``: the server's own teardown is the slow part this avoids. It is
run as a script, not with ``-m``, so that the child does not import the
``langgraph_moa`` package (LangGraph and LangChain) before loading the model.
"""

from __future__ import annotations

import argparse
import os
import sys


def _die_with_parent() -> None:
    """Linux: this process gets SIGKILL when its parent dies, even by SIGKILL."""
    if sys.platform != "linux":
        return
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before the line above ran
        os._exit(1)


def main(argv: list[str] | None = None) -> None:
    """Load the model, print the base URL, serve until stdin closes."""
    parser = argparse.ArgumentParser(prog="local_engine.py")
    parser.add_argument("--model", required=True, help="GGUF file")
    parser.add_argument("--alias", required=True, help="the model name the server answers to")
    parser.add_argument("--slots", type=int, default=1, help="requests served at once (llama.cpp's n_parallel)")
    parser.add_argument("--ctx", type=int, default=4096, help="context tokens per slot")
    parser.add_argument("--threads", type=int, default=0, help="generation threads (0: llama.cpp's default)")
    args = parser.parse_args(argv)
    _die_with_parent()

    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.model_alias = {args.alias}  # a set of names in llama.cpp
    params.n_parallel = args.slots
    params.n_ctx = args.ctx * args.slots  # llama.cpp splits the context between the slots
    params.port = 0  # the server picks a free port and reports it in listening_address
    params.use_jinja = True  # the model's own chat template, tool calls included
    if args.threads > 0:
        params.cpuparams.n_threads = args.threads
        params.cpuparams_batch.n_threads = args.threads
    server = xllamacpp.Server(params)
    print(server.listening_address, flush=True)
    sys.stdin.buffer.read()  # returns when the parent closes the pipe or exits
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
