"""Offline Presidio analyzer engines for the regex prompt guard's builtins.

Presidio must never reach the network here: no spaCy model (a `NoOpNlpEngine`, since every
recognizer we load is a regex/checksum or phonenumbers one and needs no NLP artifacts) and
no public-suffix-list download (tldextract, used by the email recognizer).

An engine holds only the recognizers for the entities a policy asks for: fewer recognizers
means a faster analyze(), and the unused ones cannot cause false positives. Engines are
cached module-wide by entity set, so routes with the same builtins share one, and each is
warmed up when built: the first analyze() compiles regexes and loads phonenumbers metadata,
which costs 0.1-0.45 s, and must not land on a live request.

Importing this module imports presidio (about 1.2 s); regex_guard imports it only when a
policy configures builtins, so pure-regex policies never pay for it.
"""

from __future__ import annotations

import os

# tldextract reads this when it is first imported (presidio imports it), so it must be set
# before the presidio imports below. Our email recognizer does not depend on it (see
# _OfflineEmailRecognizer), but anything else in the process using tldextract does.
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

import inspect
import re
import threading
from collections.abc import Callable, Iterable
from functools import cache
from typing import Protocol, TypeVar

import regex
import tldextract
from presidio_analyzer import (
    AnalyzerEngine,
    EntityRecognizer,
    Pattern,
    PatternRecognizer,
    RecognizerRegistry,
    RecognizerResult,
    predefined_recognizers,
)
from presidio_analyzer.nlp_engine import NlpArtifacts, NoOpNlpEngine
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    PhoneRecognizer,
)

from .phone_recognizer import Covered, PhoneNumbers
from .scan_jobs import checkpoint

# The project's phone recognizer (recognizers.py extends it under this name).
_PhoneRecognizer = PhoneNumbers

LANGUAGE = "en"

# The names kgateway's promptGuard uses for its builtins, mapped to Presidio's entity names.
# Any other builtin must be spelled as a Presidio entity (IBAN_CODE, IP_ADDRESS, ...).
ALIASES = {
    "CREDIT_CARD": "CREDIT_CARD",
    "EMAIL": "EMAIL_ADDRESS",
    "PHONE_NUMBER": "PHONE_NUMBER",
    "SSN": "US_SSN",
}

# Recognizers from these packages are rule-based (regex, checksums, phonenumbers). The rest
# of predefined_recognizers are NER models or remote services: never loaded offline.
_RULE_BASED = (
    "presidio_analyzer.predefined_recognizers.generic.",
    "presidio_analyzer.predefined_recognizers.country_specific.",
)

# Holds one of each common entity, so warm-up exercises every code path a request will.
_WARMUP_TEXT = (
    "Warm-up: jane.doe@example.com, +1 212 555 0198, 020 7946 0958, card 4111 1111 1111 "
    "1111, SSN 536-90-4399, 2024-03-15, 10.0.0.1, GB82 WEST 1234 5698 7654 32."
)

# The bundled public suffix snapshot, no download and no disk cache (the default extractor
# writes under ~/.cache even with downloads disabled).
_TLD_EXTRACT = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)


# Presidio's email pattern is `\b(local)@domain\b`, tried at every word boundary: on text
# like "a.a.a.…" with an '@' that is not an address, each start scans to the '@' and fails,
# so the cost is quadratic (10 KB took 27 s). Its local part cannot contain '@', so each
# match belongs to one '@' and lies between the run of local-part characters before it and
# the domain after it. `_OfflineEmailRecognizer.analyze` searches only there, and only when
# a match is possible at all (a domain follows, the character before the '@' can end a
# local part): then the first start that can begin a match succeeds, in linear time.
_EMAIL_LOCAL_RUN = regex.compile(
    r"[!#$%&'*+\-/=?^_`{|}~.\w]+", regex.DOTALL | regex.MULTILINE | regex.IGNORECASE
)
_EMAIL_LOCAL_END = regex.compile(
    r"[!#$%&'*+\-/=?^_`{|}~\w]", regex.DOTALL | regex.MULTILINE | regex.IGNORECASE
)
_EMAIL_DOMAIN = regex.compile(
    r"@\w+(?:-+\w+)*(?:\.\w+(?:-+\w+)*)+\b", regex.DOTALL | regex.MULTILINE | regex.IGNORECASE
)


class _PatternSource(Protocol):
    """A Presidio pattern recognizer's patterns. Presidio sets `patterns` (and `name`) in
    its constructors in a way mypy cannot infer, so they are declared here and on the
    subclasses below."""

    patterns: list[Pattern]


