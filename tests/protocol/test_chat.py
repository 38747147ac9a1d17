import pytest
from pydantic import ValidationError

from openmaas.protocol.chat import ChatCompletionRequest, NamedToolChoice, ResponseFormatJSONSchema
from openmaas.protocol.completions import CompletionRequest, EmbeddingRequest

TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def test_a_minimal_request_validates_and_keeps_unknown_top_level_fields() -> None:
    req = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "vendor_knob": 3}
    )
    assert req.model == "m"
    assert req.model_extra == {"vendor_knob": 3}


def test_content_parts_and_tool_messages_are_typed() -> None:
    req = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "be brief"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "hi"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "42"},
            ],
        }
    )
    assert [m.role for m in req.messages] == ["system", "user", "assistant", "tool"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}, "messages"),
        ({"model": "m", "messages": [{"role": "user"}]}, "messages"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3}, "temperature"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "temperature"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 0}, "n"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema"}},
            "response_format",
        ),
        (
            {
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "response_format": {"type": "json_object", "strict": True},
            },
            "response_format",
        ),
    ],
)
def test_malformed_requests_are_refused_naming_the_field(body: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        ChatCompletionRequest.model_validate(body)
    assert info.value.errors()[0]["loc"][0] == field


def test_named_tool_choice_must_name_an_offered_tool() -> None:
    with pytest.raises(ValidationError, match="not in tools"):
        ChatCompletionRequest.model_validate(
            {
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "tools": [TOOL],
                "tool_choice": {"type": "function", "function": {"name": "other"}},
            }
        )
    ok = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "tools": [TOOL],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        }
    )
    assert isinstance(ok.tool_choice, NamedToolChoice)


def test_required_tool_choice_needs_tools_and_top_logprobs_needs_logprobs() -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    with pytest.raises(ValidationError, match="needs at least one tool"):
        ChatCompletionRequest.model_validate({**base, "tool_choice": "required"})
    with pytest.raises(ValidationError, match="requires logprobs"):
        ChatCompletionRequest.model_validate({**base, "top_logprobs": 2})


def test_json_schema_response_format_reads_the_schema_alias() -> None:
    req = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": {"type": "object"}}},
        }
    )
    assert isinstance(req.response_format, ResponseFormatJSONSchema)
    assert req.response_format.json_schema.schema_ == {"type": "object"}


def test_output_limit_prefers_max_completion_tokens() -> None:
    req = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 5,
            "max_completion_tokens": 9,
        }
    )
    assert req.output_limit == 9


def test_completion_and_embedding_requests_refuse_empty_inputs() -> None:
    with pytest.raises(ValidationError):
        CompletionRequest.model_validate({"model": "m", "prompt": []})
    with pytest.raises(ValidationError):
        EmbeddingRequest.model_validate({"model": "m", "input": []})
    with pytest.raises(ValidationError):
        EmbeddingRequest.model_validate({"model": "m", "input": "x", "encoding_format": "hex"})
    assert EmbeddingRequest.model_validate({"model": "m", "input": ["a", "b"]}).input == ["a", "b"]
