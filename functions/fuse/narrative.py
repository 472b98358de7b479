"""The report's narrative: sentences built from the facts, each citing the entries it rests on.

Without a language model (`deterministic`), a fixed set of sentences is written from the report:
what the case holds, who speaks and in which languages, who appears and with whom, every
indicator for review, and every gap. With a narrator configured (`from_model`), the model gets only
the report's entries as facts (id, text, evidence) and must cite fact ids for every sentence; a
sentence citing nothing or an id that is not a fact is dropped and counted in ``dropped``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from aima.domain import ModelRef
from aima.reports.model import CaseReport, NarrativeSection, Statement
from inference.tasks.text import Fact, Narrative, NarrativeInput

MAX_FACTS = 400
KINDS = {"audio": "audio recording", "video": "video", "image": "image"}
LANGUAGES = {"en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian", "nl": "Dutch"}
STEPS = {"phrases": "the spoken-cue check", "vision": "the vision model", "pose": "the pose model"}


def deterministic(report: CaseReport) -> NarrativeSection:
    """Sentences from the report's own entries; every one cites at least one id."""
    out: list[Statement] = []
    kinds = Counter(f.kind or "file" for f in report.files)
    parts = ", ".join(f"{n} {KINDS.get(k, k)}{'s' if n != 1 else ''}" for k, n in sorted(kinds.items()))
    if not report.files:
        return NarrativeSection(generator="deterministic", statements=[])
    out.append(
        Statement(
            text=f"The case holds {len(report.files)} file(s): {parts}.",
            citations=[f.id for f in report.files],
        )
    )
    for speaker in report.speakers:
        said = [e.id for e in report.timeline if e.kind == "speech" and e.speaker_id == speaker.id]
        if not said:
            continue
        languages = " and ".join(LANGUAGES.get(code, code) for code in speaker.languages)
        languages = languages or "an undetermined language"
        out.append(
            Statement(
                text=f"{speaker.name} speaks for {speaker.seconds:.0f} s in {', '.join(speaker.files)}, in "
                f"{languages}.",
                citations=said[:12],
            )
        )
    unattributed = [e.id for e in report.timeline if e.kind == "speech" and e.speaker_id is None]
    if unattributed:
        out.append(
            Statement(
                text=f"{len(unattributed)} speech segment(s) could not be attributed to a case speaker.",
                citations=unattributed[:12],
            )
        )
    for person in report.persons:
        files = sorted({a.file for a in person.appearances}, key=lambda f: int(f[1:]))
        text = f"{person.name} appears in {', '.join(files)}"
        if person.co_occurrences:
            text += ", together with " + ", ".join(
                next((p.name for p in report.persons if p.id == c.person), c.person)
                for c in person.co_occurrences
            )
        out.append(Statement(text=text + ".", citations=[person.id]))
        if person.voice_name and person.said:
            out.append(
                Statement(
                    text=f"The voice of {person.voice_name} may be {person.name}'s: {person.voice_basis}.",
                    citations=[person.id, *person.said[:6]],
                )
            )
    if report.indicators:
        counts = Counter(i.category for i in report.indicators)
        listed = ", ".join(f"{n} {category}" for category, n in sorted(counts.items()))
        out.append(
            Statement(
                text=f"{len(report.indicators)} indicator(s) need a human look ({listed}); they say what a "
                "model saw, not what happened.",
                citations=[i.id for i in report.indicators],
            )
        )
    for indicator in report.indicators:
        entry = next((e for e in report.timeline if e.indicator_id == indicator.id), None)
        where = indicator.file + (f" at {_clock(indicator.start_s)}" if indicator.start_s is not None else "")
        what = entry.text if entry is not None else indicator.label
        decided = (
            ""
            if indicator.review.decision == "unreviewed"
            else f"; a reviewer marked it {indicator.review.decision}"
        )
        out.append(
            Statement(
                text=f"In {where}, {STEPS.get(indicator.step, indicator.step)} reports: {what} "
                f"(confidence {indicator.confidence:.2f}){decided}.",
                citations=[indicator.id, *([entry.id] if entry else [])],
            )
        )
    if not report.indicators:
        out.append(
            Statement(
                text="No step reported an indicator for review in these files.",
                citations=[f.id for f in report.files],
            )
        )
    for gap in report.gaps:
        out.append(Statement(text=_sentence(gap.text), citations=[gap.id]))
    return NarrativeSection(generator="deterministic", statements=out)


def facts_of(report: CaseReport) -> list[Fact]:
    """The report's entries as the narrator's facts (id, text, evidence), at most `MAX_FACTS`."""
    facts: list[Fact] = []
    for file in report.files:
        facts.append(
            Fact(
                id=file.id,
                text=f"File {file.filename or file.id} ({file.kind}, {file.duration_s or 0:.0f} s)",
            )
        )
    for person in report.persons:
        facts.append(
            Fact(
                id=person.id,
                text=f"{person.name}, seen in {len(person.appearances)} track(s)",
                evidence=person.evidence[:4],
            )
        )
    for indicator in report.indicators:
        facts.append(
            Fact(
                id=indicator.id,
                text=f"Indicator for review ({indicator.category}, confidence {indicator.confidence:.2f}): "
                f"{indicator.label}",
                evidence=indicator.evidence[:4],
            )
        )
    for gap in report.gaps:
        facts.append(Fact(id=gap.id, text=f"Gap: {gap.text}", evidence=gap.evidence[:4]))
    for entry in report.timeline:
        who = f"{entry.speaker}: " if entry.speaker else ""
        when = f"[{entry.file} {_clock(entry.start_s)}] " if entry.start_s is not None else f"[{entry.file}] "
        facts.append(Fact(id=entry.id, text=(when + who + entry.text)[:4000], evidence=entry.evidence[:4]))
    return facts[:MAX_FACTS]


def from_model(
    report: CaseReport, narrate: Callable[[NarrativeInput], Narrative], model: ModelRef
) -> NarrativeSection:
    """The narrator's sentences; those citing nothing or unknown ids are dropped and counted."""
    facts = facts_of(report)
    answer = narrate(
        NarrativeInput(
            facts=facts,
            instructions=(
                "Summarise what the files show for a reviewer. Findings are indicators for human review, "
                "never verdicts: say what a model saw, not what a person is or did."
            ),
            language=None,
        )
    )
    known = {fact.id for fact in facts}
    kept: list[Statement] = []
    dropped = int(getattr(answer, "dropped", 0))
    for statement in answer.statements:
        citations = [c for c in statement.citations if c in known]
        if not citations or len(citations) != len(statement.citations) or not statement.text.strip():
            dropped += 1
            continue
        kept.append(Statement(text=statement.text.strip(), citations=citations))
    return NarrativeSection(generator=model.name, model=model, statements=kept, dropped=dropped)


def _sentence(text: str) -> str:
    text = text.strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "."


def _clock(seconds: float | None) -> str:
    minutes, rest = divmod(max(0.0, seconds or 0.0), 60)
    return f"{int(minutes):02d}:{rest:04.1f}"