class _OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's EmailRecognizer, validating the domain with the offline extractor, and
    searching only around each '@' (same matches, linear cost: see `_EMAIL_DOMAIN`)."""

    name: str
    patterns: list[Pattern]

    def validate_result(self, pattern_text: str) -> bool:
        return _TLD_EXTRACT(pattern_text).fqdn != ""

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
        regex_flags: int | None = None,
    ) -> list[RecognizerResult]:
        if "@" not in text:
            return []
        flags = regex_flags or self.global_regex_flags
        if flags is None:  # Presidio's own loop fails on this too (regex.compile(p, None))
            raise TypeError("no regex flags: pass regex_flags or set global_regex_flags")
        runs = {m.end(): m.start() for m in _EMAIL_LOCAL_RUN.finditer(text)}
        results: list[RecognizerResult] = []
        for pattern in self.patterns:
            compiled = regex.compile(pattern.regex, flags)  # the regex module caches it
            pos = 0  # as with finditer, a match starts after the previous one ends
            at = text.find("@")
            seen = 0
            while at >= 0:
                seen += 1
                if seen % 64 == 0:
                    checkpoint()
                start = max(runs.get(at, at), pos)
                domain = _EMAIL_DOMAIN.match(text, at)
                if at > start and domain is not None and _EMAIL_LOCAL_END.match(text, at - 1):
                    m = compiled.search(text, start, domain.end())
                    if m is not None and m.end() > m.start():
                        pos = m.end()
                        results += self._result(pattern, m, flags)
                at = text.find("@", at + 1)
        return EntityRecognizer.remove_duplicates(results)

    def _result(self, pattern: Pattern, m: regex.Match, flags: int) -> list[RecognizerResult]:
        """What Presidio's own pattern loop makes of a match (kept only if it validates)."""
        valid = self.validate_result(m.group())
        if not valid:
            return []
        explanation = self.build_regex_explanation(
            self.name, pattern.name, pattern.regex, pattern.score, valid, flags
        )
        return [
            RecognizerResult(
                self.supported_entities[0],
                m.start(),
                m.end(),
                EntityRecognizer.MAX_SCORE,
                analysis_explanation=explanation,
                recognition_metadata={
                    RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                    RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                },
            )
        ]


_CARD_RUN = re.compile(r"\d[\d \-]*\d")
_GROUP_START = re.compile(r"(?<![\d])\d")


class _CreditCardRecognizer(CreditCardRecognizer):
    """Presidio's CreditCardRecognizer, also finding a card right after other digits.

    Its regex is run with `finditer`, so in "4399 4111 1111 1111 1111" the first candidate
    ("4399 4111 1111 1111") fails the Luhn check and swallows the digits of the real card
    after it, which then leaks. Inside each digit run we try the card pattern again at
    every group start not already covered, and keep the candidates that validate.
    """

    patterns: list[Pattern]

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
        regex_flags: int | None = None,
    ) -> list[RecognizerResult]:
        results = super().analyze(text, entities, nlp_artifacts, regex_flags)
        pattern = re.compile(self.patterns[0].regex, re.DOTALL | re.MULTILINE | re.IGNORECASE)
        covered = Covered((r.start, r.end) for r in results)
        last_end = -1  # new finds come left to right, never overlapping: only the last can
        for n, run in enumerate(_CARD_RUN.finditer(text)):
            if n % 64 == 0:
                checkpoint()
            for group in _GROUP_START.finditer(text, run.start(), run.end()):
                m = pattern.match(text, group.start())
                if (
                    m is None
                    or m.end() > run.end()
                    or m.start() < last_end
                    or covered.overlaps(m.start(), m.end())
                ):
                    continue
                if self.validate_result(m.group()):
                    results.append(
                        RecognizerResult(
                            self.supported_entities[0], m.start(), m.end(), EntityRecognizer.MAX_SCORE
                        )
                    )
                    last_end = m.end()
        return results


_R = TypeVar("_R", bound=EntityRecognizer)


def _instantiate(cls: type[_R]) -> _R:
    """An instance of a predefined recognizer class, for English. Their constructors give
    every argument a default but the language (the abstract base's own constructor, which
    needs `supported_entities`, is not the one called)."""
    factory: Callable[..., _R] = cls
    return factory(supported_language=LANGUAGE)


