"""The case-speaker repository on litemongo: numbering, names, merges, and that a case takes them along."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aima.storage.cache import MemoryCache
from aima.storage.documents import DocumentStore
from aima.storage.identities import clean_name
from aima.storage.speakers import (
    CaseSpeakerRepository,
    SpeakerError,
    SpeakerNotFound,
    covered,
    decode_vector,
    encode_vector,
    unit_mean,
)

TENANT = "tenant-1"


@pytest.fixture
def documents(tmp_path: Path) -> Iterator[DocumentStore]:
    store = DocumentStore.from_uri(f"litemongo://{tmp_path / 'documents'}", "aima")
    yield store
    store.close()


@pytest.fixture
def repo(documents: DocumentStore) -> CaseSpeakerRepository:
    return CaseSpeakerRepository(documents, cache=MemoryCache())


def case() -> str:
    return str(uuid.uuid4())


def test_speakers_are_numbered_per_case_and_called_speaker_n_until_named(repo: CaseSpeakerRepository) -> None:
    one, two = case(), case()
    a = repo.create(TENANT, one)
    b = repo.create(TENANT, one)
    c = repo.create(TENANT, two)
    assert (a.number, b.number, c.number) == (1, 2, 1)
    assert repo.display_names(TENANT, one) == {a.id: "Speaker 1", b.id: "Speaker 2"}
    renamed = repo.rename(TENANT, one, b.id, "  Anna   Berg ")
    assert renamed.name == "Anna Berg"
    assert repo.display_names(TENANT, one)[b.id] == "Anna Berg"
    assert repo.rename(TENANT, one, b.id, " ").display_name == "Speaker 2"
    assert repo.display_names(TENANT, two) == {c.id: "Speaker 1"}


def test_creating_a_speaker_with_the_same_id_twice_gives_the_first(repo: CaseSpeakerRepository) -> None:
    case_id = case()
    first = repo.create(TENANT, case_id, "fixed-id")
    again = repo.create(TENANT, case_id, "fixed-id")
    assert (again.id, again.number) == (first.id, first.number)
    assert [s.number for s in repo.speakers(TENANT, case_id)] == [1]
    assert repo.create(TENANT, case_id).number == 2


def test_a_merged_speaker_resolves_to_the_one_it_was_merged_into(repo: CaseSpeakerRepository) -> None:
    case_id = case()
    a, b, c = (repo.create(TENANT, case_id) for _ in range(3))
    repo.rename(TENANT, case_id, a.id, "Officer")
    survivor = repo.merge(TENANT, case_id, a.id, b.id)
    assert survivor.id == b.id
    assert survivor.name == "Officer"  # it had none: it takes the merged one's
    repo.merge(TENANT, case_id, b.id, c.id)
    assert repo.resolve(TENANT, case_id, a.id) == repo.get(TENANT, case_id, c.id)
    assert repo.display_names(TENANT, case_id) == {a.id: "Officer", b.id: "Officer", c.id: "Officer"}
    assert [s.id for s in repo.speakers(TENANT, case_id)] == [c.id]
    with pytest.raises(SpeakerNotFound) as merged:
        repo.rename(TENANT, case_id, a.id, "x")
    assert merged.value.merged_into == c.id
    with pytest.raises(SpeakerError):
        repo.merge(TENANT, case_id, c.id, c.id)
    with pytest.raises(SpeakerNotFound):
        repo.merge(TENANT, case_id, c.id, "no-such-speaker")


def test_deleting_the_case_removes_its_speakers(
    repo: CaseSpeakerRepository, documents: DocumentStore
) -> None:
    doomed, kept = case(), case()
    repo.create(TENANT, doomed)
    repo.create(TENANT, kept)
    documents.delete_case(doomed)
    assert repo.speakers(TENANT, doomed) == []
    assert repo.display_names(TENANT, doomed) == {}
    assert len(repo.speakers(TENANT, kept)) == 1


def test_the_other_tenant_sees_nothing(repo: CaseSpeakerRepository) -> None:
    case_id = case()
    speaker = repo.create(TENANT, case_id)
    assert repo.get("tenant-2", case_id, speaker.id) is None
    assert repo.display_names("tenant-2", case_id) == {}


def test_helpers() -> None:
    assert decode_vector(encode_vector([0.5, -1.0, 2.0])) == [0.5, -1.0, 2.0]
    assert unit_mean([[1.0, 0.0], [0.0, 1.0]]) == pytest.approx([2**-0.5, 2**-0.5])
    assert covered(1.0, 3.0, [(0.0, 2.5)])
    assert not covered(1.0, 3.0, [(2.5, 9.0)])
    assert clean_name(None) is None
    with pytest.raises(SpeakerError):
        clean_name("x" * 101)
    with pytest.raises(SpeakerError):
        clean_name("bad\x07name")
