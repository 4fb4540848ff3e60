"""Provisional answers: an earlier, clearly marked answer while later layers run.

With ``MoAConfig.provisional_answers`` and 3 or more layers, the fan-out of
proposer layer ``n`` (n >= 2) also sends the aggregator the proposals of layer
``n - 1``: it writes a provisional answer from them while layer ``n`` runs, so a
reader sees a synthesised answer after the first proposer layer instead of
after the last. It is never the run's answer and never on the aggregator's
``messages`` stream (``is_aggregator_token`` is False for it); it is

- streamed on the ``custom`` stream as ``provisional_token`` events
  (``{"event": "provisional_token", "layer": n - 1, "text": "..."}``), then one
  ``provisional_answer`` event with the whole text and ``built_from``: the
  models whose proposals it synthesised, in reference order;
- kept in state as ``provisional_answers`` (one per proposer layer it was built
  from), with its token usage in ``usage`` (role ``"provisional"``), priced
  like any call.

It runs in the same LangGraph step as layer ``n``'s proposers, so the step ends
when the slower of the two does. A failed provisional answer is reported on the
custom stream (``provisional_failed``) and leaves the run alone.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.messages import AIMessageChunk
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langgraph.config import get_stream_writer
from langgraph.runtime import get_runtime

from langgraph_moa.config import MoAConfig
from langgraph_moa.context import moa_config_of_run
from langgraph_moa.errors import ConfigError, EmptyResponseError
from langgraph_moa.nodes import PROVISIONAL_NODE, fingerprint
from langgraph_moa.prompts import inject_references, tool_turns_as_text
from langgraph_moa.providers import ModelResolver, StreamRedactor, describe_error, redact
from langgraph_moa.state import ProvisionalAnswer, ProvisionalInput, UsageRecord


def _usage(message: AIMessageChunk | None, layer: int, model: str) -> UsageRecord:
    meta = getattr(message, "usage_metadata", None) or {}
    return UsageRecord(
        layer=layer,
        slot=0,
        model=model,
        role="provisional",
        input_tokens=int(meta.get("input_tokens", 0)),
        output_tokens=int(meta.get("output_tokens", 0)),
        reported=bool(meta),
    )


def _key_variables(cfg: MoAConfig) -> list[str]:
    return [cfg.aggregator.api_key_env] if cfg.aggregator.api_key_env else []


def _write_token(write: Any, layer: int, text: str) -> None:
    """A ``provisional_token`` event, once the redactor has let some text through."""
    if text:
        write({"event": "provisional_token", "layer": layer, "text": text})


def make_provisional(resolve: ModelResolver) -> Runnable[ProvisionalInput, dict[str, Any]]:
    """Build the ``provisional`` node (sync and async), which calls the aggregator with ``resolve``'s model."""

    def setup(inp: ProvisionalInput, config: RunnableConfig) -> tuple[MoAConfig, Runnable, list[Any]]:
        cfg = moa_config_of_run(get_runtime(MoAConfig), config)
        if fingerprint(cfg) != inp["config_fingerprint"]:
            raise ConfigError("this turn was started with another MoA configuration")
        spec = cfg.aggregator
        history = tool_turns_as_text(inp["messages"])
        messages = inject_references(history, inp["references"], cfg.aggregation_prompt)
        return cfg, resolve(spec, cfg, streaming=True), messages

    def finish(inp: ProvisionalInput, cfg: MoAConfig, text: str, last: AIMessageChunk | None) -> dict[str, Any]:
        if not text.strip():
            raise EmptyResponseError("the model returned no text")
        layer, model = inp["layer"], cfg.aggregator.model
        text = redact(text, variables=_key_variables(cfg), shapes=False)  # an echoed key never reaches the state
        answer = ProvisionalAnswer(layer=layer, slot=0, model=model, content=text, built_from=inp["built_from"])
        get_stream_writer()({"event": "provisional_answer", **answer})
        return {"provisional_answers": [answer], "usage": [_usage(last, layer, model)]}

    def failed(inp: ProvisionalInput, exc: Exception) -> dict[str, Any]:
        error_type, message = describe_error(exc)
        get_stream_writer()(
            {"event": "provisional_failed", "layer": inp["layer"], "error_type": error_type, "message": message}
        )
        return {}

    def sync(inp: ProvisionalInput, config: RunnableConfig) -> dict[str, Any]:
        write = get_stream_writer()
        try:
            cfg, model, messages = setup(inp, config)
            write({"event": "provisional_started", "layer": inp["layer"], "built_from": inp["built_from"]})
            text, total, redactor = "", None, StreamRedactor(variables=_key_variables(cfg))
            for chunk in model.stream(messages):
                total = chunk if total is None else total + chunk
                if chunk.text:
                    text += chunk.text
                    _write_token(write, inp["layer"], redactor.feed(chunk.text))
            _write_token(write, inp["layer"], redactor.flush())
            return finish(inp, cfg, text, total)
        except ConfigError:
            raise
        except Exception as exc:  # a provisional answer never fails the run
            return failed(inp, exc)

    async def asynchronous(inp: ProvisionalInput, config: RunnableConfig) -> dict[str, Any]:
        write = get_stream_writer()
        try:
            cfg, model, messages = setup(inp, config)
            write({"event": "provisional_started", "layer": inp["layer"], "built_from": inp["built_from"]})
            text, total, redactor = "", None, StreamRedactor(variables=_key_variables(cfg))
            async with asyncio.timeout(cfg.timeout):
                async for chunk in model.astream(messages):
                    total = chunk if total is None else total + chunk
                    if chunk.text:
                        text += chunk.text
                        _write_token(write, inp["layer"], redactor.feed(chunk.text))
            _write_token(write, inp["layer"], redactor.flush())
            return finish(inp, cfg, text, total)
        except ConfigError:
            raise
        except Exception as exc:  # a provisional answer never fails the run
            return failed(inp, exc)

    return RunnableLambda(sync, afunc=asynchronous, name=PROVISIONAL_NODE)
