"""The local preset's samples spread over several llama.cpp servers (no model needed)."""

from __future__ import annotations

from langgraph_moa.local import LOCAL_SAMPLES, LocalServers, local_config


def test_samples_go_to_their_own_servers_and_the_first_server_aggregates() -> None:
    urls = LocalServers(
        {"m": "http://127.0.0.1:1/v1"},
        {"m": ["http://127.0.0.1:2/v1", "http://127.0.0.1:3/v1", "http://127.0.0.1:4/v1"]},
    )
    config = local_config(urls)
    assert [p.base_url for p in config.proposers] == urls.sample_urls["m"]
    assert [(p.temperature, p.seed) for p in config.proposers] == [(t, None) for t in LOCAL_SAMPLES]
    assert config.aggregator.base_url == "http://127.0.0.1:1/v1"


def test_without_sample_servers_every_sample_shares_the_one_server() -> None:
    config = local_config({"m": "http://127.0.0.1:1/v1"})
    assert {p.base_url for p in config.proposers} == {"http://127.0.0.1:1/v1"}
    fewer = local_config(LocalServers({"m": "http://127.0.0.1:1/v1"}, {"m": ["http://127.0.0.1:2/v1"]}))
    assert {p.base_url for p in fewer.proposers} == {"http://127.0.0.1:2/v1"}
