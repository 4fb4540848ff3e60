"""The suite writes nothing into the real home directory or the repository."""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from langgraph_moa.paths import data_dir

REPOSITORY = Path(__file__).resolve().parent.parent


def test_the_session_has_a_throwaway_home() -> None:
    real_home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    assert Path.home() != real_home
    assert not data_dir().is_relative_to(real_home)
    assert not data_dir().is_relative_to(REPOSITORY)


def test_subprocesses_inherit_the_throwaway_home() -> None:
    code = "from langgraph_moa.paths import data_dir; print(data_dir())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert Path(out.strip()) == data_dir()


def test_benchmark_storage_is_outside_the_repository(pytestconfig: pytest.Config) -> None:
    storage = getattr(pytestconfig.option, "benchmark_storage", None)
    if storage is None:
        pytest.skip("pytest-benchmark is not installed")
    assert not Path(storage.removeprefix("file://")).resolve().is_relative_to(REPOSITORY)


@pytest.mark.filterwarnings("ignore:A test tried to use socket.socket.connect:UserWarning")  # the refusal
def test_the_suite_cannot_reach_the_network() -> None:
    from pytest_socket import SocketConnectBlockedError

    with pytest.raises(SocketConnectBlockedError):  # 192.0.2.1 is TEST-NET-1, reserved for documentation
        socket.create_connection(("192.0.2.1", 443), timeout=1)
    with socket.socket() as listener:  # loopback stays open: the simulated servers live there
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        socket.create_connection(listener.getsockname(), timeout=5).close()


def test_the_data_directory_is_xdg_data_home_else_the_platforms(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert data_dir() == tmp_path / "langgraph-moa"
    monkeypatch.delenv("XDG_DATA_HOME")
    if sys.platform == "linux":
        assert data_dir() == Path.home() / ".local" / "share" / "langgraph-moa"
    assert data_dir().name == "langgraph-moa" and data_dir().is_relative_to(Path.home())
