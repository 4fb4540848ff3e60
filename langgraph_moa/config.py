"""Configuration of a MoA run: plain data, validated when it is built.

:class:`MoAConfig` is the graph's runtime context. Pass it per run::

    await graph.ainvoke({"messages": [("user", "hi")]}, context=MoAConfig(layers=2))

or, where only ``config["configurable"]`` reaches the graph (LangServe, the
LangGraph API), as a mapping of the same fields, optionally starting from a
preset::

    await graph.ainvoke(inputs, {"configurable": {"preset": "moa-lite", "temperature": 0.2}})

Models are ``"provider:model"`` strings resolved with LangChain's
``init_chat_model``: ``together:Qwen/Qwen2.5-72B-Instruct-Turbo`` (needs
``TOGETHER_API_KEY``; ``TOGETHER_API_BASE`` moves the endpoint),
``openai:gpt-4o`` (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``), or any
OpenAI-compatible server (vLLM, Ollama, llama.cpp, LM Studio) as
``openai:<served model name>`` with a ``base_url``. A model entry may be a
:class:`ModelSpec` carrying its own temperature, max_tokens, base_url and seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from langgraph_moa.pricing import ModelPrice
from langgraph_moa.prompts import AGGREGATE_AND_SYNTHESIZE
from langgraph_moa.strict_types import Flag, Number, Whole


@dataclass(frozen=True)
class CommandLine:
    """Marks a :class:`MoAConfig` field as an option of the ``moa`` commands.

    The mark is the option's whole declaration: ``moa ask``, ``chat``,
    ``serve`` and every ``moa eval`` command take it, and ``--variant`` changes
    any field by name. The flag is the field's name with dashes
    (``early_stop`` is ``--early-stop``) unless ``flag`` names another; the help
    is the first sentence of the field's description unless ``help`` gives
    one; the type, bounds and choices are the field's, checked by
    :class:`MoAConfig` before any model server starts. A flag field
    (:data:`~langgraph_moa.strict_types.Flag`) is a switch that turns it on.

    Example::

        keep_top: Annotated[Whole | None, CommandLine()] = Field(default=None, ge=1, description="...")
    """

    flag: str | None = None
    short: str | None = None
    help: str | None = None


class ModelSpec(BaseModel):
    """One model, with optional per-model overrides of the run's settings.

    A bare string is accepted wherever a ``ModelSpec`` is expected:
    ``"together:Qwen/Qwen2.5-72B-Instruct-Turbo"`` equals
    ``ModelSpec(model="together:Qwen/Qwen2.5-72B-Instruct-Turbo")``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(description='"provider:model", e.g. "together:Qwen/Qwen2.5-72B-Instruct-Turbo".')
    temperature: Number | None = Field(default=None, ge=0, le=2, description="Overrides MoAConfig.temperature.")
    max_tokens: Whole | None = Field(default=None, ge=1, description="Overrides MoAConfig.max_tokens.")
    base_url: str | None = Field(
        default=None, description="OpenAI-compatible endpoint for this model (e.g. http://127.0.0.1:8080/v1)."
    )
    seed: Whole | None = Field(
        default=None,
        ge=0,
        le=2**63 - 1,
        strict=True,
        description="Base sampling seed of this model's calls, overriding MoAConfig.seed: each call's seed is "
        "derived from it and the call's layer and slot (see langgraph_moa.seeds).",
    )
    requests_per_second: Number | None = Field(
        default=None, gt=0, description="Client-side rate limit shared by every call to this model."
    )
    api_key_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Name of the environment variable holding this model's API key (never the key itself). "
        "Needed for a base_url server that checks keys; otherwise no key is sent to a base_url server.",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        return {"model": data} if isinstance(data, str) else data

    @field_validator("model")
    @classmethod
    def _provider_prefix(cls, value: str) -> str:
        provider, sep, name = value.partition(":")
        if not sep or not provider.strip() or not name.strip() or "/" in provider:
            raise ValueError(
                f"model {value!r} must be written 'provider:model', e.g. "
                f"'together:{value}' or 'openai:{value}' (with a base_url for a local server)"
            )
        return value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"base_url {value!r} must start with http:// or https://")
        if value is not None and "@" in urlsplit(value).netloc:
            # the configuration is stored in the run's state (and so its checkpoints)
            raise ValueError(
                "base_url must not carry credentials (user:password@); name the key's variable in api_key_env"
            )
        return value

    @property
    def provider(self) -> str:
        """The provider prefix, e.g. ``"together"``."""
        return self.model.partition(":")[0]

    @property
    def name(self) -> str:
        """The model name as the provider knows it."""
        return self.model.partition(":")[2]