@cache
def _recognizer_classes() -> dict[str, type[EntityRecognizer]]:
    """Presidio entity name -> the rule-based recognizer class that finds it.

    Discovered from the installed presidio rather than hard-coded, so an upgrade that adds
    recognizers makes them configurable. Every class is instantiated for English: the
    country-specific ones default to their own language, and our single no-op NLP engine
    is English. Their context words do not matter offline (no tokens to match them against).
    """
    found: dict[str, type[EntityRecognizer]] = {}
    for name in predefined_recognizers.__all__:
        cls = getattr(predefined_recognizers, name)
        if not (inspect.isclass(cls) and issubclass(cls, EntityRecognizer)):
            continue
        if not cls.__module__.startswith(_RULE_BASED):
            continue
        for entity in _instantiate(cls).supported_entities:
            found.setdefault(entity, cls)
    # Shape-based extensions of the three classes above (recognizers.py imports this module).
    from .recognizers import CardRecognizer, EmailRecognizer, PhoneRecognizer, SsnRecognizer

    found["US_SSN"] = SsnRecognizer
    found["EMAIL_ADDRESS"] = EmailRecognizer
    found["PHONE_NUMBER"] = PhoneRecognizer
    found["CREDIT_CARD"] = CardRecognizer
    return found


def builtin_names() -> list[str]:
    """Every name a policy may list under `builtins`, sorted."""
    return sorted(set(ALIASES) | set(_recognizer_classes()))


def entity_for(name: str) -> str:
    """A configured builtin name (any case) -> the Presidio entity; ValueError if unknown."""
    key = name.strip().upper()
    entity = ALIASES.get(key, key)
    if entity not in _recognizer_classes():
        raise ValueError(f"unknown builtin {name!r}; valid builtins: {', '.join(builtin_names())}")
    return entity


def best_offline_score(entity: str) -> float | None:
    """The highest score Presidio can give `entity` without an NLP model, or None if unknown.

    A pattern recognizer scores a match at its pattern's score, or 1.0 when it overrides
    validate_result (a checksum, say) and the match passes. Context words ("passport",
    "call") would raise low scores, but the no-op engine yields no tokens to find them in,
    so an entity whose patterns all score below the policy's threshold can never be found.
    """
    cls = _recognizer_classes()[entity]
    if issubclass(cls, PhoneRecognizer):
        return cls.SCORE  # every phonenumbers match gets this one score
    if not issubclass(cls, PatternRecognizer):
        return None
    if cls.validate_result is not PatternRecognizer.validate_result:
        return EntityRecognizer.MAX_SCORE
    recognizer: _PatternSource = _instantiate(cls)
    return max(pattern.score for pattern in recognizer.patterns)


# A character every match of the entity must contain. Text without any of them cannot hold
# a match, so Presidio is not called at all (most prose has no digit and no '@').
_REQUIRED_CHARS = {
    "CREDIT_CARD": r"\d",
    "US_SSN": r"\d",
    "PHONE_NUMBER": r"\d",
    "EMAIL_ADDRESS": r"@|%40|&#|&commat;",  # and an encoded `@` (recognizers.ENCODED_AT)
    "IBAN_CODE": r"\d",
    "US_BANK_NUMBER": r"\d",
    "US_ITIN": r"\d",
    "IP_ADDRESS": r"[\d:]",
    "UK_NHS": r"\d",
    "US_DRIVER_LICENSE": r"\d",
    "MEDICAL_LICENSE": r"\d",
}


def trigger_for(entities: Iterable[str]) -> re.Pattern[str] | None:
    """One regex that finds a required character of any of `entities`, or None when some
    entity has no such character (then Presidio always runs)."""
    parts = []
    for entity in entities:
        if entity not in _REQUIRED_CHARS:
            return None
        parts.append(_REQUIRED_CHARS[entity])
    return re.compile("|".join(sorted(set(parts))))


_engines: dict[frozenset[str], AnalyzerEngine] = {}
_engines_lock = threading.Lock()


def get_engine(entities: Iterable[str]) -> AnalyzerEngine:
    """The shared, warmed-up engine for exactly these Presidio entities (built on first use)."""
    key = frozenset(entities)
    if not key:
        raise ValueError("an analyzer engine needs at least one entity")
    # Held while building: two routes with the same builtins started in parallel must not
    # both pay for a build. Builds happen at start-up, so nothing waits on the hot path.
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = _build(key)
    return engine


def _build(entities: frozenset[str]) -> AnalyzerEngine:
    classes = _recognizer_classes()
    unknown = entities - classes.keys()
    if unknown:
        raise ValueError(f"unknown Presidio entities: {', '.join(sorted(unknown))}")
    # One instance per class, even if a class were to find several requested entities.
    recognizer_classes = dict.fromkeys(classes[entity] for entity in sorted(entities))
    recognizers = [_instantiate(cls) for cls in recognizer_classes]
    engine = AnalyzerEngine(
        registry=RecognizerRegistry(recognizers=recognizers, supported_languages=[LANGUAGE]),
        nlp_engine=NoOpNlpEngine(models=[{"lang_code": LANGUAGE, "model_name": "no_op"}]),
        supported_languages=[LANGUAGE],
    )
    engine.analyze(_WARMUP_TEXT, language=LANGUAGE, entities=sorted(entities))
    return engine
