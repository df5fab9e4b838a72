"""The pydantic base every gateway config model shares.

Config is written by people in YAML next to Envoy's own snake_case keys, and follows the
camelCase of the Kubernetes-style resources it mirrors (`promptEnrichment`, `failOpen`).
Unknown keys are errors: a typo must stop start-up, not be silently ignored.
"""

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ConfigModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
    )
