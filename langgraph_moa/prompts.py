"""Prompts of the Mixture-of-Agents method and how references are injected.

The Aggregate-and-Synthesize prompt is the wording of the MoA paper (Wang et al.,
"Mixture-of-Agents Enhances Large Language Model Capabilities", arXiv 2406.04692,
Table 1), as used by Together AI's reference implementation ``togethercomputer/MoA``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage, ToolMessage

AGGREGATE_AND_SYNTHESIZE = (
    "You have been provided with a set of responses from various open-source models to the "
    "latest user query. Your task is to synthesize these responses into a single, high-quality "
    "response. It is crucial to critically evaluate the information provided in these "
    "responses, recognizing that some of it may be biased or incorrect. Your response should "
    "not simply replicate the given answers but should offer a refined, accurate, and "
    "comprehensive reply to the instruction. Ensure your response is well-structured, "
    "coherent, and adheres to the highest standards of accuracy and reliability.\n"
    "\n"
    "Responses from models:"
)
"""The Aggregate-and-Synthesize prompt (MoA paper, Table 1)."""


def format_references(prompt: str, references: Sequence[str]) -> str:
    """Return ``prompt`` followed by the references, numbered ``1.``, ``2.``, ... in order."""
    return prompt + "".join(f"\n{i}. {text}" for i, text in enumerate(references, start=1))


def inject_references(
    messages: Sequence[AnyMessage],
    references: Sequence[str],
    prompt: str = AGGREGATE_AND_SYNTHESIZE,
) -> list[AnyMessage]:
    """Put ``references`` into the system message of ``messages``, as the MoA method does.

    The numbered references go after a blank line at the end of an existing leading
    system message, or into a new system message placed first. User and assistant
    turns are returned unchanged. With no references the messages are returned as
    they are (a first-layer proposer sees only the conversation).

    Args:
        messages: The conversation, oldest first.
        references: Answers of the previous layer, in proposer order. Failed
            proposers must already be left out: every entry is shown to the model.
        prompt: The text that introduces the references.

    Returns:
        A new list; the input messages are not modified.
    """
    out = list(messages)
    if not references:
        return out
    block = format_references(prompt, references)
    if out and isinstance(out[0], SystemMessage):
        first = out[0]
        existing = first.content if isinstance(first.content, str) else first.text
        out[0] = SystemMessage(content=f"{existing}\n\n{block}", id=first.id)
    else:
        out.insert(0, SystemMessage(content=block))
    return out


def tool_turns_as_text(
    messages: Sequence[AnyMessage],
    *,
    tools: Sequence[Mapping[str, Any]] = (),
    response_format: Mapping[str, Any] | None = None,
) -> list[AnyMessage]:
    """Rewrite the tool-calling turns of ``messages`` as plain text, for proposers.

    When MoA drives a tool-calling loop (its aggregator has tools bound), the
    conversation holds assistant tool calls and ``ToolMessage`` results. Proposers
    have no tools bound, and many servers reject tool turns without tool
    definitions, so they see the same evidence as text: an assistant turn lists
    the calls it made, and each tool result becomes a user turn naming the tool.
    Other messages are returned unchanged.

    ``tools`` (the aggregator's) and ``response_format`` are described in the
    leading system message (added when there is none), so proposers advise on
    which tool to call, or write their answer in the asked format: see
    :func:`answer_format_note`.
    """
    out: list[AnyMessage] = []
    note = answer_format_note(tools, response_format)
    if note:
        first = messages[0] if messages else None
        if isinstance(first, SystemMessage):
            existing = first.content if isinstance(first.content, str) else first.text
            messages = [SystemMessage(content=f"{existing}\n\n{note}", id=first.id), *messages[1:]]
        else:
            messages = [SystemMessage(content=note), *messages]
    for message in messages:
        if isinstance(message, AIMessage) and (message.tool_calls or message.invalid_tool_calls):
            calls = "; ".join(
                [f"{c['name']}({json.dumps(c['args'], sort_keys=True)})" for c in message.tool_calls]
                + [f"{c.get('name') or 'tool'}({c.get('args') or ''})" for c in message.invalid_tool_calls]
            )
            text = f"{message.text}\n" if message.text.strip() else ""
            out.append(AIMessage(content=f"{text}[called tools: {calls}]", id=message.id))
        elif isinstance(message, ToolMessage):
            name = message.name or "tool"
            out.append(HumanMessage(content=f"[result of tool {name}]\n{message.text}", id=message.id))
        else:
            out.append(message)
    return out


def answer_format_note(
    tools: Sequence[Mapping[str, Any]] = (), response_format: Mapping[str, Any] | None = None
) -> str:
    """What proposers are told of the aggregator's tools and the answer's JSON schema ("" for neither).

    Proposers call no tools: they say which tool the answer should call and
    with what arguments, or answer when the tool results suffice.
    """
    parts = []
    if tools:
        lines = []
        for tool in tools:
            function = tool.get("function") or tool
            parameters = json.dumps(function.get("parameters") or {}, sort_keys=True)
            description = f": {function['description']}" if function.get("description") else ""
            lines.append(f"- {function.get('name')} {parameters}{description}")
        parts.append(
            "The assistant writing the final answer can call these tools (you cannot): say which one it "
            "should call and with what arguments, or answer if the tool results above suffice.\n" + "\n".join(lines)
        )
    if response_format and response_format.get("type") in ("json_object", "json_schema"):
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if response_format.get("type") == "json_schema" else None
        shape = f" valid against this JSON schema: {json.dumps(schema, sort_keys=True)}" if schema else " object"
        parts.append(f"The final answer must be a JSON{shape}")
    return "\n\n".join(parts)
