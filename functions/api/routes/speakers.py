"""The speakers of a case: who speaks in which files and when, and the user's corrections.

* ``GET /cases/{case_id}/speakers``: every case speaker (merged ones are gone) by number, with the
  name to show (the user's, else "Speaker N"), and per file its labels (S1, S2, ...) and turns;
* ``PATCH .../speakers/{speaker_id}``: rename (``{"name": null}`` gives back "Speaker N");
* ``POST .../speakers/{speaker_id}/merge``: ``{"speaker_id": OTHER}`` merges OTHER into this one;
* ``POST .../speakers/{speaker_id}/split``: ``{"media_id", "speaker": "S2"}`` or
  ``{"media_id", "segment_ids": [...]}`` moves those turns of this speaker to a new speaker (201).

Reading needs ``case.read`` (viewers), corrections ``case.update`` (analysts, owners); every call
writes one audit record, a correction's naming the speakers it touched. Corrections are kept so
that a re-analysis of the same media applies them again (`aima.storage.speakers`). Problems:
404 for a speaker the case does not have (or one merged into another: the detail names it), 422
for a correction that cannot be made (merging a speaker with itself, turns it does not have).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from aima.access.policy import Action
from aima.storage.cache import LockTimeout
from aima.storage.speakers import (
    Appearance,
    CaseSpeaker,
    CaseSpeakerRepository,
    SpeakerError,
    SpeakerNotFound,
)
from functions.api.problems import Problem
from functions.api.schemas import CaseId
from functions.api.security import Access, RouteTable, api_route

router = RouteTable(tags=["speakers"])

ID = r"^[A-Za-z0-9_-]{1,36}$"
SpeakerId = Annotated[str, Path(pattern=ID, description="A case speaker's id.")]
Name = Annotated[str, StringConstraints(max_length=100, pattern=r"^[^\x00-\x1f\x7f]*$")]
SegmentId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,100}$")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpeakerRename(_In):
    name: Name | None = Field(description="the name to show; null or blank: back to 'Speaker N'")


class SpeakerMerge(_In):
    speaker_id: Annotated[str, StringConstraints(pattern=ID)] = Field(
        description="the speaker merged into this one (its turns, files and, if this one has none, name)"
    )


class SpeakerSplit(_In):
    media_id: Annotated[str, StringConstraints(pattern=ID)]
    speaker: Annotated[str, StringConstraints(pattern=r"^S[1-9][0-9]{0,4}$")] | None = Field(
        default=None, description="move all turns of this file speaker (its label in the media)"
    )
    segment_ids: list[SegmentId] | None = Field(
        default=None, min_length=1, max_length=10_000, description="or move these segments"
    )
    name: Name | None = Field(default=None, description="a name for the new speaker")

    @model_validator(mode="after")
    def _one_way(self) -> SpeakerSplit:
        if (self.speaker is None) == (self.segment_ids is None):
            raise ValueError("name either speaker (a file speaker label) or segment_ids")
        return self


class TurnOut(BaseModel):
    segment_id: str
    start: float
    end: float


class AppearanceOut(BaseModel):
    media_id: str
    transcript_version: int
    labels: list[str] = Field(description="the file speakers (S1, S2, ...) that are this speaker")
    seconds: float
    turns: list[TurnOut]


class SpeakerOut(BaseModel):
    id: str
    number: int
    name: str | None
    display_name: str
    origin: Literal["analysis", "split"]
    seconds: float = Field(description="how long the speaker speaks in the case's files")
    media: list[AppearanceOut]
    created_at: datetime
    updated_at: datetime


def _out(speaker: CaseSpeaker, appearances: list[Appearance]) -> SpeakerOut:
    media = [
        AppearanceOut(
            media_id=a.media_id,
            transcript_version=a.version,
            labels=a.labels,
            seconds=round(a.seconds, 3),
            turns=[TurnOut(segment_id=sid, start=start, end=end) for sid, start, end in a.spans],
        )
        for a in appearances
    ]
    return SpeakerOut(
        id=speaker.id,
        number=speaker.number,
        name=speaker.name,
        display_name=speaker.display_name,
        origin=speaker.origin,
        seconds=round(sum(m.seconds for m in media), 3),
        media=media,
        created_at=speaker.created_at,
        updated_at=speaker.updated_at,
    )


def _repository(access: Access, *, vectors: bool = False) -> CaseSpeakerRepository:
    stores = access.services.stores
    return CaseSpeakerRepository(
        stores.documents, vectors=stores.vectors if vectors else None, cache=stores.cache
    )


@contextmanager
def _problems() -> Iterator[None]:
    """The kernel's refusals as problems."""
    try:
        yield
    except SpeakerNotFound as exc:
        detail = (
            f"The speaker was merged into speaker {exc.merged_into}."
            if exc.merged_into
            else "No such speaker."
        )
        raise Problem(404, "not-found", "Not Found", detail) from None
    except SpeakerError as exc:
        raise Problem(422, "invalid-correction", "Correction not possible", f"{exc}.") from None
    except LockTimeout:
        raise Problem(
            503,
            "busy",
            "Speakers busy",
            "The case's speakers are being updated; try again.",
            headers={"Retry-After": "5"},
        ) from None


