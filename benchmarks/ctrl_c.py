"""How fast Ctrl-C ends ``moa ask`` on the local preset, and whether llama.cpp goes with it.

Starts ``python -m langgraph_moa ask ... --preset local`` (the bundled
SmolLM2-135M-Instruct on a llama.cpp server that the command starts), sends
SIGINT at one of three points, read from the command's own output:

- ``starting``: the llama.cpp server process has run for 0.5 s but does not
  answer yet (the "local preset" line, printed once it answers, is not out),
- ``proposers``: the Self-MoA samples are being generated (after the ``MoA:``
  progress header, once the llama.cpp server has used 0.3 s of CPU since),
- ``streaming``: the aggregator's answer is streaming (the first bytes on stdout),

and measures the seconds from SIGINT to the command's exit, its exit status,
and whether every llama.cpp server it started is gone at that moment (and if
not, how long after). The point actually reached when the signal was sent is
recorded from the output seen by then, so a run that missed its point is
counted where it landed. The target is 1 s from SIGINT to exit with no server
left behind. Times include the load of a shared machine: the load average is
written next to the table.

With ``--before DIR`` (another checkout, e.g. ``git worktree add DIR <commit>``)
every run is repeated on that checkout's code right after, so both are
measured under the same load in one run.

    python benchmarks/ctrl_c.py [--repeats 5] [--max-tokens 128] [--before DIR]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _report import save_plot, write_table

HERE = Path(__file__).resolve().parent.parent
PHASES = ("starting", "proposers", "streaming")
TARGET = 1.0
STARTING_DELAY = 0.5
"""Seconds after the llama.cpp process appears before the ``starting`` SIGINT (it loads the model then)."""
GENERATING_CPU = 0.3
"""CPU seconds the llama.cpp server must use after the ``MoA:`` header before the ``proposers`` SIGINT."""
PROVIDER_VARIABLES = ("TOGETHER_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY")
PROMPT = "Tell a long story about a dragon who learns to count."


@dataclass
class Output:
    """What the command printed so far, read on background threads."""

    stderr: list[str] = field(default_factory=list)
    stdout_bytes: int = 0
    changed: threading.Event = field(default_factory=threading.Event)

    def seen(self, prefix: str) -> bool:
        return any(line.startswith(prefix) for line in self.stderr)

    def reached(self) -> str:
        """The point the run had reached, from its output."""
        if self.stdout_bytes:
            return "streaming"
        if self.seen("layer 1: aggregating"):
            return "first token"
        if self.seen("layer 1 complete"):
            return "between layers"
        if self.seen("MoA:"):
            return "proposers"
        if self.seen("moa: local preset"):
            return "graph start"
        return "starting"


def _read(process: subprocess.Popen[bytes], out: Output) -> list[threading.Thread]:
    def stderr() -> None:
        assert process.stderr is not None
        for raw in process.stderr:
            out.stderr.append(raw.decode(errors="replace").strip())
            out.changed.set()

    def stdout() -> None:
        assert process.stdout is not None
        while chunk := os.read(process.stdout.fileno(), 4096):
            out.stdout_bytes += len(chunk)
            out.changed.set()

    threads = [threading.Thread(target=f, daemon=True) for f in (stderr, stdout)]
    for thread in threads:
        thread.start()
    return threads


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (Linux /proc)."""
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found.extend(int(p) for p in f.read().split())
    except (FileNotFoundError, ProcessLookupError):
        pass
    return found