PROVISIONAL_HELP = (
    "With 3+ layers, show an early answer from the previous layer's proposals on stderr, marked provisional, "
    "while the last proposer layer runs."
)
"""``--provisional``'s help: the command line shows the provisional answer, the field streams it."""

_DEFAULT_PROPOSERS = (
    "together:meta-llama/Llama-3.3-70B-Instruct-Turbo",
    "together:Qwen/Qwen2.5-72B-Instruct-Turbo",
    "together:Qwen/Qwen2.5-Coder-32B-Instruct",
    "together:microsoft/WizardLM-2-8x22B",
)


class MoAConfig(BaseModel):
    """Everything that shapes one MoA run; the graph's runtime context.

    The defaults are Together AI's current MoA example (the ``moa-current``
    preset): four open proposers and a Qwen2.5-72B aggregator in 2 layers.

    Attributes are validated together when the config is built; a config that
    cannot work (too few proposers for ``min_proposals``, per-layer lists that do
    not match ``layers``, a model without a provider) raises
    ``pydantic.ValidationError`` naming the field.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    layers: Annotated[Whole, CommandLine(short="-l")] = Field(
        default=2,
        ge=1,
        le=16,
        description="Layers counting the final aggregator (MoA-Lite = 2, MoA = 3; 1 = aggregator alone).",
    )
    proposers: list[ModelSpec] = Field(
        default_factory=lambda: [ModelSpec(model=m) for m in _DEFAULT_PROPOSERS],
        description="Proposers of every proposer layer, in reference order. The same model may appear twice.",
    )
    layer_proposers: list[list[ModelSpec]] | None = Field(
        default=None,
        description="Per-layer proposer lists (one list per proposer layer, i.e. layers - 1); overrides proposers.",
    )
    aggregator: ModelSpec = Field(
        default_factory=lambda: ModelSpec(model="together:Qwen/Qwen2.5-72B-Instruct-Turbo"),
        description="The model that writes the final answer.",
    )
    temperature: Annotated[Number, CommandLine(short="-t")] = Field(
        default=0.7, ge=0, le=2, description="Sampling temperature of every call."
    )
    max_tokens: Annotated[Whole, CommandLine()] = Field(
        default=512, ge=1, description="Completion token limit of every call."
    )
    seed: Annotated[Whole | None, CommandLine()] = Field(
        default=None,
        ge=0,
        le=2**63 - 1,
        strict=True,
        description="Base sampling seed for reproducible runs: each call's seed is derived from it and the "
        "call's layer and slot. None (the default): every run draws a fresh one (see langgraph_moa.seeds).",
    )
    min_proposals: Annotated[Whole, CommandLine()] = Field(
        default=1, ge=1, description="Successful proposals a layer needs to go on; fewer stops the run."
    )
    timeout: Annotated[Number, CommandLine()] = Field(
        default=120.0, gt=0, description="Seconds one model call may take, retries included."
    )
    straggler_timeout: Annotated[Number | None, CommandLine()] = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="Once a proposer layer has min_proposals successful proposals, the proposers still running "
        "get at most this many more seconds; then they are cancelled (their requests closed) and recorded as "
        "failures with error_type 'StragglerTimeout'. None (the default) waits for every proposer.",
    )
    max_retries: Annotated[Whole, CommandLine()] = Field(
        default=2,
        ge=0,
        le=10,
        description="Retries of rate limits (honouring Retry-After), 5xx and connection errors per call.",
    )
    aggregation_prompt: str = Field(
        default=AGGREGATE_AND_SYNTHESIZE,
        min_length=1,
        description="Text that introduces the numbered references in the system message.",
    )
    base_url: str | None = Field(
        default=None,
        description="Endpoint for 'openai:' models without their own base_url (else OPENAI_BASE_URL).",
    )
    prices: dict[str, ModelPrice] = Field(
        default_factory=dict, description="Extra or overriding prices per 'provider:model', $ per 1M tokens."
    )
    provisional_answers: Annotated[Flag, CommandLine(flag="--provisional", help=PROVISIONAL_HELP)] = Field(
        default=False,
        description="With 3 or more layers: while each later proposer layer runs, the aggregator writes a "
        "provisional answer from the previous layer's proposals, streamed on the custom stream "
        "(provisional_token events) and kept in state as provisional_answers with the models it was built "
        "from. Shows an answer after the first layer; costs one more aggregator call per extra layer.",
    )
    staircase: Annotated[
        Flag,
        CommandLine(
            help="Staircase streaming: the aggregator starts once every proposer of the last layer has streamed "
            "a first chunk, and writes the answer in pieces (docs/latency.md)."
        ),
    ] = Field(
        default=False,
        description="Staircase streaming (Wang et al., arXiv 2510.05059): the last proposer layer's proposers "
        "stream, and the aggregator starts once each has streamed a first chunk, writing the final answer in "
        "pieces, each from the proposal prefixes seen so far and its own answer so far; once every proposal is "
        "complete it writes the rest from the full proposals. Cuts the answer's time to first token; costs the "
        "prompt tokens of re-reading the proposals per piece. Async runs only (ainvoke/astream).",
    )
    staircase_piece_tokens: Whole = Field(
        default=40,
        ge=1,
        le=4096,
        description="Tokens of the first piece of a staircase answer (its max_tokens, which the server must "
        "honour); later pieces follow staircase_growth.",
    )
    staircase_growth: Number = Field(
        default=1.0,
        ge=1.0,
        le=8.0,
        allow_inf_nan=False,
        description="Each next piece of a staircase answer is this many times longer than the one before "
        "(1: equal pieces; 2: doubling). The piece written from complete proposals has no size of its own.",
    )
    staircase_first_chunk: Whole = Field(
        default=1,
        ge=1,
        le=4096,
        description="Streamed chunks (about one token each) every running proposer must have written before "
        "the first piece of a staircase answer is asked for.",
    )
    staircase_continuation: Annotated[Literal["prompt", "prefill", "vllm"], CommandLine()] = Field(
        default="prompt",
        description="How a piece continues the answer so far: 'prompt' (any server: the answer so far as an "
        "assistant turn, then a user turn asking to continue it), 'prefill' (the answer so far as a trailing "
        "assistant turn that the server continues: llama.cpp's llama-server, Anthropic), 'vllm' (prefill with "
        "vLLM's continue_final_message).",
    )
    review: Flag = Field(
        default=False,
        description="Pause before the final aggregation (a LangGraph interrupt) so a person or a parent graph "
        "can inspect, edit or drop the last layer's proposals; resume with True (keep) or "
        "{'proposals': [...]}. Needs a checkpointer.",
    )
    aggregator_tools: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Tools the aggregator may call, as OpenAI tool schemas (ChatMoA.bind_tools fills this). "
        "A tool call comes back in the final AIMessage; proposers see tool results as text.",
    )
    aggregator_tool_choice: str | dict[str, Any] | None = Field(
        default=None, description="tool_choice for the aggregator's tools: 'auto', 'any', 'none' or a tool name."
    )
    aggregator_parallel_tool_calls: bool | None = Field(
        default=None,
        description="Whether the aggregator may call several tools in one answer (OpenAI's parallel_tool_calls); "
        "None leaves it to the provider.",
    )
    aggregator_response_format: dict[str, Any] | None = Field(
        default=None,
        description="Structured output of the final answer, in OpenAI's response_format shape: "
        "{'type': 'json_object'} or {'type': 'json_schema', 'json_schema': {'name', 'schema', 'strict'}}. "
        "The aggregator writes the JSON (its provider's structured output, else a forced tool call) and the "
        "answer is checked against the schema; proposers are shown the schema as text.",
    )
    # Cost-saving strategies (docs/strategies.md); each is off by default.
    early_stop: Annotated[Number | None, CommandLine()] = Field(
        default=None,
        ge=0,
        le=1,
        description="Skip the remaining proposer layers once a layer's proposals agree at least this much "
        "(0-1: share of equal normalised short answers, else mean pairwise text similarity).",
    )
    keep_top: Annotated[Whole | None, CommandLine()] = Field(
        default=None,
        ge=1,
        description="Keep only the best k proposals of each layer as references (ranked by `ranker`, or by a "
        "cheap rule that drops near-duplicates and outliers first). At least min_proposals.",
    )
    ranker: ModelSpec | None = Field(
        default=None,
        description="Judge model ('provider:model') that ranks a layer's proposals for keep_top; without one, "
        "the non-LLM rule ranks them. An unparseable ranking falls back to the rule (recorded).",
    )
    max_cost_usd: Annotated[Number | None, CommandLine(flag="--max-cost")] = Field(
        default=None,
        ge=0,
        description="Budget per run in US dollars: before each proposer layer, if its estimated cost plus the "
        "aggregator's would exceed it, go straight to aggregation. Unpriced models count as free.",
    )
    aggregation_window: Annotated[Whole | None, CommandLine()] = Field(
        default=None,
        ge=2,
        description="Self-MoA-Seq: when the aggregator has more references than this, it reads them in passes "
        "of at most this many, each pass carrying the previous pass's synthesis forward as reference 1 "
        "(at least 2). Only the last pass streams.",
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return ModelSpec._http_url(value)

    @field_validator("straggler_timeout", mode="before")
    @classmethod
    def _not_a_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):  # pydantic would read True as 1.0 seconds
            raise ValueError("straggler_timeout must be a number of seconds or None, not a boolean")
        return value

    @model_validator(mode="after")
    def _check_layers(self) -> MoAConfig:
        n_proposer_layers = self.layers - 1
        if self.keep_top is not None and self.keep_top < self.min_proposals:
            raise ValueError(
                f"keep_top={self.keep_top} is below min_proposals={self.min_proposals}: "
                "keep at least min_proposals proposals, or lower min_proposals"
            )
        if self.ranker is not None and self.keep_top is None:
            raise ValueError("ranker ranks proposals for keep_top: set keep_top too, or leave ranker unset")
        if self.staircase:
            self._check_staircase()
        if self.review and n_proposer_layers == 0:
            raise ValueError("review=True needs a proposer layer to review: set layers to 2 or more")
        if self.layer_proposers is not None:
            if len(self.layer_proposers) != n_proposer_layers:
                raise ValueError(
                    f"layer_proposers has {len(self.layer_proposers)} lists but layers={self.layers} "
                    f"needs {n_proposer_layers} (one per proposer layer; the aggregator is the last layer)"
                )
        for layer in range(1, n_proposer_layers + 1):
            count = len(self.proposers_for(layer))
            if count == 0:
                field = "layer_proposers" if self.layer_proposers is not None else "proposers"
                raise ValueError(f"{field}: proposer layer {layer} has no proposers; add at least one or lower layers")
            if count < self.min_proposals:
                raise ValueError(
                    f"min_proposals={self.min_proposals} but proposer layer {layer} has only {count} "
                    "proposers; lower min_proposals or add proposers"
                )
        return self

    def _check_staircase(self) -> None:
        if self.layers < 2:
            raise ValueError("staircase=True streams the answer while proposers write: set layers to 2 or more")
        clashes = {
            "review": (self.review, "a review pauses on complete proposals before the aggregator writes"),
            "keep_top": (self.keep_top is not None, "keep_top ranks complete proposals"),
            "aggregation_window": (self.aggregation_window is not None, "the window reads complete proposals"),
            "aggregator_tools": (bool(self.aggregator_tools), "a piece of the answer cannot be a tool call"),
            "provisional_answers": (self.provisional_answers, "the staircase answer already starts early"),
        }
        for name, (on, why) in clashes.items():
            if on:
                raise ValueError(f"staircase=True cannot be combined with {name} ({why}): turn one of them off")

    def proposers_for(self, layer: int) -> list[ModelSpec]:
        """The proposers of proposer layer ``layer`` (1-based, below ``layers``)."""
        if self.layer_proposers is not None:
            return self.layer_proposers[layer - 1]
        return self.proposers

    def all_models(self) -> list[ModelSpec]:
        """Every model the run may call, aggregator last, without repeats."""
        seen: dict[str, ModelSpec] = {}
        for layer in range(1, self.layers):
            for spec in self.proposers_for(layer):
                seen.setdefault(spec.model_dump_json(), spec)
        if self.ranker is not None and self.layers > 1:
            seen.setdefault(self.ranker.model_dump_json(), self.ranker)
        seen.setdefault(self.aggregator.model_dump_json(), self.aggregator)
        return list(seen.values())


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem: ``field: message``."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "config"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {msg}")
    return "invalid MoA configuration: " + "; ".join(lines)
