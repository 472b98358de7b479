"""The cue list: versioned distress and coercion cues, each with English examples and lexical patterns.

The default is ``cues.yaml`` beside this module; ``AIMA_CUES_FILE`` names a file that replaces it
(same format, YAML or JSON). The file is read and validated once, when the function starts: a file
that is missing, not YAML, or breaks a rule below stops the start with one line naming the file and
the offending entry::

    aima: invalid setting AIMA_CUES_FILE: /etc/aima/cues.yaml: cues.2.patterns.de.0: not a regular
    expression: missing ), unterminated subpattern at position 4

Rules: ``version`` >= 1; ``semantic_threshold`` and ``lexical_confidence`` in [0, 1]; at least one
cue; cue ids unique (lowercase letters, digits and ``-``); ``category`` ``distress`` or
``coercion``; each cue has English ``examples`` or ``patterns`` or both; pattern languages are ISO
639-1 codes; every pattern compiles. See docs/search-and-cues.md.

A tenant's own phrases (runtime configuration, section ``phrases``) add lexical-only cues to the list
at each event (`TenantPhrases`, `PhraseCue`); they never replace or remove a cue of the list.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from aima.settings import SettingsError

DEFAULT_FILE = Path(__file__).with_name("cues.yaml")
SETTING = "AIMA_CUES_FILE"

Category = Literal["distress", "coercion"]
Language = Annotated[str, StringConstraints(pattern=r"^[a-z]{2}$")]
Example = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=300)]
Pattern = Annotated[str, StringConstraints(min_length=1, max_length=500)]

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'", "\u00b4": "'"})
_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+(?:'\w+)*")


def normalise(text: str) -> str:
    """The text lexical patterns see: NFC, lower case, plain apostrophes, single spaces."""
    folded = unicodedata.normalize("NFC", text).lower().translate(_APOSTROPHES)
    return _SPACE.sub(" ", folded).strip()


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LexicalMatch(_Model):
    """Which pattern of a cue matched, and the words it matched."""

    language: str
    pattern: str
    words: str


class Cue(_Model):
    """One cue: what it is, examples of its meaning in English, and patterns per language."""

    id: str = Field(pattern=r"^[a-z][a-z0-9-]{1,63}$")
    category: Category
    label: str = Field(min_length=1, max_length=100, description="what a match may be, e.g. 'a threat'")
    examples: list[Example] = Field(default_factory=list, max_length=100)
    patterns: dict[Language, list[Pattern]] = Field(default_factory=dict)
    threshold: float | None = Field(default=None, ge=0, le=1, description="overrides the list's")

    @model_validator(mode="after")
    def _usable(self) -> Cue:
        if not self.examples and not any(self.patterns.values()):
            raise ValueError(f"cue {self.id} has neither examples nor patterns")
        for language, patterns in self.patterns.items():
            for index, pattern in enumerate(patterns):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ValueError(
                        f"cue {self.id}: patterns.{language}.{index}: not a regular expression: {exc}"
                    ) from None
        return self

    @cached_property
    def _compiled(self) -> dict[str, list[tuple[str, re.Pattern[str]]]]:
        return {
            language: [(pattern, re.compile(pattern, re.IGNORECASE)) for pattern in patterns]
            for language, patterns in self.patterns.items()
        }

    def match_text(self, text: str, language: str | None) -> LexicalMatch | None:
        """The first pattern of ``language`` (every language's, if it is unknown) found in ``text``."""
        normalised = normalise(text)
        if not normalised:
            return None
        languages = [language] if language is not None else sorted(self._compiled)
        for code in languages:
            for pattern, compiled in self._compiled.get(code, []):
                found = compiled.search(normalised)
                if found is not None:
                    return LexicalMatch(language=code, pattern=pattern, words=found.group(0).strip())
        return None


class PhraseCue(Cue):
    """One phrase of a tenant's runtime configuration, matched like a pattern of its language.

    Id ``tenant-phrase:<category>:<language>:<n>`` (n: the phrase's place in that language's list,
    from 1); the colons keep it apart from every cue id a list may have. ``phrase`` is the phrase as
    the tenant wrote it; its one pattern is `phrase_pattern`'s, in its language only.
    """

    id: str = Field(pattern=r"^tenant-phrase:(distress|coercion):[a-z]{2}:[1-9][0-9]*$")
    phrase: str = Field(min_length=1)
    language: Language


def phrase_pattern(phrase: str) -> str | None:
    """The regular expression of a tenant phrase: its words (`normalise`d; an apostrophe inside a word
    belongs to it), whole, in order, with any spaces or punctuation between them. None: no words."""
    words = _WORD.findall(normalise(phrase))
    if not words:
        return None
    return r"(?<!\w)" + r"\W+".join(re.escape(word) for word in words) + r"(?!\w)"


@dataclass(frozen=True)
class TenantPhrases:
    """A tenant's ``phrases`` section (``{language: [phrase]}`` per category) and where it came from:
    ``level`` ``tenant`` or ``global`` and that level's ``version``, None when not known (nothing stored:
    the defaults; or a change in flight while it was read)."""

    distress: Mapping[str, Sequence[str]] = field(default_factory=dict)
    coercion: Mapping[str, Sequence[str]] = field(default_factory=dict)
    level: Literal["tenant", "global"] | None = None
    version: int | None = None

    def cues(self) -> list[PhraseCue]:
        """One lexical cue per phrase, distress first; a phrase without words, or repeating an earlier
        one of its category and language, is skipped (its place still counts: the others keep their ids)."""
        found: list[PhraseCue] = []
        categories: tuple[tuple[Category, Mapping[str, Sequence[str]]], ...] = (
            ("distress", self.distress),
            ("coercion", self.coercion),
        )
        for category, by_language in categories:
            for language in sorted(by_language):
                seen: set[str] = set()
                for number, phrase in enumerate(by_language[language], start=1):
                    pattern = phrase_pattern(phrase)
                    if pattern is None or pattern in seen:
                        continue
                    seen.add(pattern)
                    found.append(
                        PhraseCue(
                            id=f"tenant-phrase:{category}:{language}:{number}",
                            category=category,
                            label=f"a {category} phrase",
                            patterns={language: [pattern]},
                            phrase=phrase,
                            language=language,
                        )
                    )
        return found


class CueList(_Model):
    """A versioned list of cues and the thresholds it was calibrated with."""

    version: int = Field(ge=1)
    semantic_threshold: float = Field(ge=0, le=1, description="minimum cosine similarity to an example")
    lexical_confidence: float = Field(default=0.65, ge=0, le=1, description="confidence of a pattern match")
    cues: list[Cue] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> CueList:
        seen: set[str] = set()
        for cue in self.cues:
            if cue.id in seen:
                raise ValueError(f"cue id {cue.id!r} appears twice")
            seen.add(cue.id)
        return self

    def threshold(self, cue: Cue) -> float:
        return cue.threshold if cue.threshold is not None else self.semantic_threshold

    @property
    def examples(self) -> list[tuple[Cue, str]]:
        """Every (cue, example), in list order: what the example vectors are computed for."""
        return [(cue, example) for cue in self.cues for example in cue.examples]


class CueSettings(BaseSettings):
    """``AIMA_CUES_FILE``: a cue list replacing the packaged one."""

    model_config = SettingsConfigDict(env_prefix="AIMA_CUES_", extra="ignore")

    file: Path | None = None


class CueListError(SettingsError):
    """The cue list cannot be used; one line naming the file and what is wrong with it."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(SETTING, f"{path}: {reason}")


def load_cue_list(path: Path | None = None) -> CueList:
    """The cue list in ``path`` (default: ``AIMA_CUES_FILE``, else the packaged list); `CueListError`."""
    if path is None:
        path = CueSettings().file or DEFAULT_FILE
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CueListError(path, f"cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
    data = _parse(path, raw)
    try:
        return CueList.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error.get("loc", ()))
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        raise CueListError(path, f"{where}: {message}" if where else message) from None


def _parse(path: Path, raw: str) -> Any:
    if path.suffix == ".json":
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise CueListError(path, f"not JSON: {exc}") from None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise CueListError(path, f"not YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
