#!/usr/bin/env python3
"""Render the chat templates of tests/reference/templates/ with jinja2, as Hugging Face
transformers' apply_chat_template does, into tests/reference/fixtures/chat_templates.json.

Run it through make_template_fixtures.sh, which pins jinja2. Only jinja2 is needed: no model,
no llama.cpp.

Each template is rendered in hf_chat.hf_style_env() (the environment make_fixtures.py uses for
the templates inside GGUF files) with the variables transformers passes: messages, tools (None
unless the case has some), documents=None, add_generation_prompt, the model's bos_token and
eos_token, and the case's extra variables (apply_chat_template's **kwargs: enable_thinking,
date_string, builtin_tools, …). strftime_now formats the fixed time NOW, so the renderings do
not depend on the day they were made.

Cases per template: hf_chat.CHAT_CASES; hf_chat.TOOL_CHAT_CASES when the template reads
`tools`; NO_MESSAGES; and the family's own cases (FAMILY_CASES) for the features its template
has. A case the template rejects records the error instead of a rendering: kind "raised" (the
template called raise_exception; message is its text) or the jinja2 exception's class name
(UndefinedError, TypeError, …).

Also recorded per template: end_of_turn_text, what the template writes after an assistant
message's content, found as Tern's ChatTemplate::end_of_turn_text finds it (render a user
message and an assistant message holding MARK; the text after MARK).
"""

from __future__ import annotations

import argparse
import calendar
import datetime
import hashlib
import json
import platform
import sys
from pathlib import Path

import jinja2

from hf_chat import CHAT_CASES, TIME_TOOL, TOOL_CHAT_CASES, WEATHER_TOOL, hf_style_env

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
DEFAULT_OUT = HERE / "fixtures" / "chat_templates.json"

# What strftime_now formats: a fixed, naive time (transformers formats the local time).
NOW = datetime.datetime(2026, 3, 5, 14, 7, 9)
NOW_UNIX = calendar.timegm(NOW.timetuple())

# Private-use characters no template adds on its own (as in Tern's end_of_turn_text).
MARK = "\uf8ff\uf8fe"
MARK_USER = "\uf8fd"

# Assistant turns calling one tool (Llama 3.x takes one call per message).
ONE_CALL = [
    {"role": "user", "content": "Weather in Oslo?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"function": {"arguments": {"city": "Oslo"}, "name": "get_weather"}, "type": "function"}]},
    {"role": "tool", "content": "{\"temperature\": -3}"},
]

# A tool definition with what json.dumps prints in its own ways: empty containers (with and
# without indent), floats in exponent form, None/True/False, escapes, non-ASCII kept as is.
EDGE_TOOL = {
    "function": {
        "description": "Edge: \"quotes\", back\\slash, tab\t, sep\u2028, ctrl\x01\x7f, é 日本 🎉, </script>",
        "name": "edge",
        "parameters": {
            "properties": {},
            "required": [],
            "type": "object",
            "x-limits": {"big": 1e16, "flag": False, "half": 0.5, "neg": -3, "nested": [[], {}, [1, [2, []]]],
                         "none": None, "small": 1e-07, "tiny": 5e-324, "true": True},
        },
    },
    "type": "function",
}

# Cases: (label, messages, add_generation_prompt, tools, extra variables).
NO_MESSAGES = [("no_messages_gen", [], True, None, {})]

LLAMA3_CASES = [
    ("date_string_gen", [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What day is it?"},
    ], True, None, {"date_string": "14 Feb 2025"}),
    ("trimmed_contents_gen", [
        {"role": "system", "content": "  \n Padded system.\t\n"},
        {"role": "user", "content": "\n  Padded question?  \n"},
        {"role": "assistant", "content": " Padded answer. "},
        {"role": "user", "content": "Again"},
    ], True, None, {}),
    ("tools_in_system_gen", [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in Oslo?"},
    ], True, [WEATHER_TOOL], {"tools_in_user_message": False}),
    ("custom_tools_gen", [{"role": "user", "content": "Time in Tokyo?"}], True, None,
     {"custom_tools": [TIME_TOOL]}),
    ("one_tool_call_gen", ONE_CALL, True, [WEATHER_TOOL], {}),
    ("ipython_role_gen", ONE_CALL[:2] + [{"role": "ipython", "content": "-3 degrees"}], True,
     [WEATHER_TOOL], {}),
    ("tool_content_mapping_gen", ONE_CALL[:2] + [
        {"role": "tool", "content": {"sky": "clear", "temperature": -3}}], True, [WEATHER_TOOL], {}),
    ("builtin_tools_gen", [
        {"role": "system", "content": "You can search."},
        {"role": "user", "content": "Who won the match?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"arguments": {"query": "match result"}, "name": "brave_search"},
             "type": "function"}]},
        {"role": "ipython", "content": "3-1"},
    ], True, None, {"builtin_tools": ["brave_search", "code_interpreter", "wolfram_alpha"]}),
    ("builtin_tools_custom_call_gen", ONE_CALL, True, [WEATHER_TOOL],
     {"builtin_tools": ["brave_search", "wolfram_alpha"]}),
    ("tools_without_user_message", [{"role": "system", "content": "Tools only."}], True,
     [WEATHER_TOOL], {}),
    # Python's whitespace (str.strip, jinja2's trim) includes U+001C..U+001F, Unicode's does not.
    ("unicode_whitespace_trim_gen", [
        {"role": "system", "content": "\u3000\x1c System \xa0\x1f"},
        {"role": "user", "content": "\x1f\u2003Hi\u2029\x85\x1d"},
    ], True, None, {}),
    ("edge_tool_gen", [{"role": "user", "content": "Edge?"}], True, [EDGE_TOOL, WEATHER_TOOL], {}),
    ("edge_tool_in_system_gen", [{"role": "user", "content": "Edge?"}], True, [EDGE_TOOL],
     {"tools_in_user_message": False}),
    # trim(None) is the string 'None' in jinja2.
    ("null_content_gen", [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": None},
        {"role": "user", "content": "Hello?"},
    ], True, None, {}),
    ("list_tool_content_gen", ONE_CALL[:2] + [{"role": "tool", "content": ["-3", 7, None, True]}],
     True, [WEATHER_TOOL], {}),
    # 'name="' + 3 is a TypeError in Python.
    ("builtin_tool_int_argument", [
        {"role": "user", "content": "Search"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"arguments": {"count": 3, "query": "x"}, "name": "brave_search"},
             "type": "function"}]},
    ], True, None, {"builtin_tools": ["brave_search"]}),
]

