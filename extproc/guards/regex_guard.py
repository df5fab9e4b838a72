"""The regex prompt guard: named custom patterns plus Presidio's built-in PII recognizers.

Config follows kgateway's `promptGuard.regex` (`matches`, `builtins`, `action`). Patterns
are compiled and Presidio engines built once, when a TextScanner is made at start-up; a
request only runs `re` (and, if builtins are configured, one Presidio analyze()).

Decisions worth knowing:

- Custom patterns are case-sensitive by default (`caseSensitive: true`), as in kgateway and
  as `re` reads them: making them case-insensitive behind the user's back would also widen
  classes such as `[A-Z]{2}[0-9]{6}`. Write `(?i)` or set `caseSensitive: false` to opt in.
  Builtins are unaffected (Presidio's own flags).
- `scoreThreshold` defaults to 0.3. Offline, Presidio cannot raise scores from context words,
  so the scores it gives are: 1.0 for checksum-validated matches (cards, emails), 0.5 for
  dashed SSNs, 0.4 for phone numbers, and 0.05 for bare 9-digit numbers that *might* be an
  SSN or a US passport. 0.3 keeps the first three and drops the last, which would flag
  every order id. A builtin whose best offline score is below the threshold is a config
  error rather than a guard that silently never fires.
- Overlapping findings are merged (see `_resolve`), so no character any pattern flagged
  is ever left unmasked.
- Everything is found on detection views of the text (`normalize.py`: NFKC, invisible
  characters dropped, Unicode digits, dashes and spaces folded to ASCII) and masked on
  the original characters, so a value cannot hide behind fullwidth digits, zero-width
  characters or Unicode hyphens. Custom patterns also run on the original text itself:
  a pattern written for particular characters (`[０-９]`, `\u00a0`) still matches them.
- Custom patterns run in the `regex` module, in its `re`-compatible mode (VERSION0: `re`'s
  syntax and matches), because it can stop a match that runs too long. A pattern such as
  `([A-Za-z0-9]+[._-]?)+@corp\\.example` backtracks catastrophically in `re` (3.5 s on 25
  characters of a client's text, minutes on 30), on the event loop that serves every
  stream; `regex` gives up on most such shapes at once, and a time limit per text
  (`pattern_seconds`) stops the rest with `PatternTimeout`. On the event loop that sends
  the text to a scan worker; there, the guard cannot vouch for the text, and it is
  refused, never passed on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import regex
from pydantic import Field, field_validator, model_validator

from ..config_model import ConfigModel
from . import normalize

# A pattern that matches the empty string would "mask" between characters and report a
# finding in every text. Matching nothing at all is undecidable for `re` in general, so we
# reject what matches empty on these probes, and the scanner also drops any empty match.
_EMPTY_PROBES = ("", "aZ 09_-.,@\n\t\u00e9")

CUSTOM_SCORE = 1.0  # a custom pattern either matches or not

# How long a custom pattern may run on one text (all its matches together), by where it
# runs. An ordinary pattern takes ~1-50 µs on 2 KB. `regex` counts the process's CPU time
# since the call began, every thread's (gRPC's poller, tokenizer threads) and anything
# between matches, so a limit on the event loop can run out early under load: there it is
# short (a hostile text holds the loop ~20 ms) and running out sends the text to a scan
# worker instead of refusing it. A worker is one thread; its limit is the one that
# refuses. The hold-back's partial matches (holdback.py) run on the loop, on short texts,
# and cannot be moved: their limit refuses too, so it is longer.
LOOP_PATTERN_SECONDS = 0.02
HOLDBACK_PATTERN_SECONDS = 0.1
WORKER_PATTERN_SECONDS = 0.5
_PATTERN_SECONDS_PER_CHAR = 2e-6


def pattern_seconds(text: str, base: float) -> float:
    """How long a custom pattern may run on `text`: `base` plus 2 µs a character."""
    return base + len(text) * _PATTERN_SECONDS_PER_CHAR


def compile_pattern(pattern: str, case_sensitive: bool = True) -> regex.Pattern[str]:
    """A custom pattern as the guards run it: `regex` in its `re`-compatible mode."""
    return regex.compile(pattern, regex.VERSION0 | (0 if case_sensitive else regex.IGNORECASE))


class PatternTimeout(Exception):
    """A custom pattern ran past its time on a text (catastrophic backtracking, or on the
    loop perhaps a busy process): the guard cannot say what the text holds."""

    def __init__(self, name: str) -> None:
        super().__init__(f"custom pattern {name} ran out of time")
        self.name = name


class RegexMatch(ConfigModel):
    pattern: str
    # Used in the mask label `<NAME>` and in logs, so kept to label-safe characters.
    name: str = Field(default="CUSTOM", pattern=r"^[A-Za-z0-9_.\-]{1,64}$")

    @field_validator("pattern")
    @classmethod
    def _valid_regex(cls, pattern: str) -> str:
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
        try:  # what the guards run (see the module's notes)
            compile_pattern(pattern)
        except regex.error as exc:
            raise ValueError(f"regular expression {pattern!r} is not supported by the guard: {exc}") from None
        for probe in _EMPTY_PROBES:
            if any(m.start() == m.end() for m in compiled.finditer(probe)):
                raise ValueError(
                    f"pattern {pattern!r} can match the empty string, which would flag every text"
                )
        return pattern


class RegexGuardConfig(ConfigModel):
    action: Literal["MASK", "REJECT"] = "MASK"
    matches: tuple[RegexMatch, ...] = ()
    builtins: tuple[str, ...] = ()
    score_threshold: float = Field(default=0.3, ge=0.0, le=1.0)
    case_sensitive: bool = True

    @field_validator("action", mode="before")
    @classmethod
    def _any_case(cls, action: object) -> object:
        return action.strip().upper() if isinstance(action, str) else action

    @field_validator("builtins")
    @classmethod
    def _known_builtins(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        if not names:
            return names
        # Imported here: it imports presidio (~1.2 s), which pure-regex policies never need.
        from . import presidio_engine

        for name in names:
            presidio_engine.entity_for(name)  # raises, listing the valid names
        # Upper-cased because the name becomes the mask label; repeats add nothing.
        return tuple(dict.fromkeys(name.strip().upper() for name in names))

    @model_validator(mode="after")
    def _useful(self) -> RegexGuardConfig:
        if not self.matches and not self.builtins:
            raise ValueError("a regex guard needs at least one entry in `matches` or `builtins`")
        if self.builtins:
            from . import presidio_engine

            for name in self.builtins:
                best = presidio_engine.best_offline_score(presidio_engine.entity_for(name))
                if best is not None and best < self.score_threshold:
                    raise ValueError(
                        f"builtins: {name} scores at most {best} without context words, so "
                        f"with scoreThreshold {self.score_threshold} it would never be found; "
                        f"lower scoreThreshold to {best} (expect false positives) or drop it"
                    )
        return self


@dataclass(frozen=True, slots=True)
class Finding:
    entity: str  # the configured name: `CC`, `EMAIL`, not Presidio's EMAIL_ADDRESS
    start: int
    end: int
    score: float


class TextScanner:
    """Finds and masks a policy's patterns and builtins in text. Thread-safe, stateless."""

    def __init__(self, config: RegexGuardConfig, pattern_base: float = LOOP_PATTERN_SECONDS) -> None:
        self.config = config
        self._pattern_base = pattern_base  # see LOOP_PATTERN_SECONDS
        self._patterns = tuple(
            (m.name, compile_pattern(m.pattern, config.case_sensitive)) for m in config.matches
        )
        self._entities: list[str] = []
        self._trigger: re.Pattern[str] | None = None
        self._threshold = config.score_threshold
        # Presidio entity -> (configured name, tie-break rank). Custom patterns rank first.
        self._labels: dict[str, tuple[str, int]] = {}
        self._engine = None
        if config.builtins:
            from . import presidio_engine

            for rank, name in enumerate(config.builtins, start=len(self._patterns)):
                self._labels.setdefault(presidio_engine.entity_for(name), (name, rank))
            self._entities = sorted(self._labels)
            self._language = presidio_engine.LANGUAGE
            self._engine = presidio_engine.get_engine(self._entities)
            self._trigger = presidio_engine.trigger_for(self._entities)

    @property
    def needs_presidio(self) -> bool:
        return self._engine is not None

    def label_for(self, entity: str) -> str:
        """The configured name a Presidio entity is masked as (`EMAIL` for EMAIL_ADDRESS)."""
        return self._labels[entity][0]

    @property
    def entities(self) -> list[str]:
        """The Presidio entities scanned for (EMAIL_ADDRESS, not the configured EMAIL)."""
        return list(self._entities)

    def scan(self, text: str, presidio_hint: str | None = None) -> list[Finding]:
        """Findings sorted by position, never overlapping (see `_resolve`).

        Presidio is skipped when the text (or `presidio_hint`, the part of it that can
        hold a new match) has none of the characters its entities need."""
        candidates: list[tuple[Finding, int]] = []
        views = normalize.views(text)
        # The original text first; a view that is the original adds nothing.
        pattern_views = (normalize.original(text), *(v for v in views if not v.original))
        for rank, (name, compiled) in enumerate(self._patterns):
            for view in pattern_views:
                try:
                    for m in compiled.finditer(
                        view.text, timeout=pattern_seconds(view.text, self._pattern_base)
                    ):
                        if m.end() > m.start():
                            start, end = view.span(m.start(), m.end())
                            candidates.append((Finding(name, start, end, CUSTOM_SCORE), rank))
                except TimeoutError:
                    raise PatternTimeout(name) from None
        # Most text cannot hold any of the entities at all (no digit, no '@'): skip Presidio.
        hint = text if presidio_hint is None else presidio_hint
        if (
            self._engine is not None
            and text
            and (self._trigger is None or self._trigger.search(normalize.detection_text(hint)))
        ):
            for view in views:
                results = self._engine.analyze(
                    text=view.text,
                    language=self._language,
                    entities=self._entities,
                    score_threshold=self._threshold,
                )
                for r in results:
                    if r.end > r.start:
                        name, rank = self._labels[r.entity_type]
                        start, end = view.span(r.start, r.end)
                        candidates.append((Finding(name, start, end, r.score), rank))
        return _resolve(candidates)

    def mask(self, text: str) -> tuple[str, list[Finding]]:
        """`text` with every finding replaced by `<NAME>`, and the findings (in `text`)."""
        findings = self.scan(text)
        if not findings:
            return text, findings
        parts: list[str] = []
        pos = 0
        for f in findings:
            parts += (text[pos : f.start], mask_label(f.entity))
            pos = f.end
        parts.append(text[pos:])
        return "".join(parts), findings


