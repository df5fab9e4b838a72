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
- Cards in a card's own grouping (4-4-4-4, 4-4-4-4-1..3, 4-6-5, 4-6-4) joined by one
  other separator, the same throughout: a run of spaces, tabs or line breaks, or one of
  `/ _ | , * + : ~ · • ・ ー` and the like, with spaces around it or not
  ("4111  1111  1111  1111", "4111 - 1111 - 1111 - 1111", "4111/1111/1111/1111").
  The grouping is required: lists of numbers ("12, 34, 56, …") are not cards.
- SSNs written 3-2-4 with other separators, the same twice: `536 - 90 - 4399`,
  `536/90/4399`, `536_90_4399`, double spaces, tabs (Presidio's own pattern reads single
  spaces, dashes and dots). Presidio's rules for numbers never issued apply; scored as
  Presidio scores a separated SSN (0.5).
- Emails whose `@` is percent-encoded or an HTML character reference
  (`jane%40example.com` in a URL, `jane&#64;example.com`, `&#x40;`, `&commat;`), with a
  public or internal domain as for plain addresses.
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
from presidio_analyzer.predefined_recognizers import UsSsnRecognizer

from .presidio_engine import _TLD_EXTRACT, _CreditCardRecognizer, _OfflineEmailRecognizer, _PhoneRecognizer

# ---- cards --------------------------------------------------------------------------------

# Digit groups joined by single separators, not glued to a word on either side nor after a
# `+` (an international phone number). Possessive,
# so a run followed by a letter is no run at all rather than a shorter one.
_GROUPED_DIGITS = re.compile(r"(?<![\w+])\d++(?:[ .\-]\d++)*+(?!\w)")
_GROUP = re.compile(r"\d+")
# Separators people put between a card's groups besides a single space, dash or dot
# (those are `_GROUPED_DIGITS`' and Presidio's): a run of spaces, tabs or line breaks, or
# one punctuation mark or bullet with up to three spaces or tabs around it. Bounded, so a
# whole card fits the stream hold-back's 48 characters (holdback.CHAR_RUNS: 19 digits and
# 4 separators of at most 7). Not a comma: "4000, 5000, 6000, 7000" is a list.
_SEP = r"(?:[ \t]{0,3}[.\-/_|*+:~\u00b7\u2022\u2027\u2219\u22c5\u30fb\u30fc\uff65][ \t]{0,3}|[ \t\r\n]{1,4})"
# An SSN's: white space, or a dash, dot or underscore with spaces around it (9 digits and
# 2 separators of at most 7 fit the hold-back's 24). Not `/ , : + *`, which join lists of
# numbers and ratios ("512/32/4096", "128, 64, 1024").
_SSN_SEP = r"(?:[ \t]{0,3}[.\-_][ \t]{0,3}|[ \t\r\n]{1,4})"
# Digit groups in a card's grouping shape, the same separator between each. Not glued to a
# word, a `+` or a digit group with the same separator on either side; the sizes are
# checked by `_card_grouping`. Python's `re` has no possessive backreference groups, so
# the tail lookaheads keep a longer run from matching in part.
_SEPARATED_CARD = re.compile(
    rf"(?<![\w+])\d{{4}}(?P<sep>{_SEP})\d{{4,6}}(?:(?P=sep)\d{{1,5}}){{1,3}}(?!\w)(?!(?P=sep)\d)"
)
_SEPARATED_SSN = re.compile(
    rf"(?<![\w+])\d{{3}}(?P<sep>{_SSN_SEP})\d{{2}}(?P=sep)\d{{4}}(?!\w)(?!(?P=sep)\d)"
)
# The same groupings with white space between the groups, not the same run each time
# ("4111 1111 1111  1111": a stream's pieces, or text copied from a form).
_SPACE = r"[ \t\r\n]{1,4}"
_SPACED_CARD = re.compile(
    rf"(?<![\w+])\d{{4}}{_SPACE}\d{{4,6}}(?:{_SPACE}\d{{1,5}}){{1,3}}(?!\w)(?!{_SPACE}\d)"
)
_SPACED_SSN = re.compile(rf"(?<![\w+])\d{{3}}{_SPACE}\d{{2}}{_SPACE}\d{{4}}(?!\w)(?!{_SPACE}\d)")


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