def cpu_seconds(pid: int) -> float:
    """CPU seconds ``pid`` has used (user + system)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_until(out: Output, ready: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not ready():  # type: ignore[operator]
        if time.monotonic() > deadline:
            return False
        out.changed.wait(0.02)
        out.changed.clear()
    return True


def one_run(phase: str, max_tokens: int, code: Path) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_VARIABLES}
    env["PYTHONPATH"] = str(code)  # this checkout's langgraph_moa is the one imported
    env.update({"LANGSMITH_TRACING": "false", "PYTHONUNBUFFERED": "1"})
    command = [
        sys.executable,
        "-m",
        "langgraph_moa",
        "ask",
        PROMPT,
        "--preset",
        "local",
        "--max-tokens",
        str(max_tokens),
    ]
    process = subprocess.Popen(
        command, cwd=code, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env
    )
    out = Output()
    threads = _read(process, out)
    servers: list[int] = []
    try:
        if phase == "starting":  # the server process has run for a moment; the "local preset" line is not out yet
            ok = wait_until(out, lambda: bool(children(process.pid)) or out.seen("moa: local preset"), 60)
            time.sleep(STARTING_DELAY)
        elif phase == "proposers":  # the header is out and llama.cpp is generating the samples (it uses CPU)
            ok = wait_until(out, lambda: out.seen("MoA:"), 120)
            server = children(process.pid)[:1]
            used = sum(cpu_seconds(pid) for pid in server)
            ok = ok and wait_until(out, lambda: sum(cpu_seconds(pid) for pid in server) > used + GENERATING_CPU, 120)
        else:
            ok = wait_until(out, lambda: out.stdout_bytes > 0, 600)
        if not ok or process.poll() is not None:
            raise RuntimeError(f"{phase}: the run never got there; stderr: {out.stderr[-3:]}")
        servers = children(process.pid)
        reached = out.reached()
        started = time.perf_counter()
        process.send_signal(signal.SIGINT)
        status = process.wait()
        seconds = time.perf_counter() - started
        left = [pid for pid in servers if alive(pid)]
        gone_at_exit = not left
        gone_after = 0.0
        while left and time.perf_counter() - started < 30:
            time.sleep(0.01)
            left = [pid for pid in left if alive(pid)]
            gone_after = time.perf_counter() - started - seconds
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in servers:  # never leave a server behind, whatever happened
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    for thread in threads:
        thread.join(timeout=5)
    return {
        "code": code.name if code != HERE else "this checkout",
        "phase": phase,
        "reached": reached,
        "seconds": seconds,
        "exit": status,
        "servers": len(servers),
        "servers_gone_at_exit": gone_at_exit,
        "servers_gone_after": gone_after,
        "interrupted_line": any(line == "interrupted" for line in out.stderr),
    }


def write(
    runs: list[dict[str, object]], repeats: int, max_tokens: int, load: tuple[float, float], before: Path | None
) -> Path:
    order = ["starting", "graph start", "proposers", "between layers", "first token", "streaming"]
    reached = [p for p in order if any(r["reached"] == p for r in runs)]
    lines = [
        f"`moa ask --preset local --max-tokens {max_tokens}` (bundled SmolLM2-135M-Instruct on llama.cpp), "
        f"SIGINT at each point {repeats} times; seconds from SIGINT to the command's exit, measured by "
        f"`python benchmarks/ctrl_c.py --repeats {repeats} --max-tokens {max_tokens}"
        + (" --before CHECKOUT`" if before else "`")
        + (
            f". Each run of this checkout was followed by one of the checkout `{before.name}` under the same load. "
            if before
            else ". "
        )
        + f"Load average (1 min) {load[0]:.1f} before the runs, {load[1]:.1f} after, on {os.cpu_count()} cores. "
        f"Target: exit within {TARGET:.0f} s with no llama.cpp server left.",
        "",
        "| SIGINT while | code | runs | median s | max s | within 1 s | exit 130 | llama.cpp gone at exit |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    codes = list(dict.fromkeys(str(r["code"]) for r in runs))
    for phase, code in [(p, c) for p in reached for c in codes]:
        rs = [r for r in runs if r["reached"] == phase and r["code"] == code]
        if not rs:
            continue
        times = [float(r["seconds"]) for r in rs]  # type: ignore[arg-type]
        late = [float(r["servers_gone_after"]) for r in rs if not r["servers_gone_at_exit"]]  # type: ignore[arg-type]
        gone = f"{len(rs) - len(late)}/{len(rs)}" + (f" (rest {max(late):.2f} s later)" if late else "")
        lines.append(
            f"| {phase} | {code} | {len(rs)} | {statistics.median(times):.2f} | {max(times):.2f} | "
            f"{sum(t <= TARGET for t in times)}/{len(rs)} | {sum(r['exit'] == 130 for r in rs)}/{len(rs)} | {gone} |"
        )
    out = write_table("ctrl_c", lines)

    def draw(plt: Any) -> Any:
        fig, ax = plt.subplots(figsize=(6, 3.4))
        for k, (code, marker) in enumerate(zip(codes, "o^", strict=False)):
            for i, phase in enumerate(reached):
                ys = [float(r["seconds"]) for r in runs if r["reached"] == phase and r["code"] == code]  # type: ignore[arg-type]
                xs = [i + (k - (len(codes) - 1) / 2) * 0.3 + (j - (len(ys) - 1) / 2) * 0.04 for j in range(len(ys))]
                ax.plot(xs, ys, marker, color=f"C{k}", alpha=0.7, label=code if i == 0 else None)
        ax.axhline(TARGET, color="red", lw=0.8, ls="--", label=f"target {TARGET:.0f} s")
        ax.set_xticks(range(len(reached)), reached)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("Ctrl-C while")
        ax.set_ylabel("seconds from SIGINT to exit")
        ax.set_title("moa ask on the local preset: Ctrl-C to exit")
        ax.legend()
        return fig

    save_plot("ctrl_c", draw)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument(
        "--before",
        type=Path,
        help="another checkout of the repository (e.g. a git worktree of an older commit): "
        "each run is repeated on its code, under the same load",
    )
    args = parser.parse_args()
    checkouts = [HERE, *([args.before.resolve()] if args.before else [])]
    before = os.getloadavg()[0]
    runs = []
    for _ in range(args.repeats):
        for phase, code in [(p, c) for p in PHASES for c in checkouts]:
            for attempt in range(3):  # a run that failed before its point (the model server died) is redone
                try:
                    run = one_run(phase, args.max_tokens, code)
                    break
                except RuntimeError as exc:
                    print(f"{phase}: attempt {attempt + 1} did not get there: {exc}", flush=True)
            else:
                raise SystemExit(f"{phase}: three runs failed before the point to interrupt")
            print(
                f"{run['code']:14} {phase:10} reached {run['reached']:14} {run['seconds']:.2f}s exit {run['exit']} "
                f"servers {run['servers']} gone at exit {run['servers_gone_at_exit']}",
                flush=True,
            )
            runs.append(run)
    out = write(runs, args.repeats, args.max_tokens, (before, os.getloadavg()[0]), args.before)
    print(out.read_text())


if __name__ == "__main__":
    main()
