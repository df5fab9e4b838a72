"""An Envoy external processor that turns Envoy into an LLM gateway."""

__version__ = "0.1.0"