def _card_grouping(sizes: list[int]) -> bool:
    """A card's own grouping: 4-4-4-4 (a last group of 1-3 more, 19 digits at most),
    or Amex/Diners 4-6-5, 4-6-4."""
    if sizes in ([4, 6, 5], [4, 6, 4]):
        return True
    return len(sizes) in (4, 5) and all(n == 4 for n in sizes[:4]) and (len(sizes) == 4 or sizes[4] <= 3)


def _separated_cards(text: str) -> list[tuple[int, int]]:
    """Spans of cards in a card's grouping with any one separator (see `_SEP`), or with
    white space of any length between the groups."""
    out = []
    for rx in (_SEPARATED_CARD, _SPACED_CARD):
        for m in rx.finditer(text):
            groups = _GROUP.findall(m.group())
            if _card_grouping([len(g) for g in groups]) and _card_like("".join(groups)):
                out.append((m.start(), m.end()))
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
        for start, end in _separated_cards(text):
            results.append(
                RecognizerResult(self.supported_entities[0], start, end, EntityRecognizer.MAX_SCORE)
            )
        return EntityRecognizer.remove_duplicates(results)


# ---- SSNs ---------------------------------------------------------------------------------


class SsnRecognizer(UsSsnRecognizer):
    """Presidio's US_SSN recognizer, plus 3-2-4 numbers joined by any one separator
    (`_SEP`, the same twice), judged by Presidio's rules for numbers never issued."""

    SCORE = 0.5  # Presidio's "SSN5 (medium)": a 3-2-4 number with separators

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
        regex_flags: int | None = None,
    ) -> list[RecognizerResult]:
        results = super().analyze(text, entities, nlp_artifacts, regex_flags)
        for rx in (_SEPARATED_SSN, _SPACED_SSN):
            for m in rx.finditer(text):
                if not self.invalidate_result(re.sub(r"\D", "", m.group())):
                    results.append(
                        RecognizerResult(self.supported_entities[0], m.start(), m.end(), self.SCORE)
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
# An address whose `@` is percent-encoded (a URL's query) or an HTML character reference.
# The local part may follow another percent-escape (`%20jane%40…`). Searched only from 64
# characters (a local part's limit) before each encoded `@`, not at every word.
_ENCODED_EMAIL = re.compile(
    r"(?:(?<![\w.+\-%])|(?<=%[0-9A-Fa-f]{2}))[\w+\-]+(?:\.[\w+\-]+)*"
    r"(?:%40|&#0*64;|&#[xX]0*40;|&commat;)"
    rf"(?P<host>(?>{_LABEL}(?:\.{_LABEL})*))(?![\w\-])"
)
# Text that may hold one (the EMAIL_ADDRESS trigger in presidio_engine matches these too).
ENCODED_AT = re.compile(r"%40|&#0*64;|&#[xX]0*40;|&commat;")

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
        last_end = -1
        for at in ENCODED_AT.finditer(text):  # searched only around each encoded `@`
            if at.start() < last_end:
                continue
            pos, m = max(0, last_end, at.start() - 64), None
            while (
                m := _ENCODED_EMAIL.search(text, pos, at.end() + 253)
            ) is not None and m.end() <= at.start():
                pos = m.start() + 1  # an address before this `@`: found, or not one
            if m is None or m.start() > at.start():
                continue
            score = email_domain_score(m.group("host"))
            if score:
                last_end = m.end()
                results.append(RecognizerResult(self.supported_entities[0], m.start(), m.end(), score))
        if "@" not in text:
            return EntityRecognizer.remove_duplicates(results)
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