QWEN25_CASES = [
    ("edge_tool_gen", [{"role": "user", "content": "Edge?"}], True, [EDGE_TOOL], {}),
    ("null_content_tool_call_gen", [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"function": {"arguments": "{\"city\": \"Oslo\"}", "name": "get_weather"},
             "type": "function"}]},
        {"role": "tool", "content": "-3"},
    ], True, [WEATHER_TOOL], {}),
    ("bare_tool_call_gen", [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": "On it.", "tool_calls": [
            {"arguments": {"city": "Oslo", "unit": "celsius"}, "name": "get_weather"}]},
    ], True, [WEATHER_TOOL], {}),
]

QWEN3_CASES = [
    ("enable_thinking_false_gen", [{"role": "user", "content": "Hi"}], True, None,
     {"enable_thinking": False}),
    ("enable_thinking_true_gen", [{"role": "user", "content": "Hi"}], True, None,
     {"enable_thinking": True}),
    ("enable_thinking_false_nogen", [{"role": "user", "content": "Hi"}], False, None,
     {"enable_thinking": False}),
    ("think_in_last_answer_nogen", [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "<think>\nAdd them.\n</think>\n\nIt is 4."},
    ], False, None, {}),
    ("think_in_earlier_answer_gen", [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "<think>\nAdd them.\n</think>\n\nIt is 4."},
        {"role": "user", "content": "And 3+3?"},
    ], True, None, {}),
    ("reasoning_content_gen", [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": "", "reasoning_content": "\nI should call the tool.\n",
         "tool_calls": [{"function": {"arguments": {"city": "Oslo"}, "name": "get_weather"},
                         "type": "function"}]},
        {"role": "tool", "content": "-3"},
        {"role": "assistant", "content": "It is -3 degrees.", "reasoning_content": None},
    ], True, [WEATHER_TOOL], {}),
    ("string_arguments_and_content_gen", [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"function": {"arguments": "{\"city\": \"Oslo\"}", "name": "get_weather"},
             "type": "function"}]},
        {"role": "tool", "content": "-3"},
    ], True, [WEATHER_TOOL], {}),
    ("tool_response_as_user_gen", [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": "<think>\ncall it\n</think>\n\nChecking."},
        {"role": "user", "content": "<tool_response>\n-3\n</tool_response>"},
    ], True, None, {}),
    ("edge_tool_gen", [{"role": "user", "content": "Edge?"}], True, [EDGE_TOOL], {}),
    # `'</think>' in None` is a TypeError in Python.
    ("null_content_error", [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": None},
    ], False, None, {}),
    ("null_content_tool_call_gen", [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"function": {"arguments": {"city": "Oslo"}, "name": "get_weather"},
             "type": "function"}]},
    ], True, [WEATHER_TOOL], {}),
    ("late_system_gen", [
        {"role": "user", "content": "Hi"},
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Hello"},
    ], True, None, {}),
]

