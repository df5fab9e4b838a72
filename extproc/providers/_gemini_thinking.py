"""`reasoning_effort` -> Gemini's `generationConfig.thinkingConfig`, and the backend settings for it.

Gemini's thinking control depends on the model generation, so the family is read from the
model name being sent (or the backend's `thinking.family`, for aliases whose name does
not tell):

- Gemini 2.5 takes a token budget, `thinkingBudget`, whose valid range differs per model:
  Pro 128..32768 and never 0 (it cannot stop thinking), Flash 0..24576, Flash-Lite 0 or
  512..24576; -1 means "dynamic" on all of them.
- Gemini 3 takes a level, `thinkingLevel`: Pro low/high (3.1 Pro adds medium), Flash
  minimal/low/medium/high. None of them can switch thinking off.

Every effort a client may send maps onto one value per family (the tables below, which a
backend may override effort by effort). An effort a family cannot honour, `none` where
thinking cannot be switched off, is refused with a 400 unless the backend maps it. Thoughts
are always asked for (`includeThoughts`), because the answer carries them back as
`reasoning_content`; a budget of 0 (thinking off) is sent without it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, StrictInt, model_validator

from ..config_model import ConfigModel
from .base import UnsupportedRequest

# The canonical values (canonical.REASONING_EFFORTS), in increasing order of effort.
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
Effort = Literal["none", "minimal", "low", "medium", "high", "xhigh"]
DYNAMIC = -1  # thinkingBudget -1: the model decides how much to think


@dataclass(frozen=True)
class BudgetFamily:
    """A Gemini 2.5 model family: thinking is a token budget within [low, high]."""

    low: int
    high: int
    can_disable: bool
    defaults: dict[str, int]

    def allows(self, budget: int) -> bool:
        return budget == DYNAMIC or (budget == 0 and self.can_disable) or self.low <= budget <= self.high

    def describe(self) -> str:
        off = "0 (off), " if self.can_disable else ""
        return f"{off}{self.low}..{self.high}, or -1 (dynamic)"


@dataclass(frozen=True)
class LevelFamily:
    """A Gemini 3 model family: thinking is a level."""

    levels: tuple[str, ...]
    defaults: dict[str, str]

    def describe(self) -> str:
        return ", ".join(self.levels)


# Defaults stay inside each family's range. `minimal` is the family's smallest budget (on
# 2.5 Pro its minimum, 128: it cannot think less); `high` follows Google's own OpenAI
# endpoint (24576); `xhigh` is the family's maximum. `none` exists only where thinking can
# be switched off. Gemini 3 Pro takes no `minimal` or `medium` (3.1 Pro takes medium), so
# they round to the nearest level it has, as Google's OpenAI endpoint does.
FAMILIES: dict[str, BudgetFamily | LevelFamily] = {
    "gemini-2.5-pro": BudgetFamily(
        128, 32768, False, {"minimal": 128, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 32768}
    ),
    "gemini-2.5-flash": BudgetFamily(
        1,
        24576,
        True,
        {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 24576},
    ),
    "gemini-2.5-flash-lite": BudgetFamily(
        512,
        24576,
        True,
        {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 24576},
    ),
    "gemini-3-pro": LevelFamily(
        ("low", "medium", "high"),
        {"minimal": "low", "low": "low", "medium": "high", "high": "high", "xhigh": "high"},
    ),
    "gemini-3-flash": LevelFamily(
        ("minimal", "low", "medium", "high"),
        {"minimal": "minimal", "low": "low", "medium": "medium", "high": "high", "xhigh": "high"},
    ),
}
Family = Literal[
    "gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-3-pro", "gemini-3-flash"
]

# Most specific first: flash-lite before flash. Gemini 3.x point releases share a family.
_PATTERNS = (
    (re.compile(r"gemini-2\.5-pro(?:-|$)"), "gemini-2.5-pro"),
    (re.compile(r"gemini-2\.5-flash-lite(?:-|$)"), "gemini-2.5-flash-lite"),
    (re.compile(r"gemini-2\.5-flash(?:-|$)"), "gemini-2.5-flash"),
    (re.compile(r"gemini-3(?:\.\d+)?-pro(?:-|$)"), "gemini-3-pro"),
    (re.compile(r"gemini-3(?:\.\d+)?-flash(?:-|$)"), "gemini-3-flash"),
)


def family_of(model: str) -> str | None:
    """The thinking family of a model id (`models/` prefix allowed), or None."""
    name = model.lower().removeprefix("models/")
    return next((family for pattern, family in _PATTERNS if pattern.match(name)), None)


class GeminiThinking(ConfigModel):
    """The backend's `thinking` settings (camelCase in YAML)."""

    # Used when a request has no `reasoning_effort` (and only for models that can think).
    default_effort: Effort | None = None
    # The family when the model id does not tell (an alias such as gemini-flash-latest);
    # an id that tells its own family keeps it.
    family: Family | None = None
    # Per family, per effort: overrides of the default budget (2.5) or level (3).
    budgets: dict[str, dict[str, StrictInt]] = Field(default_factory=dict)
    levels: dict[str, dict[str, str]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _in_range(self) -> GeminiThinking:
        for name, table in self.budgets.items():
            budget_family = _family(name, BudgetFamily, "budgets")
            for effort, budget in table.items():
                _check_effort(effort, f"budgets.{name}")
                if not budget_family.allows(budget):
                    raise ValueError(
                        f"budgets.{name}.{effort}: {budget} is not a thinking budget {name} accepts "
                        f"({budget_family.describe()})"
                        + ("; it cannot switch thinking off" if budget == 0 else "")
                    )
        for name, levels in self.levels.items():
            level_family = _family(name, LevelFamily, "levels")
            for effort, level in levels.items():
                _check_effort(effort, f"levels.{name}")
                if level not in level_family.levels:
                    raise ValueError(
                        f"levels.{name}.{effort}: {level!r} is not a thinking level {name} accepts "
                        f"({level_family.describe()})"
                    )
        return self

    def check_model(self, model: str | None) -> None:
        """Start-up checks that need the backend's fixed model (None: the client chooses)."""
        if model is None:
            return
        named = family_of(model)
        if self.family is not None and named is not None and named != self.family:
            raise ValueError(f"thinking.family {self.family!r} contradicts model {model!r}, a {named} model")
        if self.default_effort is not None and (named or self.family) is None:
            raise ValueError(
                f"thinking.defaultEffort is set but model {model!r} has no thinking family the gateway "
                "knows; set thinking.family"
            )


def _family(name: str, kind: type[Any], table: str) -> Any:
    family = FAMILIES.get(name)
    if not isinstance(family, kind):
        names = [n for n, f in FAMILIES.items() if isinstance(f, kind)]
        raise ValueError(f"{table}: {name!r} is not one of {', '.join(names)}")
    return family


def _check_effort(effort: str, where: str) -> None:
    if effort not in EFFORTS:
        raise ValueError(f"{where}: {effort!r} is not a reasoning effort ({', '.join(EFFORTS)})")


def thinking_config(req: dict[str, Any], model: str, settings: GeminiThinking) -> dict[str, Any] | None:
    """The `thinkingConfig` for this request and model, or None when none is asked for."""
    asked = req.get("reasoning_effort")
    effort = asked if asked is not None else settings.default_effort
    if effort is None:
        return None
    if effort not in EFFORTS:
        raise UnsupportedRequest(
            f"'reasoning_effort' must be one of {', '.join(EFFORTS)}, not {effort!r}",
            param="reasoning_effort",
        )
    name = family_of(model) or settings.family  # the id wins when it tells
    if name is None:
        if asked is None:
            return None  # the backend's default applies only to models that can think
        raise UnsupportedRequest(
            f"'reasoning_effort': model {model!r} has no thinking controls the gateway knows "
            "(Gemini 2.5 Pro/Flash/Flash-Lite and 3 Pro/Flash have); a backend serving an alias "
            "can name its family in 'thinking.family'",
            param="reasoning_effort",
        )
    family = FAMILIES[name]
    if isinstance(family, BudgetFamily):
        budget = settings.budgets.get(name, {}).get(effort, family.defaults.get(effort))
        if budget is None:
            raise _cannot_switch_off(model, name, "budgets")
        # Thoughts of a model told not to think: Google has none to include.
        return {"thinkingBudget": 0} if budget == 0 else {"includeThoughts": True, "thinkingBudget": budget}
    level = settings.levels.get(name, {}).get(effort, family.defaults.get(effort))
    if level is None:
        raise _cannot_switch_off(model, name, "levels")
    return {"includeThoughts": True, "thinkingLevel": level}


def _cannot_switch_off(model: str, family: str, table: str) -> UnsupportedRequest:
    return UnsupportedRequest(
        f"'reasoning_effort' 'none' cannot be honoured: model {model!r} ({family}) cannot switch "
        f"thinking off; send 'minimal' for the least thinking (a backend may map 'none' in "
        f"'thinking.{table}.{family}')",
        param="reasoning_effort",
    )