def _speaker_out(
    repository: CaseSpeakerRepository, access: Access, case_id: str, speaker_id: str
) -> SpeakerOut:
    tenant_id = access.subject.tenant_id
    speaker = repository.get(tenant_id, case_id, speaker_id)
    if speaker is None:
        raise Problem(404, "not-found", "Not Found", "No such speaker.")
    return _out(speaker, repository.appearances(tenant_id, case_id).get(speaker.id, []))


@api_route(router, "GET", "/cases/{case_id}/speakers", action=Action.CASE_READ)
def list_speakers(case_id: CaseId, access: Access) -> list[SpeakerOut]:
    """The case's speakers by number, with where they speak (the newest labelled transcripts)."""
    access.require_case()
    repository = _repository(access)
    tenant_id = access.subject.tenant_id
    appearances = repository.appearances(tenant_id, case_id)
    return [_out(s, appearances.get(s.id, [])) for s in repository.speakers(tenant_id, case_id)]


@api_route(router, "PATCH", "/cases/{case_id}/speakers/{speaker_id}", action=Action.CASE_UPDATE)
def rename_speaker(case_id: CaseId, speaker_id: SpeakerId, body: SpeakerRename, access: Access) -> SpeakerOut:
    """Name the speaker; the name stays with its voice when the case's files are analysed again."""
    access.require_case()
    repository = _repository(access)
    with _problems():
        renamed = repository.rename(access.subject.tenant_id, case_id, speaker_id, body.name)
    access.audit(
        object=f"speaker/{speaker_id}", detail={"correction": "rename", "named": renamed.name is not None}
    )
    return _speaker_out(repository, access, case_id, speaker_id)


@api_route(router, "POST", "/cases/{case_id}/speakers/{speaker_id}/merge", action=Action.CASE_UPDATE)
def merge_speakers(case_id: CaseId, speaker_id: SpeakerId, body: SpeakerMerge, access: Access) -> SpeakerOut:
    """Merge ``speaker_id`` of the body into this speaker; returns this speaker."""
    access.require_case()
    repository = _repository(access)
    with _problems():
        repository.merge(access.subject.tenant_id, case_id, body.speaker_id, speaker_id)
    access.audit(object=f"speaker/{speaker_id}", detail={"correction": "merge", "merged": body.speaker_id})
    return _speaker_out(repository, access, case_id, speaker_id)


@api_route(
    router, "POST", "/cases/{case_id}/speakers/{speaker_id}/split", action=Action.CASE_UPDATE, status_code=201
)
def split_speaker(case_id: CaseId, speaker_id: SpeakerId, body: SpeakerSplit, access: Access) -> SpeakerOut:
    """Move turns of this speaker in one file (a file speaker's, or chosen segments) to a new speaker;
    returns the new one. The turns stay apart when the file is analysed again."""
    access.require_case()
    repository = _repository(access, vectors=True)
    with _problems():
        created = repository.split(
            access.subject.tenant_id,
            case_id,
            speaker_id,
            body.media_id,
            label=body.speaker,
            segment_ids=body.segment_ids,
            name=body.name,
            actor=access.subject.user_id,
        )
    detail = {
        "correction": "split",
        "new_speaker": created.id,
        "media_id": body.media_id,
        "file_speaker": body.speaker,
        "segments": len(body.segment_ids or ()),
    }
    access.audit(object=f"speaker/{speaker_id}", detail=detail)
    return _speaker_out(repository, access, case_id, created.id)
