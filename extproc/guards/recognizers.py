"""Shape-based additions to Presidio's recognizers for CREDIT_CARD, EMAIL_ADDRESS and
PHONE_NUMBER: the written forms that normalisation (`normalize.py`) cannot turn into
something Presidio already reads.

The seed's builtins are shape-based: a value is masked because it looks like one, not
because it is assigned. Each class here extends the project's recognizer for its entity
(`presidio_engine`) and adds its own findings; Presidio's deduplication and the guard's
merging of overlaps (`regex_guard._resolve`) make one finding of both.

- Cards in any grouping: digit groups joined by single spaces, dashes or dots
  ("4111.1111.1111.1111", "41 1111 1111 1111 11", "4 1 1 1 …"). Still a card only if it
  has 13-19 digits, an issuer prefix (2221-2720, 3, 4, 5, 6) and a valid Luhn checksum.
- Emails with a quoted local part (`"john doe"@example.com`), an IP-literal domain
  (`jane@[192.168.0.1]`, `jane@[IPv6:2001:db8::1]`), a single-label internal domain
  (`admin@intranet`, `root@localhost`) or a special-use / internal suffix
  (`jane@corp.internal`, `ops@db.local`). Single labels that are package tags or digest
  names (`react@latest`, `image@sha256:…`) are not addresses.
- North American numbers of phone shape whatever their digits: area or exchange codes
  starting with 0 or 1, 555 numbers, `+1`/`1-` prefixes. phonenumbers rejects numbers
  that cannot be assigned; the shape is what leaks. Only written with separators or
  parentheses (or `+1` and ten digits): a bare ten-digit run is an order number or a
  timestamp as often as a phone number.

False positives are measured in tests/unit/test_guard_recall.py (a benign corpus of
prose, versions, dates, prices, ids, IPs, code).
"""

from __future__ import annotations

import ipaddress
import re

from presidio_analyzer import EntityRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from .presidio_engine import _TLD_EXTRACT, _CreditCardRecognizer, _OfflineEmailRecognizer, _PhoneRecognizer

# ---- cards --------------------------------------------------------------------------------

# Digit groups joined by single separators, not glued to a word on either side nor after a
# `+` (an international phone number). Possessive,
# so a run followed by a letter is no run at all rather than a shorter one.
_GROUPED_DIGITS = re.compile(r"(?<![\w+])\d++(?:[ .\-]\d++)*+(?!\w)")
_GROUP = re.compile(r"\d+")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _issuer_prefix(digits: str) -> bool:
    """A card network's prefix: Amex/Diners/JCB 3, Visa 4, Mastercard/Maestro 5,
    Discover/UnionPay/Maestro 6, Mastercard 2221-2720."""
    return digits[0] in "3456" or 2221 <= int(digits[:4]) <= 2720


def _card_like(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and _issuer_prefix(digits) and luhn_valid(digits)


def _windows(groups: list[tuple[int, int]], seps: list[str]) -> list[tuple[int, int]]:
    """Group index ranges [a, b] worth checking in one run: the whole run, and each longest
    stretch joined by one kind of separator (a card after a date: "2024-03-15 4111 …")."""
    out = [(0, len(groups) - 1)]
    a = 0
    for k in range(1, len(seps)):
        if seps[k] != seps[k - 1]:
            out.append((a, k))
            a = k
    if a:
        out.append((a, len(groups) - 1))
    return out


class CardRecognizer(_CreditCardRecognizer):
    """The project's CREDIT_CARD recognizer, plus Luhn-valid cards in any grouping."""

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
        regex_flags: int | None = None,
    ) -> list[RecognizerResult]:
        results = super().analyze(text, entities, nlp_artifacts, regex_flags)
        for run in _GROUPED_DIGITS.finditer(text):
            groups = [(m.start() + run.start(), m.end() + run.start()) for m in _GROUP.finditer(run.group())]
            if sum(e - s for s, e in groups) < 13:
                continue
            seps = [text[groups[k][1]] for k in range(len(groups) - 1)]
            sizes = [0]
            for s, e in groups:
                sizes.append(sizes[-1] + e - s)
            for a, b in _windows(groups, seps):
                if not 13 <= sizes[b + 1] - sizes[a] <= 19:
                    continue
                start, end = groups[a][0], groups[b][1]
                if _card_like(re.sub(r"\D", "", text[start:end])):
                    results.append(
                        RecognizerResult(self.supported_entities[0], start, end, EntityRecognizer.MAX_SCORE)
                    )
        return EntityRecognizer.remove_duplicates(results)


# ---- emails -------------------------------------------------------------------------------

