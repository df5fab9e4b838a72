"""The pydantic base every gateway config model shares.

Config is written by people in YAML next to Envoy's own snake_case keys, and follows the
camelCase of the Kubernetes-style resources it mirrors (`promptEnrichment`, `failOpen`).
Unknown keys are errors: a typo must stop start-up, not be silently ignored.
"""

import re

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ConfigModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
    )


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")


def seconds(value: str | float | int) -> float:
    """ "30s", "1.5s", "500ms", "2m", "1h" or a number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    m = _DURATION.match(str(value).strip())
    if not m:
        raise ValueError(f"{value!r} is not a duration such as 30s, 500ms, 2m or 1h")
    n, unit = float(m.group(1)), m.group(2)
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
