"""Reference injection follows the MoA method exactly."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from langgraph_moa import AGGREGATE_AND_SYNTHESIZE, inject_references


def test_prompt_is_the_papers_wording() -> None:
    assert AGGREGATE_AND_SYNTHESIZE.startswith("You have been provided with a set of responses from various")
    assert AGGREGATE_AND_SYNTHESIZE.endswith("standards of accuracy and reliability.\n\nResponses from models:")


def test_references_go_into_a_new_system_message_numbered_in_order() -> None:
    messages = [HumanMessage("q1"), AIMessage("a1"), HumanMessage("q2")]
    out = inject_references(messages, ["first", "second"])
    assert isinstance(out[0], SystemMessage)
    assert out[0].content == AGGREGATE_AND_SYNTHESIZE + "\n1. first\n2. second"
    assert out[1:] == messages
    assert len(messages) == 3  # the input is not modified


def test_references_are_appended_to_an_existing_system_message() -> None:
    messages = [SystemMessage("Be terse."), HumanMessage("q")]
    out = inject_references(messages, ["r1"], prompt="Refs:")
    assert out[0].content == "Be terse.\n\nRefs:\n1. r1"
    assert messages[0].content == "Be terse."
    assert out[1] is messages[1]


def test_no_references_leaves_messages_alone() -> None:
    messages = [HumanMessage("q")]
    assert inject_references(messages, []) == messages