# A quoted local part: printable, escapes allowed, at most 64 characters (RFC 5321). The
# opening quote is not glued to a word and is not followed by a space, so the closing quote
# of quoted prose ("said "hi" and") does not open one. The stream hold-back waits on text
# matching this (extproc/guards/holdback.py).
QUOTED_LOCAL_PART = r'(?<![\w"])"(?=[^\s"])(?:[^"\\\r\n]|\\[^\r\n]){1,64}"'
_ATOM_LOCAL_PART = r"(?<![\w!#$%&'*+/=?^`{|}~.\-])[\w!#$%&'*+/=?^`{|}~\-]+(?:\.[\w!#$%&'*+/=?^`{|}~\-]+)*"
_LABEL = r"[^\W_](?:[\w\-]{0,61}[^\W_])?"
_EMAIL = re.compile(
    rf"(?:{QUOTED_LOCAL_PART}|{_ATOM_LOCAL_PART})@"
    rf"(?:\[(?P<literal>[^\]\s]{{1,64}})\]|(?P<host>(?>{_LABEL}(?:\.{_LABEL})*))(?![\w\-]))"
)
# Special-use and private-use suffixes (RFC 2606, 6761, 6762, 8375; ICANN's .internal) and
# the ones companies use internally. Public suffixes are recognised by tldextract.
INTERNAL_SUFFIXES = frozenset(
    {
        "internal",
        "local",
        "localhost",
        "localdomain",
        "lan",
        "home",
        "corp",
        "intranet",
        "private",
        "test",
        "example",
        "invalid",
        "arpa",
        "intra",
        "priv",
    }
)
# Single labels after an `@` that name a version, tag or digest rather than a mail host.
NOT_HOSTS = frozenset(
    {
        "latest",
        "next",
        "beta",
        "alpha",
        "canary",
        "rc",
        "stable",
        "lts",
        "dev",
        "nightly",
        "edge",
        "main",
        "master",
        "head",
        "experimental",
        "insiders",
        "preview",
        "current",
    }
)
_NOT_HOST = re.compile(r"v?\d\w*|sha\d+|md5")


def _literal_ok(literal: str) -> bool:
    """`[192.168.0.1]` or `[IPv6:2001:db8::1]`."""
    try:
        if literal[:5].lower() == "ipv6:":
            ipaddress.IPv6Address(literal[5:])
        else:
            ipaddress.IPv4Address(literal)
    except ValueError:
        return False
    return True


def email_domain_score(host: str) -> float:
    """How surely `host` is a mail domain: 1.0 for a public suffix, 0.5 for an internal
    one or a single label, 0 for none (`react@latest`, `pkg@1.2.3`, `icon@2x.png`)."""
    labels = host.lower().split(".")
    if len(labels) > 1:
        if _TLD_EXTRACT(host).fqdn:
            return EntityRecognizer.MAX_SCORE
        return 0.5 if labels[-1] in INTERNAL_SUFFIXES else 0.0
    label = labels[0]
    if (
        len(label) < 2
        or label in NOT_HOSTS
        or _NOT_HOST.fullmatch(label)
        or not any(c.isalpha() for c in label)
    ):
        return 0.0
    return 0.5


class EmailRecognizer(_OfflineEmailRecognizer):
    """The project's EMAIL_ADDRESS recognizer, plus quoted local parts, IP-literal domains
    and internal domains."""

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
        regex_flags: int | None = None,
    ) -> list[RecognizerResult]:
        results = super().analyze(text, entities, nlp_artifacts, regex_flags)
        if "@" not in text:
            return results
        for m in _EMAIL.finditer(text):
            if m.group("literal") is not None:
                score = EntityRecognizer.MAX_SCORE if _literal_ok(m.group("literal")) else 0.0
            else:
                score = email_domain_score(m.group("host"))
            if score:
                results.append(RecognizerResult(self.supported_entities[0], m.start(), m.end(), score))
        return EntityRecognizer.remove_duplicates(results)


# ---- phone numbers ------------------------------------------------------------------------

# NANP: optional +1 / 1 prefix, area code (in parentheses, or followed by a separator),
# exchange, line; not glued to a word or a `+`, not followed by a word or by a separator
# and a digit. A bare area code must not continue a number written with the same
# separator ("4111 111 111 1112" holds no phone number; "100-555-0198 100-555-0198" holds
# two); after `+1` or in parentheses it starts one.
_NANP = re.compile(
    r"(?<![\w+])"
    r"(?:\+\s?1[ .\-]?(?:\(\d{3}\)[ .\-]?|\d{3}[ .\-/])"
    r"|(?:1[ .\-]?)?\(\d{3}\)[ .\-]?"
    r"|(?<!\d[.\-/ ])1[ .\-]\d{3}[ .\-/]"
    r"|(?!(?<=\d )\d{3} |(?<=\d-)\d{3}-|(?<=\d\.)\d{3}\.|(?<=\d/)\d{3}/)\d{3}[ .\-/])"
    r"\d{3}[ .\-]?\d{4}(?!\w)(?![.\-/]\d)"
    r"|(?<![\w+])\+1\d{10}(?!\w)"
)
_DIGIT = re.compile(r"\d")


class PhoneRecognizer(_PhoneRecognizer):
    """The project's PHONE_NUMBER recognizer, plus North American numbers by shape."""

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        if _DIGIT.search(text) is None:  # every match holds one: skip the scans (emails in prose)
            return []
        results = super().analyze(text, entities, nlp_artifacts)
        for m in _NANP.finditer(text):
            results.append(RecognizerResult(self.supported_entities[0], m.start(), m.end(), self.SCORE))
        return EntityRecognizer.remove_duplicates(results)
