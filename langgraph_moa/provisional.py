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
from langgraph_moa.context import fingerprint, turn_moa_config
from langgraph_moa.errors import ConfigError, EmptyResponseError
from langgraph_moa.node_names import PROVISIONAL_NODE
from langgraph_moa.prompts import inject_references, tool_turns_as_text
from langgraph_moa.providers import ModelResolver, StreamRedactor, describe_error, key_variables, redact
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


def _write_token(write: Any, layer: int, text: str) -> None:
    """A ``provisional_token`` event, once the redactor has let some text through."""
    if text:
        write({"event": "provisional_token", "layer": layer, "text": text})


class _Collector:
    """The streamed chunks of one provisional answer: each token on the custom stream, redacted; then the answer."""

    def __init__(self, inp: ProvisionalInput, cfg: MoAConfig) -> None:
        self.inp, self.cfg = inp, cfg
        self.write = get_stream_writer()
        self.text = ""
        self.total: AIMessageChunk | None = None
        self.secrets = key_variables(cfg)  # the models' own key variables, whatever their names
        self.redactor = StreamRedactor(variables=self.secrets)

    def add(self, chunk: AIMessageChunk) -> None:
        """Count one chunk and stream its text once the redactor lets it through."""
        self.total = chunk if self.total is None else self.total + chunk
        if chunk.text:
            self.text += chunk.text
            _write_token(self.write, self.inp["layer"], self.redactor.feed(chunk.text))

    def finish(self) -> dict[str, Any]:
        """The state update: the answer (an echoed key removed) and its usage.

        Raises:
            EmptyResponseError: the model wrote no text.
        """
        _write_token(self.write, self.inp["layer"], self.redactor.flush())
        if not self.text.strip():
            raise EmptyResponseError("the model returned no text")
        layer, model = self.inp["layer"], self.cfg.aggregator.model
        text = redact(self.text, variables=self.secrets, shapes=False)  # never reaches the state
        answer = ProvisionalAnswer(layer=layer, slot=0, model=model, content=text, built_from=self.inp["built_from"])
        self.write({"event": "provisional_answer", **answer})
        return {"provisional_answers": [answer], "usage": [_usage(self.total, layer, model)]}


def make_provisional(resolve: ModelResolver) -> Runnable[ProvisionalInput, dict[str, Any]]:
    """Build the ``provisional`` node (sync and async), which calls the aggregator with ``resolve``'s model."""

    def start(inp: ProvisionalInput, config: RunnableConfig) -> tuple[MoAConfig, Runnable, list[Any], _Collector]:
        cfg = turn_moa_config(get_runtime(MoAConfig), config, inp.get("moa_config"))
        if fingerprint(cfg) != inp["config_fingerprint"]:
            raise ConfigError("this turn was started with another MoA configuration")
        history = tool_turns_as_text(inp["messages"])
        messages = inject_references(history, inp["references"], cfg.aggregation_prompt)
        model = resolve(cfg.aggregator, cfg, streaming=True)
        get_stream_writer()({"event": "provisional_started", "layer": inp["layer"], "built_from": inp["built_from"]})
        return cfg, model, messages, _Collector(inp, cfg)

    def failed(inp: ProvisionalInput, exc: Exception) -> dict[str, Any]:
        error_type, message = describe_error(exc)
        get_stream_writer()(
            {"event": "provisional_failed", "layer": inp["layer"], "error_type": error_type, "message": message}
        )
        return {}

    def sync(inp: ProvisionalInput, config: RunnableConfig) -> dict[str, Any]:
        try:
            _, model, messages, collect = start(inp, config)
            for chunk in model.stream(messages):
                collect.add(chunk)
            return collect.finish()
        except ConfigError:
            raise
        except Exception as exc:  # a provisional answer never fails the run
            return failed(inp, exc)

    async def asynchronous(inp: ProvisionalInput, config: RunnableConfig) -> dict[str, Any]:
        try:
            cfg, model, messages, collect = start(inp, config)
            async with asyncio.timeout(cfg.timeout):
                async for chunk in model.astream(messages):
                    collect.add(chunk)
            return collect.finish()
        except ConfigError:
            raise
        except Exception as exc:  # a provisional answer never fails the run
            return failed(inp, exc)

    return RunnableLambda(sync, afunc=asynchronous, name=PROVISIONAL_NODE)
