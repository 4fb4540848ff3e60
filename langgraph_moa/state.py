"""The typed state of the MoA graph.

Everything a run produces lives here, so a checkpointer stores it and Studio shows
it: the conversation (``messages``, merged with ``add_messages`` so the graph
composes with ``MessagesState`` graphs), every layer's proposals keyed by layer and
slot, the recorded failures, and the token usage of every call.

``proposals``, ``failures`` and ``usage`` describe the current turn: the graph
resets them when a new turn starts, so references of one turn never reach the next.

One reader serves the nodes and the routing alike: :func:`references_of` (a
layer's successful answers). The usage records are summed in :mod:`langgraph_moa.usage`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict  # pydantic (Studio's schemas) needs this one before 3.12


class Proposal(TypedDict):
    """One proposer's answer: which layer and slot produced it, and the text.

    ``seed`` is the sampling seed the call was made with (``None`` when the model
    takes none: a ready model, a provider without seeds, or a reviewer's text),
    so the sample can be drawn again.
    """

    layer: int
    slot: int
    model: str
    content: str
    seed: NotRequired[int | None]


class Failure(TypedDict):
    """A proposer call that failed and was left out of the references."""

    layer: int
    slot: int
    model: str
    error_type: str
    message: str


class UsageRecord(TypedDict):
    """Token usage of one model call, as the provider reported it.

    ``reported`` is False when the provider sent no usage (llama.cpp's server,
    for one, sends none on streamed calls); the token counts are then 0.
    ``turn_id`` names the turn that made the call: a record replayed from the
    proposal cache carries an earlier turn's id (the call cost nothing now).
    """

    layer: int
    slot: int
    model: str
    role: Literal["proposer", "aggregator", "provisional", "ranker"]
    input_tokens: int
    output_tokens: int
    reported: bool
    turn_id: NotRequired[str]


class Decision(TypedDict):
    """What a cost-saving option did (see ``docs/strategies.md``), one record per action.

    ``option`` is ``"early_stop"``, ``"keep_top"``, ``"max_cost_usd"`` or
    ``"aggregation_window"``; ``layer``
    the proposer layer it acted after (0: before the first); ``action`` what it
    did (``"stopped"``, ``"continued"``, ``"kept"``, ``"skipped_layers"``);
    ``reason`` a sentence; ``detail`` the numbers behind it (agreement, kept
    slots, cost estimates).
    """

    option: str
    layer: int
    action: str
    reason: str
    detail: dict[str, Any]


class ProvisionalAnswer(TypedDict):
    """An answer written early from an earlier layer's proposals (``MoAConfig.provisional_answers``).

    ``layer`` is the proposer layer whose proposals it synthesises; ``built_from``
    names their models, in reference order. Never the run's answer.
    """

    layer: int
    slot: int
    model: str
    content: str
    built_from: list[str]


class ProposalPrefix(TypedDict):
    """How much of one proposal a piece of a staircase answer saw (``MoAConfig.staircase``).

    ``chars`` and ``chunks`` (streamed deltas, about one token each) of the
    proposal's text at the moment the piece was asked for; ``complete`` when
    the proposal had ended by then.
    """

    slot: int
    model: str
    chars: int
    chunks: int
    complete: bool


class StaircasePiece(TypedDict):
    """One piece of a staircase answer and what it was built from (``MoAConfig.staircase``).

    ``piece`` counts from 1; ``answer_chars`` is the length of the answer
    written before it; ``built_from`` lists the proposal prefixes in its prompt
    (failed proposers are left out); ``final`` when every proposal was complete
    (the piece then writes the rest of the answer); ``finish_reason`` as the
    provider reported it (``"length"``: cut at the piece's size).
    """

    piece: int
    text: str
    answer_chars: int
    built_from: list[ProposalPrefix]
    final: bool
    finish_reason: str | None
    input_tokens: int
    output_tokens: int


class ProposerStream(TypedDict):
    """One proposer of a staircase layer: how its streamed call ended.

    ``status``: ``"complete"`` (its proposal is in ``proposals``), ``"failed"``
    (in ``failures``), or ``"cancelled"`` (the answer was finished before the
    proposal; ``text`` keeps what it had streamed). ``text`` is empty for a
    complete proposal (see ``proposals``).
    """

    slot: int
    model: str
    status: Literal["complete", "failed", "cancelled"]
    chars: int
    chunks: int
    text: str


class StaircaseRecord(TypedDict):
    """What a staircase answer was built from: its pieces and its proposers' streams.

    ``reread_input_tokens``: prompt tokens of every piece but the last, the
    extra cost of re-reading the proposals (counted in ``usage`` and priced
    like any call).
    """

    layer: int
    continuation: str
    pieces: list[StaircasePiece]
    proposers: list[ProposerStream]
    reread_input_tokens: int


def _merge_by_slot(left: list[Any] | None, right: list[Any] | None) -> list[Any]:
    """Merge records keyed by ``(layer, slot)``; later writes win; sorted by key.

    Parallel proposers write in any order; sorting by ``(layer, slot)`` keeps the
    references in proposer order, and keying by slot means the same model used
    twice in one layer never collides.
    """
    merged = {(r["layer"], r["slot"]): r for r in (left or [])}
    merged.update({(r["layer"], r["slot"]): r for r in (right or [])})
    return [merged[k] for k in sorted(merged)]


def _append(left: list[Any] | None, right: list[Any] | None) -> list[Any]:
    return [*(left or []), *(right or [])]


class InputState(TypedDict):
    """What a caller passes in: the conversation."""

    messages: Annotated[list[AnyMessage], add_messages]


class MoAOutput(InputState, total=False):
    """What a MoA run returns (``invoke``, ``ainvoke``): its state without ``moa_config``.

    The graph's output schema. ``stream_mode="values"`` streams every state key
    unless ``output_keys`` names these (LangServe's ``/moa/stream`` does), and
    ``astream_events``/``astream_log`` show each node's update, ``prepare``'s
    ``moa_config`` included: whoever runs the graph sees its configuration.

    Attributes:
        messages: The conversation; the final answer is appended as an AIMessage.
        layer: The proposer layer being run (1-based); equals the aggregator's
            layer number while the final answer is written.
        config_fingerprint: A hash of the turn's MoAConfig, so a resumed run
            that is given another configuration stops instead of mixing two.
        proposals: Successful proposals of this turn, sorted by (layer, slot).
        failures: Failed proposer calls of this turn, sorted by (layer, slot).
        usage: One record per model call of this turn, in completion order.
        provisional_answers: With ``MoAConfig.provisional_answers``: the answers
            written early from each proposer layer but the last, by layer.
        usage_summary: ``usage`` summed per layer, per model and in total, with
            a cost estimate; written with the final answer.
        turn_id: A fresh id per turn (what tells a cached call from a new one).
        run_seed: The turn's base sampling seed: ``MoAConfig.seed``, else drawn
            fresh; every call's seed derives from it (see :mod:`langgraph_moa.seeds`).
        stopped_after: The proposer layer after which the remaining proposer
            layers were skipped (early stop or budget), else None.
        dropped: Proposals that ``keep_top`` left out of the references.
        decisions: What the cost-saving options did this turn, in order.
        staircase: With ``MoAConfig.staircase``: the answer's pieces and the
            proposal prefixes each was built from (see :mod:`langgraph_moa.staircase`).
    """

    layer: int
    config_fingerprint: str
    turn_id: str
    run_seed: int
    stopped_after: int | None
    dropped: Annotated[list[Proposal], _merge_by_slot]
    decisions: Annotated[list[Decision], _append]
    proposals: Annotated[list[Proposal], _merge_by_slot]
    failures: Annotated[list[Failure], _merge_by_slot]
    usage: Annotated[list[UsageRecord], _append]
    provisional_answers: Annotated[list[ProvisionalAnswer], _merge_by_slot]
    usage_summary: UsageSummary
    staircase: StaircaseRecord | None


class MoAState(MoAOutput, total=False):
    """The full state of a MoA run: :class:`MoAOutput` and the turn's configuration.

    Attributes:
        moa_config: The turn's MoAConfig as plain data, stored by ``prepare``:
            every later step of the turn (a resumed run, the routing that
            ``update_state`` runs) reads it from here, so a run resumed without
            a configuration continues with the turn's. It holds no secret (keys
            are named by their variables), but it names the endpoints the
            operator's models run on, so it stays in the checkpoints
            (``get_state``, Studio) and out of what a run returns to its caller.
    """

    moa_config: dict[str, Any]


class ProposerInput(TypedDict):
    """What the fan-out sends to one proposer task (LangGraph ``Send`` payload)."""

    layer: int
    slot: int
    messages: list[AnyMessage]
    references: list[str]
    config_fingerprint: str
    moa_config: NotRequired[dict[str, Any]]
    settings: NotRequired[dict[str, Any]]
    turn_id: NotRequired[str]


class ProvisionalInput(TypedDict):
    """What the fan-out sends to the ``provisional`` task: an earlier layer's proposals."""

    layer: int
    messages: list[AnyMessage]
    references: list[str]
    built_from: list[str]
    config_fingerprint: str
    moa_config: NotRequired[dict[str, Any]]


class UsageSummary(TypedDict):
    """Token usage of a whole turn, summed, with a cost estimate in US dollars."""

    total: dict[str, int]
    by_layer: dict[str, dict[str, int]]
    by_model: dict[str, dict[str, int]]
    cost_usd: float
    unpriced_models: list[str]
    unreported_calls: int
    cached_calls: int


def references_of(state: MoAState, layer: int) -> list[str]:
    """The successful answers of proposer ``layer``, in slot order (empty for layer 0)."""
    return [p["content"] for p in state.get("proposals", []) if p["layer"] == layer]
