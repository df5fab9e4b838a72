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

import inspect  # noqa: E402
import re  # noqa: E402
import threading  # noqa: E402
from collections.abc import Iterable  # noqa: E402
from functools import cache  # noqa: E402

import tldextract  # noqa: E402
from presidio_analyzer import (  # noqa: E402
    AnalyzerEngine,
    EntityRecognizer,
    PatternRecognizer,
    RecognizerRegistry,
    RecognizerResult,
    predefined_recognizers,
)
from presidio_analyzer.nlp_engine import NoOpNlpEngine  # noqa: E402
from presidio_analyzer.predefined_recognizers import (  # noqa: E402
    CreditCardRecognizer,
    EmailRecognizer,
    PhoneRecognizer,
)

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


class _OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's EmailRecognizer, validating the domain with the offline extractor."""

    def validate_result(self, pattern_text: str) -> bool:
        return _TLD_EXTRACT(pattern_text).fqdn != ""


# A run of the characters phonenumbers reads as one candidate, and a short trailing group.
_DIGIT_RUN = re.compile(r"\+?\(?\d[\d ().\-]*\d")
_SHORT_TAIL = re.compile(r"(.*?[\d)])[ .\-]+\d{1,2}")
_PHONE_SEPARATOR = re.compile(r"[-.()+]")


class _PhoneRecognizer(PhoneRecognizer):
    """Presidio's PhoneRecognizer, plus numbers followed by a short, unrelated number.

    phonenumbers reads "(212) 555-0198 7" in "call (212) 555-0198 7 days a week" as one
    candidate, fails to parse it, and reports nothing: the number leaks. (Likewise
    "+44 20 7946 0958 24 hours"; "212-555-0198 7 days" happens to survive.) For each digit
    run nothing was found in, we drop up to two trailing 1-2 digit groups and try again.
    Only such short groups: dropping a 4-digit group would find "phone numbers" inside
    card-length order numbers.
    """

    def analyze(self, text, entities, nlp_artifacts=None):  # noqa: D102
        results = super().analyze(text, entities, nlp_artifacts)
        for run in _DIGIT_RUN.finditer(text):
            if any(r.start < run.end() and run.start() < r.end for r in results):
                continue
            chunk = run.group()
            for _ in range(2):
                tail = _SHORT_TAIL.fullmatch(chunk)
                if tail is None:
                    break
                chunk = tail.group(1)
                found = super().analyze(chunk, entities, nlp_artifacts)
                for r in found:
                    r.start, r.end = r.start + run.start(), r.end + run.start()
                if found:
                    results += found
                    break
        results += self._adjacent_numbers(text, entities, nlp_artifacts, results)
        return EntityRecognizer.remove_duplicates(results)

    def _adjacent_numbers(self, text, entities, nlp_artifacts, results) -> list:
        """Numbers written next to each other ("(212) 555-0198 (212) 555-0198", or a number
        then a card) are one candidate to phonenumbers, which then finds none of them.
        In a run nothing covers, try whitespace-separated token spans (longest first) that
        look like a phone number: 10-20 characters with a phone separator (- . ( ) +).
        Space-only digit groups (cards, order numbers) are never split into phones."""
        found = []
        for run in _DIGIT_RUN.finditer(text):
            tokens = [(m.start() + run.start(), m.end() + run.start())
                      for m in re.finditer(r"\S+", run.group())]
            if len(tokens) < 2:
                continue
            i = 0
            while i < len(tokens):
                matched = False
                for j in range(min(len(tokens), i + 5) - 1, i - 1, -1):
                    start, end = tokens[i][0], tokens[j][1]
                    span = text[start:end]
                    if not 10 <= len(span) <= 20 or not _PHONE_SEPARATOR.search(span):
                        continue
                    if any(r.start < end and start < r.end for r in results + found):
                        continue
                    hits = super().analyze(span, entities, nlp_artifacts)
                    if any(h.start == 0 and h.end == len(span) for h in hits):
                        hit = next(h for h in hits if h.start == 0 and h.end == len(span))
                        hit.start, hit.end = start, end
                        found.append(hit)
                        i = j + 1
                        matched = True
                        break
                if not matched:
                    i += 1
        return found


_CARD_RUN = re.compile(r"\d[\d \-]*\d")
_GROUP_START = re.compile(r"(?<![\d])\d")


class _CreditCardRecognizer(CreditCardRecognizer):
    """Presidio's CreditCardRecognizer, also finding a card right after other digits.

    Its regex is run with `finditer`, so in "4399 4111 1111 1111 1111" the first candidate
    ("4399 4111 1111 1111") fails the Luhn check and swallows the digits of the real card
    after it, which then leaks. Inside each digit run we try the card pattern again at
    every group start not already covered, and keep the candidates that validate.
    """

    def analyze(self, text, entities, nlp_artifacts=None):  # noqa: D102
        results = super().analyze(text, entities, nlp_artifacts)
        pattern = re.compile(self.patterns[0].regex, re.DOTALL | re.MULTILINE | re.IGNORECASE)
        taken = [(r.start, r.end) for r in results]
        for run in _CARD_RUN.finditer(text):
            for group in _GROUP_START.finditer(text, run.start(), run.end()):
                m = pattern.match(text, group.start())
                if m is None or m.end() > run.end() or any(s < m.end() and m.start() < e for s, e in taken):
                    continue
                if self.validate_result(m.group()):
                    results.append(RecognizerResult(self.supported_entities[0], m.start(), m.end(),
                                                    EntityRecognizer.MAX_SCORE))
                    taken.append((m.start(), m.end()))
        return results


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
        for entity in cls(supported_language=LANGUAGE).supported_entities:
            found.setdefault(entity, cls)
    found["EMAIL_ADDRESS"] = _OfflineEmailRecognizer
    found["PHONE_NUMBER"] = _PhoneRecognizer
    found["CREDIT_CARD"] = _CreditCardRecognizer
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
    recognizer = cls(supported_language=LANGUAGE)
    return max(pattern.score for pattern in recognizer.patterns)


# A character every match of the entity must contain. Text without any of them cannot hold
# a match, so Presidio is not called at all (most prose has no digit and no '@').
_REQUIRED_CHARS = {
    "CREDIT_CARD": r"\d", "US_SSN": r"\d", "PHONE_NUMBER": r"\d", "EMAIL_ADDRESS": "@",
    "IBAN_CODE": r"\d", "US_BANK_NUMBER": r"\d", "US_ITIN": r"\d", "IP_ADDRESS": r"[\d:]",
    "UK_NHS": r"\d", "US_DRIVER_LICENSE": r"\d", "MEDICAL_LICENSE": r"\d",
}


def trigger_for(entities: Iterable[str]) -> re.Pattern | None:
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
    recognizers = [cls(supported_language=LANGUAGE) for cls in recognizer_classes]
    engine = AnalyzerEngine(
        registry=RecognizerRegistry(recognizers=recognizers, supported_languages=[LANGUAGE]),
        nlp_engine=NoOpNlpEngine(models=[{"lang_code": LANGUAGE, "model_name": "no_op"}]),
        supported_languages=[LANGUAGE],
    )
    engine.analyze(_WARMUP_TEXT, language=LANGUAGE, entities=sorted(entities))
    return engine
