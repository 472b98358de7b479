"""``aima persons``: the persons of a case (faces grouped across its files) and corrections to them.

* ``aima persons list CASE_ID``: one line per person (id, name to show, tracks, files, origin), then
  the number of unassigned tracks;
* ``aima persons show CASE_ID PERSON_ID``: the person, then its gallery, best first: track id, file,
  label, times, quality, who linked it and by what similarity, frame;
* ``aima persons unassigned CASE_ID``: the tracks that belong to no person, best first, with the reason;
* ``aima persons rename CASE_ID PERSON_ID NAME`` (``""``: back to "Person N");
* ``aima persons merge CASE_ID PERSON_ID --into OTHER``: this person merged into OTHER;
* ``aima persons split CASE_ID PERSON_ID TRACK_ID... [--name NAME]``: those tracks to a new person
  (prints its id).

Works on the stores directly, in one tenant (``--tenant``, by default the bootstrap tenant), as the admin
commands do (`aima.cli.context`), and writes one audit record per call in the same shape as the API's
(``case.read``; ``case.update`` with object ``person/<id>`` and the correction in its detail; a refused
correction is recorded ``failed``). Errors are one line and exit 1: no such case or person (a merged
one names the person it was merged into), tracks the person does not have, a split of all its tracks,
a merge into itself, a name that is too long.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import click

from aima.cli import CliError
from aima.cli.context import CaseSession, Kernel, case_session
from aima.storage.cache import LockTimeout
from aima.storage.identities import MAX_NAME
from aima.storage.persons import Person, PersonError, PersonNotFound, PersonRepository, PersonTrack

TENANT = click.option(
    "--tenant", default=None, help="Tenant name (default: the bootstrap tenant, AIMA_BOOTSTRAP_TENANT)."
)


class _Session(CaseSession):
    """One command's kernel, repository, case and audit records."""

    def __init__(self, k: Kernel, case_id: str) -> None:
        super().__init__(k, case_id)
        self.persons = PersonRepository(k.stores.documents, cache=k.stores.cache)


def _session(case_id: str, tenant: str | None) -> AbstractContextManager[_Session]:
    return case_session(_Session, case_id, tenant)


@contextmanager
def _correction(s: _Session, person_id: str, **detail: Any) -> Iterator[None]:
    """Refusals as one line (and a ``failed`` audit record)."""
    try:
        yield
    except PersonNotFound as exc:
        s.record("case.update", f"person/{person_id}", failed="not-found", **detail)
        into = detail.get("into")
        named = person_id
        if isinstance(into, str) and s.persons.get(s.tenant_id, s.case_id, person_id) is not None:
            named = into  # this person is there and not merged: the other one is not
        if exc.merged_into:
            raise CliError(f"person {named} was merged into person {exc.merged_into}") from None
        raise CliError(f"no person {named} in case {s.case_id}") from None
    except PersonError as exc:
        s.record("case.update", f"person/{person_id}", failed="invalid-correction", **detail)
        raise CliError(str(exc)) from None
    except LockTimeout:
        raise CliError("the case's persons are being updated; try again") from None


