"""Reading a prompt without understanding it: its words, and candidate values in it.

Words are compared stemmed (lower case, plural and possessive dropped), so 'Flights' meets
`search_flights`. Candidate values are what a property may want: proper nouns ("Paris",
"Ada Lovelace"; "in", "from" and "to" before one say it is a place), numbers with the words
around them ("3 days"), emails, URLs, ISO dates, quoted phrases. Regular expressions only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

STOPWORDS = frozenset(
    """a an the and or but if then else of to in on at by for with from into onto about as is
    are was were be been being do does did doing have has had having i me my mine we us our you
    your he him his she her it its they them their this that these those what which who whom
    whose when where why how there here can could would should will shall may might must please
    tell give show let like want need know get got set use using call run make just also any
    some all each every no not yes ok okay hi hello hey thank thanks up down out over so than
    too very more most much many again only own same such both few other nor whats don doesn
    isn aren didn won wasn weren tool function value input parameter return returns result
    answer json object key field string integer boolean array schema type respond reply
    output containing contain include including following""".split()
)
# Capitalized at a sentence's start but not a name.
_LEADING = STOPWORDS | frozenset(
    """find book search list create send write summarize summarise translate check look
    compute calculate convert schedule plan add remove delete update fetch retrieve draft
    extract classify describe explain compare""".split()
)
_NOT_NAMES_EXTRA = frozenset(
    """json api url uri http https xml yaml csv html sql id schema ok utc iso""".split()
)
_CALENDAR = frozenset(
    """monday tuesday wednesday thursday friday saturday sunday january february march april
    may june july august september october november december today tomorrow yesterday""".split()
)
_PLACE_CUES = frozenset("in at near around from to for visit via".split())
_WEAK_CUES = frozenset("in at near from".split())
_NOT_NAMES = STOPWORDS | _NOT_NAMES_EXTRA | _CALENDAR

_CONTRACTION = re.compile(r"['’](?:s|m|re|ve|ll|d|t)$")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:['’][a-z]+)?")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"https?://[^\s\"'<>)]+")
_DATETIME = re.compile(
    r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})(:\d{2}(?:\.\d+)?)?(Z|[+-]\d{2}:\d{2})?"
)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.]*\d)")
_QUOTED = re.compile(r"[\"“]([^\"”\n]{2,80})[\"”]|(?<!\w)'([^'\n]{2,80})'(?!\w)")


def stem(word: str) -> str:
    """Lowercase, possessive and plural dropped: 'Flights' and 'flight' are one word."""
    word = _CONTRACTION.sub("", word.lower())
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def split_name(name: str) -> list[str]:
    """'get_weather', 'getWeather', 'search-flights' → their words, stemmed."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced)
    return [stem(w) for w in re.findall(r"[A-Za-z]+|\d+", spaced)]


def content_words(text: str) -> list[str]:
    """The prompt's words that carry meaning, stemmed, in order, each once."""
    seen: dict[str, None] = {}
    for match in _WORD.finditer(text):
        word = stem(match.group())
        if word not in STOPWORDS and len(word) > 1:
            seen.setdefault(word, None)
    return list(seen)


@dataclass(slots=True)
class Hints:
    """Candidate values found in a prompt."""

    text: str = ""
    seed: int = 0
    proper: list[str] = field(default_factory=list)  # names and places, in order
    places: list[str] = field(default_factory=list)  # proper nouns after in/at/from/to/...
    after: dict[str, str] = field(default_factory=dict)  # "from"/"to" → the name after it
    numbers: list[tuple[float, str, str]] = field(default_factory=list)  # value, before, after
    emails: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    dates: list[str] = field(default_factory=list)
    datetimes: list[str] = field(default_factory=list)
    quoted: list[str] = field(default_factory=list)
    weak_places: list[str] = field(default_factory=list)  # lower-case words after in/at/...
    words: list[str] = field(default_factory=list)  # content words, stemmed (to match)
    terms: list[str] = field(default_factory=list)  # the same words as written (to show)

    @classmethod
    def of(cls, text: str, seed: int = 0) -> Hints:
        text = text.strip()[:4000]  # values come from the gist of a prompt, not a whole book
        hints = cls(text=text, seed=seed)
        if not text:
            return hints
        hints.emails = _EMAIL.findall(text)
        hints.urls = [u.rstrip(".,;:!?") for u in _URL.findall(text)]
        hints.datetimes = [
            f"{day}T{clock}{seconds or ':00'}{zone or 'Z'}"
            for day, clock, seconds, zone in _DATETIME.findall(text)
        ]
        hints.dates = _DATE.findall(text)
        hints.quoted = [a or b for a, b in _QUOTED.findall(text)]
        masked = text
        for pattern in (_URL, _EMAIL, _DATETIME, _DATE):
            masked = pattern.sub(lambda m: " " * len(m.group()), masked)
        hints._names(masked)
        hints._numbers(masked)
        for match in _WORD.finditer(masked):
            word = re.sub(r"['’]s$", "", match.group())
            key = stem(word)
            if key not in STOPWORDS and len(key) > 1 and key not in hints.words:
                hints.words.append(key)
                hints.terms.append(word)
        return hints

    def _names(self, text: str) -> None:
        # Runs of capitalized words ("New York"). A sentence's first word counts unless it is a
        # common word ("What's", "Find"), and comes after the names found within sentences.
        runs: list[tuple[list[str], bool, str]] = []  # words, sentence-initial, word before
        weak: list[str] = []
        current: list[str] | None = None
        previous, previous_end = "", 0
        for match in _WORD.finditer(text):
            word = re.sub(r"['’]s$", "", match.group())
            start, lower = match.start(), stem(word)
            if word[0].isupper() and lower not in _NOT_NAMES:
                if current is not None and text[previous_end:start] == " " and len(current) < 4:
                    current.append(word)
                else:
                    before = text[:start].rstrip()
                    initial = not before or before[-1] in '.!?\n"“:'
                    current = None if initial and lower in _LEADING else [word]
                    if current is not None:
                        runs.append((current, initial, previous.lower()))
            else:
                current = None
                if previous.lower() in _WEAK_CUES and lower not in _LEADING and len(word) > 2:
                    weak.append(word.capitalize())  # "weather in london"
            previous, previous_end = word, match.end()
        self.weak_places = weak
        for demoted in (False, True):
            for run, initial, before in runs:
                name = " ".join(run)
                # A sentence's first word may be any word ("Weather in Paris?"); a run of
                # them ("Ada Lovelace is ...") is a name.
                if (initial and len(run) == 1) != demoted or name in self.proper:
                    continue
                self.proper.append(name)
                if before in _PLACE_CUES:
                    self.places.append(name)
                    if before in ("from", "to"):
                        self.after.setdefault(before, name)

    def _numbers(self, text: str) -> None:
        for match in _NUMBER.finditer(text):
            raw = match.group()
            value: float = float(raw) if "." in raw else int(raw)
            before = _WORD.findall(text[max(0, match.start() - 24) : match.start()])
            after = _WORD.findall(text[match.end() : match.end() + 24])
            self.numbers.append(
                (value, stem(before[-1]) if before else "", stem(after[0]) if after else "")
            )
