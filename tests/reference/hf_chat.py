"""The conversations and the jinja2 environment every chat-template fixture shares.

hf_style_env() sets jinja2 up as Hugging Face transformers' apply_chat_template does;
CHAT_CASES and TOOL_CHAT_CASES are the conversations rendered for each model. Imported by
make_fixtures.py (templates inside GGUF files, tokenized by llama.cpp) and
make_template_fixtures.py (the templates of tests/reference/templates/, jinja2 only).
"""

from __future__ import annotations

import datetime
import json


def hf_style_env(now: datetime.datetime | None = None):
    """A jinja2 environment set up like transformers' chat template renderer.

    now: the time strftime_now formats (transformers: datetime.now(), the local time); a fixed
    one makes the renderings reproducible."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return (now or datetime.datetime.now()).strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


CHAT_CASES: list[tuple[str, list[dict], bool]] = [
    ("user_only_gen", [{"role": "user", "content": "Hello! How are you?"}], True),
    ("user_only_nogen", [{"role": "user", "content": "Hello! How are you?"}], False),
    ("system_user_gen", [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "What is the capital of France?"},
    ], True),
    ("system_user_nogen", [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "What is the capital of France?"},
    ], False),
    ("multi_turn_gen", [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "2+2 equals 4."},
        {"role": "user", "content": "And times 3?"},
    ], True),
    ("multi_turn_nogen", [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "2+2 equals 4."},
        {"role": "user", "content": "And times 3?"},
    ], False),
    ("user_assistant_no_system_gen", [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Bye"},
    ], True),
    ("special_chars_gen", [
        {"role": "user", "content": "Line 1\nLine 2\n\n  indented \"quotes\" & 'apostrophes' <tag> {{ not_jinja }} "
                                    "{% raw %} \\ backslash\ttab café 日本語 🎉\n"},
    ], True),
    ("empty_content_gen", [{"role": "user", "content": ""}], True),
]


# Tool definitions and calls as transformers passes them; keys sorted (see make_chat_template).
WEATHER_TOOL = {
    "function": {
        "description": "Get the current weather in a city.",
        "name": "get_weather",
        "parameters": {
            "properties": {
                "city": {"description": "City name, e.g. Paris", "type": "string"},
                "unit": {"enum": ["celsius", "fahrenheit"], "type": "string"},
            },
            "required": ["city"],
            "type": "object",
        },
    },
    "type": "function",
}
TIME_TOOL = {
    "function": {
        "description": "Current local time for an IANA time zone.",
        "name": "get_time",
        "parameters": {
            "properties": {"tz": {"description": "e.g. Europe/Paris", "type": "string"}},
            "required": ["tz"],
            "type": "object",
        },
    },
    "type": "function",
}
TOOL_CALL_MESSAGES = [
    {"role": "user", "content": "What's the weather and the time in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"function": {"arguments": {"city": "Paris", "unit": "celsius"}, "name": "get_weather"},
         "type": "function"},
        {"function": {"arguments": {"tz": "Europe/Paris"}, "name": "get_time"}, "type": "function"},
    ]},
    {"role": "tool", "content": "{\"temperature\": 18, \"sky\": \"cloudy\"}"},
    {"role": "tool", "content": "14:05"},
]
TOOL_CHAT_CASES: list[tuple] = [
    ("tools_user_gen", [{"role": "user", "content": "What's the weather in Paris?"}], True,
     [WEATHER_TOOL]),
    ("tools_system_user_gen", [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in Tokyo, in fahrenheit?"},
    ], True, [WEATHER_TOOL, TIME_TOOL]),
    ("tool_calls_and_responses_gen", TOOL_CALL_MESSAGES, True, [WEATHER_TOOL, TIME_TOOL]),
    ("tool_calls_and_responses_then_answer_nogen", TOOL_CALL_MESSAGES + [
        {"role": "assistant", "content": "It is 18 °C and cloudy in Paris, and the time is 14:05."},
    ], False, [WEATHER_TOOL, TIME_TOOL]),
    ("tool_call_with_content_no_tools_gen", [
        {"role": "user", "content": "Weather in Rome?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"function": {"arguments": {"city": "Rome"}, "name": "get_weather"}, "type": "function"}]},
        {"role": "tool", "content": "sunny"},
    ], True),
]
