"""Strings of the API's own vocabulary: the guards skip them (text_slots.py). They carry
nothing a client could hide, and a custom pattern that happened to match one must not
break the request's structure."""

# OpenAI chat-completions field names and enum values, JSON Schema keywords, and the
# prompt-caching marker clients send for Anthropic (`cache_control: {type: ephemeral}`).
VOCABULARY = frozenset(
    """
system developer user assistant tool function role content name refusal reasoning
reasoning_content tool_calls tool_call_id function_call arguments audio id type text
image_url url detail input_audio data format file file_data file_id filename
messages model tools functions tool_choice parallel_tool_calls stop stream stream_options
include_usage temperature top_p n max_tokens max_completion_tokens presence_penalty
frequency_penalty logit_bias logprobs top_logprobs user metadata store prediction
response_format seed service_tier modalities reasoning_effort verbosity web_search_options
safety_identifier prompt_cache_key json_schema json_object schema strict description title
parameters properties required items enum const default examples anyOf oneOf allOf not
additionalProperties patternProperties $ref $defs definitions minimum maximum
exclusiveMinimum exclusiveMaximum minLength maxLength minItems maxItems uniqueItems
pattern nullable object string number integer boolean array null auto none low high
medium minimal flex priority scale wav mp3 flac opus pcm16 aac alloy stop length
content_filter chat.completion chat.completion.chunk choices message delta index
finish_reason usage created system_fingerprint annotations url_citation transcript
expires_at custom grammar thinking_blocks thinking redacted_thinking signature
prompt_tokens completion_tokens total_tokens prompt_tokens_details completion_tokens_details
cached_tokens reasoning_tokens audio_tokens accepted_prediction_tokens
rejected_prediction_tokens start_index end_index cache_control ephemeral ttl
""".split()
)
