"""Renders conversations with a request's tools as vLLM passes them to a chat
template, for chat's tests.

Run from chat/testdata with Python's Jinja2 (3.1.6 here):
    python3 tools_render.py > tools_cases.jsonl

The environment is hf_render.py's (Hugging Face's apply_chat_template). Each line has
the tools in specd's form (parameters as JSON text, "" when unset) and the rendered
text; the template gets them as vLLM gives them (each request tool's model_dump():
type, and function's name, description and parameters, None when unset). Templates:
Qwen2.5-Instruct's (../../../shared/vocab/chat) and tool_templates/llama31.jinja,
written for this test in the style of Llama 3.1's.
"""

import json
import pathlib
import sys

import jinja2

from hf_render import environment
from tool_render import for_template

TEMPLATES = {
    "qwen2.5": pathlib.Path("../../../shared/vocab/chat/qwen2.5-chat-template.jinja"),
    "llama31": pathlib.Path("tool_templates/llama31.jinja"),
}

WEATHER = {"name": "get_weather", "description": "The weather in a city now.",
           "parameters": "{\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"e.g. Paris, « Zürich »\"}, \"unit\": {\"type\": \"string\", \"enum\": [\"celsius\", \"fahrenheit\"]}, \"days\": {\"type\": \"integer\", \"minimum\": 1.5}}, \"required\": [\"city\"]}"}
BARE = {"name": "now", "description": "", "parameters": ""}

CASES = [
    ("one tool", [WEATHER], [{"role": "user", "content": "How warm is Paris?"}]),
    ("two tools and a system turn", [WEATHER, BARE], [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Time and weather in Rome?"}]),
    ("after a call", [WEATHER], [
        {"role": "user", "content": "How warm is Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "22"},
    ]),
]


def template_tools(tools):
    out = []
    for t in tools:
        fn = {"name": t["name"], "description": t["description"] or None,
              "parameters": json.loads(t["parameters"]) if t["parameters"] else None}
        out.append({"type": "function", "function": fn})
    return out


def main():
    env = environment()
    for name, path in TEMPLATES.items():
        template = env.from_string(path.read_text())
        for conv, tools, messages in CASES:
            case = {"template": name, "conversation": conv, "tools": tools, "messages": messages, "add_generation_prompt": True}
            case["text"] = template.render(messages=for_template(messages), tools=template_tools(tools), documents=None,
                                           add_generation_prompt=True, bos_token="<s>", eos_token="</s>")
            sys.stdout.write(json.dumps(case, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