def mask_label(entity: str) -> str:
    """What a finding is replaced by: `<EMAIL>`, `<CC>`."""
    return f"<{entity}>"


def merge_findings(findings: list[Finding]) -> list[Finding]:
    """Findings from several scans of overlapping text, as one scan's: sorted, overlaps
    merged (`_resolve`, every finding ranked alike)."""
    return _resolve([(f, 0) for f in findings])


def _resolve(candidates: list[tuple[Finding, int]]) -> list[Finding]:
    """Merge overlapping candidates into one finding each.

    Candidates that overlap (share at least one character; touching is not overlapping),
    directly or through a chain, become one finding spanning all of them: dropping or
    trimming one instead would leave part of a detected value in the clear (a custom
    `card \\d{4}` overlapping a full card number must not unmask the other 12 digits).
    The merged finding is named after, and scored as, the longest candidate; ties go to
    the higher score, then the earlier config entry (custom matches before builtins),
    then the earlier start. The result is the same whatever order candidates come in.
    """
    candidates.sort(key=lambda c: (c[0].start, -c[0].end))
    findings: list[Finding] = []
    group: list[tuple[Finding, int]] = []
    group_end = -1
    for candidate in candidates:
        if group and candidate[0].start < group_end:
            group.append(candidate)
            group_end = max(group_end, candidate[0].end)
            continue
        if group:
            findings.append(_merge(group, group_end))
        group, group_end = [candidate], candidate[0].end
    if group:
        findings.append(_merge(group, group_end))
    return findings


def _merge(group: list[tuple[Finding, int]], end: int) -> Finding:
    best, _ = min(group, key=lambda c: (c[0].start - c[0].end, -c[0].score, c[1], c[0].start))
    if len(group) == 1:
        return best
    return Finding(best.entity, group[0][0].start, end, best.score)