SMOLLM3_CASES = [
    ("enable_thinking_false_gen", [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "\n\nHello!"},
        {"role": "user", "content": "Bye"},
    ], True, None, {"enable_thinking": False}),
    ("no_think_in_system_gen", [
        {"role": "system", "content": "Be brief. /no_think"},
        {"role": "user", "content": "Hi"},
    ], True, None, {}),
    ("think_in_system_overrides_gen", [
        {"role": "system", "content": "/think Be thorough.  "},
        {"role": "user", "content": "Hi"},
    ], True, None, {"enable_thinking": False}),
    ("only_flag_system_gen", [
        {"role": "system", "content": "/no_think"},
        {"role": "user", "content": "Hi"},
    ], True, None, {}),
    ("unicode_whitespace_rstrip_gen", [
        {"role": "system", "content": "Custom rules.\x1f\u3000 /think\x1e"},
        {"role": "user", "content": "Hi"},
    ], True, None, {}),
    ("tool_role_and_null_content_gen", [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None},
        {"role": "tool", "content": "sunny"},
    ], True, None, {}),
]

GEMMA_CASES = [
    ("roles_not_alternating_gen", [
        {"role": "user", "content": "Hi"},
        {"role": "user", "content": "Hello?"},
    ], True, None, {}),
    ("unicode_whitespace_trim_gen", [
        {"role": "user", "content": "\x1c\u3000Hi\x1f\xa0"},
    ], True, None, {}),
    ("trimmed_contents_gen", [
        {"role": "user", "content": "\n  Padded question?  \n"},
        {"role": "assistant", "content": " Padded answer. "},
        {"role": "user", "content": "Again"},
    ], True, None, {}),
]

GEMMA3_CASES = [
    ("content_parts_gen", [
        {"role": "system", "content": [{"text": "System as parts.", "type": "text"}]},
        {"role": "user", "content": [
            {"text": " Describe ", "type": "text"}, {"type": "image"},
            {"text": "this. ", "type": "text"}]},
    ], True, None, {}),
    ("content_not_text", [{"role": "user", "content": 42}], True, None, {}),
]

PHI3_CASES = [
    ("empty_system_and_tool_nogen", [
        {"role": "system", "content": ""},
        {"role": "user", "content": "Hi"},
        {"role": "tool", "content": "ignored"},
        {"role": "assistant", "content": "Hello!"},
    ], False, None, {}),
]

# name (file stem), family cases, bos_token, eos_token (None: not set). The tokens are the
# models' tokenizer_config.json ones.
MODELS = [
    ("meta-llama-Llama-3.1-8B-Instruct", LLAMA3_CASES, "<|begin_of_text|>", "<|eot_id|>"),
    ("meta-llama-Llama-3.2-3B-Instruct", LLAMA3_CASES, "<|begin_of_text|>", "<|eot_id|>"),
    ("meta-llama-Llama-3.3-70B-Instruct", LLAMA3_CASES, "<|begin_of_text|>", "<|eot_id|>"),
    ("microsoft-Phi-3.5-mini-instruct", PHI3_CASES, "<s>", "<|endoftext|>"),
    ("Qwen-Qwen2.5-7B-Instruct", QWEN25_CASES, None, "<|im_end|>"),
    ("Qwen-Qwen3-0.6B", QWEN3_CASES, None, "<|im_end|>"),
    # SmolLM3's template reads neither token.
    ("HuggingFaceTB-SmolLM3-3B", SMOLLM3_CASES, None, "<|im_end|>"),
    ("google-gemma-2-2b-it", GEMMA_CASES, "<bos>", "<eos>"),
    ("google-gemma-3-it", GEMMA_CASES + GEMMA3_CASES, "<bos>", "<eos>"),
]


