"""Renders conversations with tool calls as vLLM's chat completions render them, for
chat's tests.

Run from chat/testdata with Python's Jinja2 (3.1.6 here):
    python3 tool_render.py > tool_cases.jsonl

The environment is hf_render.py's (Hugging Face's apply_chat_template). The messages
are kept in OpenAI's wire form (a call's arguments as JSON text) in the output; before
rendering, each call's arguments are parsed into a Python value, as vLLM does for
templates (chat_utils' _postprocess_messages), and a message has name and
tool_call_id keys only when it sets them. Content that OpenAI sends as null is "" here,
as specd passes it. Templates: Qwen2.5-Instruct's (../../../shared/vocab/chat) and
tool_templates/pairs.jinja, written for this test.
"""

import copy
import json
import pathlib
import sys

from hf_render import environment, render_case

TEMPLATES = {
    "qwen2.5": pathlib.Path("../../../shared/vocab/chat/qwen2.5-chat-template.jinja"),
    "pairs": pathlib.Path("tool_templates/pairs.jinja"),
}

CONVERSATIONS = {
    "weather": [
        {"role": "system", "content": "You check the weather."},
        {"role": "user", "content": "How warm is Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"unit\": \"celsius\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "22"},
        {"role": "assistant", "content": "It is 22 °C in Paris."},
        {"role": "user", "content": "And Rome?"},
    ],
    "two calls": [
        {"role": "user", "content": "Add, then look up."},
        {"role": "assistant", "content": "Let me see.", "tool_calls": [
            {"id": "a1", "type": "function", "function": {"name": "add", "arguments": "{\"a\":1,\"b\":[2.5,true,null,-3e2],\"c\":{\"d\":\"é\\\"x\",\"n\":{}}}"}},
            {"id": "b2", "type": "function", "function": {"name": "lookup", "arguments": "\"just a string\""}}]},
        {"role": "tool", "tool_call_id": "a1", "content": "{\"sum\": 3}"},
        {"role": "tool", "tool_call_id": "b2", "name": "lookup", "content": "found"},
    ],
    "no call id": [
        {"role": "user", "content": "Hi"},
        {"role": "tool", "name": "lookup", "content": "orphan"},
    ],
}


def for_template(messages):
    out = copy.deepcopy(messages)
    for m in out:
        for call in m.get("tool_calls", []):
            call["function"]["arguments"] = json.loads(call["function"]["arguments"])
    return out


def main():
    env = environment()
    for name, path in TEMPLATES.items():
        template = env.from_string(path.read_text())
        for conv, messages in CONVERSATIONS.items():
            for add in (True, False):
                sys.stdout.write(render_case(template, name, conv, messages, add, for_template(messages)))


if __name__ == "__main__":
    main()