def _name(value: str | None) -> str | None:
    """The name as the kernel will store it; CliError if it cannot be one."""
    if value is None:
        return None
    cleaned = " ".join(value.split())
    if len(cleaned) > MAX_NAME:
        raise CliError(f"a person's name has at most {MAX_NAME} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in cleaned):
        raise CliError("a person's name may not contain control characters")
    return cleaned or None


def _best_first(tracks: Sequence[PersonTrack]) -> list[PersonTrack]:
    return sorted(tracks, key=lambda t: (-t.quality, t.media_id, t.first_s, t.label))


def _summary(person: Person, tracks: Sequence[PersonTrack]) -> str:
    files = len({t.media_id for t in tracks})
    return "\t".join(
        [
            person.id,
            person.display_name,
            f"{len(tracks)} track{'s' * (len(tracks) != 1)}",
            f"{files} file{'s' * (files != 1)}",
            person.origin,
        ]
    )


def _track_line(track: PersonTrack, *extra: str) -> str:
    return "\t".join(
        [
            track.id,
            track.media_id,
            track.label,
            f"{track.first_s:.1f}-{track.last_s:.1f}s",
            f"quality {track.quality:.2f}",
            *extra,
            f"frame {track.frame_id}",
        ]
    )


@click.group()
def persons() -> None:
    """The persons of a case: list, show, rename, merge, split."""


@persons.command("list")
@click.argument("case_id")
@TENANT
def list_persons(case_id: str, tenant: str | None) -> None:
    """The persons of CASE_ID by number: id, name, tracks, files, origin; then the unassigned tracks."""
    with _session(case_id, tenant) as s:
        resolution = s.persons.resolution(s.tenant_id, case_id)
        mine: dict[str, list[PersonTrack]] = defaultdict(list)
        unassigned = 0
        for track in s.persons.tracks(s.tenant_id, case_id):
            if track.person_id is None:
                unassigned += 1
            elif (person := resolution.get(track.person_id)) is not None:
                mine[person.id].append(track)
        found = s.persons.persons(s.tenant_id, case_id)
        s.record("case.read", f"case/{case_id}/persons", persons=len(found), unassigned=unassigned)
    for person in found:
        click.echo(_summary(person, mine.get(person.id, [])))
    click.echo(f"unassigned tracks: {unassigned}")


@persons.command("show")
@click.argument("case_id")
@click.argument("person_id")
@TENANT
def show_person(case_id: str, person_id: str, tenant: str | None) -> None:
    """PERSON_ID of CASE_ID and its gallery, best first."""
    with _session(case_id, tenant) as s:
        person = s.persons.get(s.tenant_id, case_id, person_id)
        if person is None or person.merged_into is not None:
            survivor = s.persons.resolution(s.tenant_id, case_id).get(person_id) if person else None
            s.record("case.read", f"person/{person_id}", failed="not-found")
            if survivor is not None:
                raise CliError(f"person {person_id} was merged into person {survivor.id}")
            raise CliError(f"no person {person_id} in case {case_id}")
        tracks = s.persons.tracks_of(s.tenant_id, case_id, person.id)
        s.record("case.read", f"person/{person_id}", tracks=len(tracks))
    click.echo(_summary(person, tracks))
    for track in tracks:
        score = "-" if track.score is None else f"{track.score:.3f}"
        click.echo(_track_line(track, f"linked by {track.linked_by}", f"score {score}"))


@persons.command("unassigned")
@click.argument("case_id")
@TENANT
def unassigned(case_id: str, tenant: str | None) -> None:
    """The face tracks of CASE_ID that belong to no person, best first, with the reason."""
    with _session(case_id, tenant) as s:
        tracks = _best_first([t for t in s.persons.tracks(s.tenant_id, case_id) if t.person_id is None])
        s.record("case.read", f"case/{case_id}/persons/unassigned", tracks=len(tracks))
    for track in tracks:
        click.echo(_track_line(track, track.reason or "-"))


@persons.command("rename")
@click.argument("case_id")
@click.argument("person_id")
@click.argument("name")
@TENANT
def rename(case_id: str, person_id: str, name: str, tenant: str | None) -> None:
    """Name PERSON_ID of CASE_ID; NAME "" gives back "Person N"."""
    cleaned = _name(name)
    with _session(case_id, tenant) as s:
        detail: dict[str, Any] = {"correction": "rename", "named": cleaned is not None}
        with _correction(s, person_id, **detail):
            renamed = s.persons.rename(s.tenant_id, case_id, person_id, cleaned)
        s.record("case.update", f"person/{person_id}", **detail)
    click.echo(f"{renamed.id}\t{renamed.display_name}")


@persons.command("merge")
@click.argument("case_id")
@click.argument("person_id")
@click.option("--into", "into", required=True, help="The person PERSON_ID is merged into.")
@TENANT
def merge(case_id: str, person_id: str, into: str, tenant: str | None) -> None:
    """Merge PERSON_ID of CASE_ID into another person (it keeps its name, or takes this one's)."""
    with _session(case_id, tenant) as s:
        with _correction(s, person_id, correction="merge", into=into):
            kept = s.persons.merge(s.tenant_id, case_id, person_id, into)
        s.record("case.update", f"person/{person_id}", correction="merge", into=kept.id)
    click.echo(f"merged {person_id} into {kept.id}\t{kept.display_name}")


@persons.command("split")
@click.argument("case_id")
@click.argument("person_id")
@click.argument("track_ids", nargs=-1, required=True)
@click.option("--name", default=None, help="A name for the new person.")
@TENANT
def split(
    case_id: str, person_id: str, track_ids: tuple[str, ...], name: str | None, tenant: str | None
) -> None:
    """Move TRACK_IDS of PERSON_ID in CASE_ID to a new person; prints its id and name."""
    cleaned = _name(name)
    with _session(case_id, tenant) as s:
        tracks = len(set(track_ids))
        with _correction(s, person_id, correction="split", tracks=tracks):
            created = s.persons.split(s.tenant_id, case_id, person_id, track_ids, name=cleaned)
        s.record(
            "case.update", f"person/{person_id}", correction="split", new_person=created.id, tracks=tracks
        )
    click.echo(f"{created.id}\t{created.display_name}")