def check_key_order(value, path: str, message: bool = False) -> None:
    """Tern's test reads the fixture with a JSON reader that sorts object keys (and builds each
    message as role, content, then the other fields sorted), while tojson prints dicts in
    insertion order: so every dict here must already be in that order."""
    if isinstance(value, dict):
        keys = list(value)
        want = (["role", "content"] + sorted(keys[2:])) if message else sorted(keys)
        if keys != want:
            raise ValueError(f"{path}: keys {keys} are not in the order {want}")
        for k, v in value.items():
            check_key_order(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_key_order(v, f"{path}[{i}]")


def normalize(case: tuple) -> tuple:
    """CHAT_CASES / TOOL_CHAT_CASES tuples as (label, messages, agp, tools, vars)."""
    label, messages, agp, *rest = case
    tools = rest[0] if len(rest) > 0 else None
    extra = rest[1] if len(rest) > 1 else {}
    return label, messages, agp, tools, extra


def render(compiled, messages, agp, tools, extra, bos, eos) -> dict:
    special = {}
    if bos is not None:
        special["bos_token"] = bos
    if eos is not None:
        special["eos_token"] = eos
    try:
        text = compiled.render(messages=messages, tools=tools, documents=None,
                               add_generation_prompt=agp, **special, **extra)
    except Exception as e:  # noqa: BLE001 (Python errors too: `'x' in None` is a TypeError)
        # raise_exception raises exactly TemplateError; the engine raises subclasses.
        kind = "raised" if type(e) is jinja2.exceptions.TemplateError else type(e).__name__
        return {"error": {"kind": kind, "message": str(e)}}
    return {"rendered": text}


def end_of_turn_text(compiled, bos, eos) -> str | None:
    msgs = [{"role": "user", "content": MARK_USER}, {"role": "assistant", "content": MARK}]
    out = render(compiled, msgs, False, None, {}, bos, eos)
    text = out.get("rendered")
    if text is None or MARK not in text:
        return None
    return text[text.rindex(MARK) + len(MARK):]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()

    env = hf_style_env(now=NOW)
    templates = []
    for name, family, bos, eos in MODELS:
        source = (TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8")
        compiled = env.from_string(source)
        cases = [normalize(c) for c in CHAT_CASES]
        if "tools" in source:
            cases += [normalize(c) for c in TOOL_CHAT_CASES]
        cases += NO_MESSAGES + family
        out_cases = []
        for label, messages, agp, tools, extra in cases:
            for i, m in enumerate(messages):
                check_key_order(m, f"{name} {label} messages[{i}]", message=True)
            check_key_order([tools, extra], f"{name} {label} tools/vars")
            case = {"label": label, "messages": messages, "add_generation_prompt": agp}
            if tools is not None:
                case["tools"] = tools
            if extra:
                case["vars"] = extra
            case.update(render(compiled, messages, agp, tools, extra, bos, eos))
            out_cases.append(case)
        templates.append({
            "name": name,
            "file": f"templates/{name}.jinja",
            "template_sha256": hashlib.sha256(source.encode("utf-8")).hexdigest(),
            "bos_token": bos,
            "eos_token": eos,
            "end_of_turn_text": end_of_turn_text(compiled, bos, eos),
            "cases": out_cases,
        })

    fixture = {
        "provenance": {
            "generator": "tests/reference/make_template_fixtures.py",
            "python": platform.python_version(),
            "jinja2": jinja2.__version__,
            "date_utc": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        },
        "description": (
            "Chat templates of tests/reference/templates/ rendered by jinja2 as transformers' "
            "apply_chat_template does: ImmutableSandboxedEnvironment(trim_blocks=True, "
            "lstrip_blocks=True, extensions=[loopcontrols]), globals raise_exception and "
            "strftime_now, filter tojson (json.dumps, ensure_ascii=False); variables messages, "
            "tools (None unless given), documents=None, add_generation_prompt, bos_token and "
            "eos_token (omitted when null), and the case's vars. Every object has its keys sorted (messages: role, content, then the rest sorted), so a reader that sorts keys rebuilds the same dicts. strftime_now formats now "
            "(now_unix seconds since the epoch, read as UTC). A case has rendered, or error: "
            "{kind: 'raised' (raise_exception, message = its text) or the jinja2 exception class, "
            "message}. end_of_turn_text: the text after an assistant message's content when "
            f"rendering [user {MARK_USER!r}, assistant {MARK!r}] without generation prompt."
        ),
        "now": NOW.isoformat(),
        "now_unix": NOW_UNIX,
        "templates": templates,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(fixture, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    n = sum(len(t["cases"]) for t in templates)
    errors = sum(1 for t in templates for c in t["cases"] if "error" in c)
    print(f"wrote {args.out}: {len(templates)} templates, {n} cases ({errors} errors)", file=sys.stderr)


if __name__ == "__main__":
    main()
