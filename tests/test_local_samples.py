"""The local preset's calls and its servers (no model needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from langgraph_moa import local
from langgraph_moa.local import LOCAL_SAMPLES, LocalModelError, local_config, local_servers


def test_every_sample_and_the_aggregation_go_to_the_model_s_one_server() -> None:
    config = local_config({"m": "http://127.0.0.1:1/v1"})
    assert [p.base_url for p in config.proposers] == ["http://127.0.0.1:1/v1"] * len(LOCAL_SAMPLES)
    assert [(p.temperature, p.seed) for p in config.proposers] == [(t, None) for t in LOCAL_SAMPLES]
    assert config.aggregator.base_url == "http://127.0.0.1:1/v1"


def test_with_several_models_each_is_a_proposer_and_the_first_aggregates() -> None:
    config = local_config({"a": "http://127.0.0.1:1/v1", "b": "http://127.0.0.1:2/v1"})
    assert [(p.model, p.base_url) for p in config.proposers] == [
        ("openai:a", "http://127.0.0.1:1/v1"),
        ("openai:b", "http://127.0.0.1:2/v1"),
    ]
    assert config.aggregator.model == "openai:a"


@pytest.mark.parametrize(("files", "slots"), [(["m.gguf"], len(LOCAL_SAMPLES)), (["a.gguf", "b.gguf"], 1)])
def test_a_server_gets_a_slot_per_call_it_answers_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: list[str], slots: int
) -> None:
    started: list[tuple[str, int]] = []

    def fake_server(gguf: Path, *, slots: int) -> object:
        from contextlib import nullcontext

        started.append((gguf.name, slots))
        return nullcontext(f"http://127.0.0.1:{len(started)}/v1")

    monkeypatch.setattr(local, "llama_server", fake_server)
    for name in files:
        (tmp_path / name).write_bytes(b"GGUF")
    with local_servers([tmp_path / name for name in files]) as urls:
        assert list(urls) == [name.removesuffix(".gguf") for name in files]
    assert started == [(name, slots) for name in files]


def test_a_missing_or_unloadable_gguf_is_named(tmp_path: Path) -> None:
    with pytest.raises(LocalModelError, match="GGUF file not found"), local_servers([tmp_path / "nope.gguf"]):
        pass
    pytest.importorskip("xllamacpp")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a model")
    with pytest.raises(LocalModelError, match=r"llama\.cpp server for bad\.gguf exited"), local_servers([bad]):
        pass
    assert local._running == set()


def test_the_local_preset_continues_staircase_pieces_by_prefill_except_on_your_own_server() -> None:
    from contextlib import ExitStack

    from langgraph_moa.cli_options import RunOptions, open_config

    assert local_config({"m": "http://127.0.0.1:1/v1"}).staircase_continuation == "prefill"  # llama.cpp's server
    assert local_config({"m": "http://127.0.0.1:1/v1"}, staircase_continuation="vllm").staircase_continuation == "vllm"
    with ExitStack() as stack:
        own = open_config(RunOptions(preset="local", base_url="http://127.0.0.1:9/v1"), stack)
        chosen = open_config(
            RunOptions(preset="local", base_url="http://127.0.0.1:9/v1", settings={"staircase_continuation": "vllm"}),
            stack,
        )
    assert (own.staircase_continuation, chosen.staircase_continuation) == ("prompt", "vllm")
