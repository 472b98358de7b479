"""The speakers function's core: the speech turns of one transcript version grouped into speakers.

``handle`` takes ``io.aima.transcript.completed.v1``:

1. a transcript that was not made (``not_run``), a step switched off for the tenant
   (``analysis.steps``) or no voice model → ``SpeakersCompleted`` ``not_run`` with the reason;
2. copies the 16 kHz WAV the transcript was made from (``audio_key``) to a private temporary
   folder; a missing or damaged file → ``MediaFailed`` (step ``speakers``) with the reason;
3. embeds every speech segment of at least ``min_turn_s`` (`VoiceEmbedder`, one vector per turn);
4. turns inside a span the user split off earlier (a pin) go to that pin's case speaker; the rest
   are clustered without a given number of speakers (`functions.speakers.clustering`);
5. the groups are labelled S1, S2, ... by first appearance and each group's centroid is searched
   in the case's ``voices`` vectors: the best match at least as similar as the tenant's
   ``thresholds.speaker_match`` asks (cosine ``0.5 + 0.5 * speaker_match``) joins that case speaker,
   one group per case speaker per file; any other group becomes a new case speaker;
6. stores the file speakers (their centroids are ``voices`` vectors), makes them the media's
   current ones, writes the labels onto the transcript version and returns ``SpeakersCompleted``.

Steps 5 and 6 run under the case's speaker lock. Ids are derived from the media, the transcript
version and the label, so a redelivered event writes the same documents and vectors again and a
new voice becomes the same case speaker; the previous version of the same media matches itself,
so names, merges and splits stay with their voices across re-analysis (`aima.storage.speakers`).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aima.storage.objects import InvalidKey, ObjectNotFound, ObjectStore
from aima.storage.speakers import (
    VOICES,
    CaseSpeakerRepository,
    FileSpeaker,
    SpeakerPin,
    Turn,
    covered,
    encode_vector,
    file_speaker_id,
    new_speaker_id,
)
from aima.storage.transcripts import TranscriptRepository
from aima.storage.vectors import VectorStore
from aima.transcripts import SpeechSegment, Transcript
from events.catalogue import EventData, MediaFailed, ModelInfo, SpeakersCompleted, TranscriptCompleted
from functions.runtime.context import Context
from functions.speakers.clustering import ClusterOptions, cluster_turns
from inference.errors import InvalidModelOutput, ModelNotConfigured
from inference.tasks.common import TimeSpan
from inference.tasks.speech import VoiceEmbedder, VoiceInput
from inference.vectors import ensure_collection_for

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

log = logging.getLogger(__name__)

STEP = "speakers"
WORK_PREFIX = "aima-speakers-"
AUDIO_RATE = 16000


def link_similarity(speaker_match: float) -> float:
    """The cosine similarity a file speaker needs to join a case speaker, from the tenant's
    ``thresholds.speaker_match`` score: 0 is where unrelated voices sit (0.5), 1 identity."""
    return 0.5 + 0.5 * speaker_match


@dataclass(frozen=True)
class SpeakerOptions:
    """How turns are chosen, grouped and matched (docs/speakers.md has the calibration)."""

    clustering: ClusterOptions = field(default_factory=ClusterOptions)
    min_turn_s: float = 0.3
    """Shorter speech segments are not embedded and keep no speaker."""
    search_limit: int = 100
    """Nearest ``voices`` records looked at per file speaker."""


@dataclass(frozen=True)
class TenantRules:
    """What the tenant's runtime configuration says for this step."""

    enabled: bool = True
    speaker_match: float = 0.7


class AudioFailed(Exception):
    """The audio cannot be used; the reason is for the reviewer."""


@dataclass
class _Group:
    turns: list[int]
    pinned_to: str | None = None
    label: str = ""
    case_speaker_id: str = ""
    score: float | None = None


class SpeakersCore:
    """``async handle(data, ctx) -> list[EventData]`` for ``io.aima.transcript.completed.v1``."""

    def __init__(
        self,
        objects: ObjectStore,
        transcripts: TranscriptRepository,
        speakers: CaseSpeakerRepository,
        vectors: Callable[[], VectorStore],
        *,
        embedder: Callable[[], VoiceEmbedder],
        rules_for: Callable[[str], TenantRules] = lambda tenant_id: TenantRules(),
        options: SpeakerOptions = SpeakerOptions(),
        workdir: Path | None = None,
    ) -> None:
        """``vectors`` returns the vector store (opened on first use); ``embedder`` the process's
        voice model (raising `ModelNotConfigured` when there is none); ``rules_for(tenant_id)``
        reads the tenant's configuration."""
        self._objects = objects
        self._transcripts = transcripts
        self._speakers = speakers
        self._vectors = vectors
        self._embedder = embedder
        self._rules_for = rules_for
        self._options = options
        self._workdir = workdir
        self._collection_ready = False

    async def handle(self, data: TranscriptCompleted, ctx: Context) -> list[EventData]:
        if data.status != "completed":
            why = f": {data.reason}" if data.reason else ""
            return [
                self._not_run(data, f"no transcript to assign speakers to (transcription {data.status}{why})")
            ]
        if data.version is None or data.audio_key is None:
            return [self._not_run(data, "the transcript event names no transcript version or audio")]
        rules = await asyncio.to_thread(self._rules_for, data.tenant_id)
        if not rules.enabled:
            return [self._not_run(data, "the speakers step is switched off for this tenant (analysis.steps)")]
        try:
            model = self._embedder()
        except ModelNotConfigured as exc:
            return [self._not_run(data, exc.reason)]
        transcript = await asyncio.to_thread(
            self._transcripts.get, data.tenant_id, data.case_id, data.media_id, data.version
        )
        if transcript is None:
            log.info("transcript version is gone; nothing to label", extra={"media_id": data.media_id})
            return []
        turns = [s for s in transcript.speech if s.end - s.start >= self._options.min_turn_s]
        with tempfile.TemporaryDirectory(prefix=WORK_PREFIX, dir=self._workdir) as work:
            try:
                duration = await asyncio.to_thread(self._download, data.audio_key, Path(work) / "audio.wav")
                vectors = await self._embed(model, Path(work) / "audio.wav", turns, duration)
            except ModelNotConfigured as exc:
                return [self._not_run(data, exc.reason)]
            except (AudioFailed, InvalidModelOutput) as exc:
                reason = exc.reason if isinstance(exc, InvalidModelOutput) else str(exc)
                log.warning("speakers failed: %s", reason, extra={"media_id": data.media_id})
                return [MediaFailed(**data.media_ids(), step=STEP, reason=reason)]
        return [await asyncio.to_thread(self._assign, data, transcript, turns, vectors, model, rules)]

    # --- audio and vectors ---------------------------------------------------------------------

    def _download(self, key: str, target: Path) -> float:
        """Copy the audio to ``target`` and check it is whole 16 kHz mono PCM; returns its length."""
        try:
            self._objects.download(key, target)
        except (ObjectNotFound, InvalidKey) as exc:
            raise AudioFailed("the extracted audio is missing from the object store") from exc
        try:
            with wave.open(str(target), "rb") as source:
                shape = (source.getnchannels(), source.getsampwidth(), source.getframerate())
                frames = source.getnframes()
                if shape != (1, 2, AUDIO_RATE):
                    raise AudioFailed(
                        f"the extracted audio is not 16 kHz mono 16-bit PCM ({shape[0]} channel(s), "
                        f"{8 * shape[1]}-bit, {shape[2]} Hz)"
                    )
                if frames:
                    source.setpos(frames - 1)
                    if len(source.readframes(1)) < 2:
                        raise AudioFailed("the extracted audio is damaged: it ends before its header says")
        except (wave.Error, EOFError) as exc:
            raise AudioFailed(f"the extracted audio is damaged: {exc}") from exc
        return frames / AUDIO_RATE

    async def _embed(
        self, model: VoiceEmbedder, path: Path, turns: list[SpeechSegment], duration: float
    ) -> npt.NDArray[np.float64]:
        import numpy as np

        spans = [TimeSpan(start=min(t.start, duration), end=min(t.end, duration)) for t in turns]
        if not spans:
            return np.zeros((0, 0))
        try:
            out = await model.apredict(VoiceInput(path=path, segments=spans))
        except ValueError as exc:  # the backend could not read the file
            raise AudioFailed(str(exc)) from exc
        return np.array([embedding.vector for embedding in out.embeddings], dtype=np.float64)

    # --- grouping and linking ------------------------------------------------------------------

    def _assign(
        self,
        data: TranscriptCompleted,
        transcript: Transcript,
        turns: list[SpeechSegment],
        vectors: npt.NDArray[np.float64],
        model: VoiceEmbedder,
        rules: TenantRules,
    ) -> SpeakersCompleted:
        tenant_id, case_id, media_id = data.tenant_id, data.case_id, data.media_id
        version = transcript.version
        pins = self._speakers.pins(tenant_id, case_id, media_id)
        groups = self._groups(turns, vectors, pins)
        if groups and not self._collection_ready:
            ensure_collection_for(self._vectors(), model)
            self._collection_ready = True
        new = 0
        with self._speakers.locked(case_id):
            known = self._speakers.resolution(tenant_id, case_id)
            for group in groups:
                if group.pinned_to is not None and group.pinned_to in known:
                    group.case_speaker_id = group.pinned_to
            self._link(
                tenant_id, case_id, [g for g in groups if not g.case_speaker_id], turns, vectors, rules
            )
            for group in groups:
                if not group.case_speaker_id:
                    speaker_id = new_speaker_id(tenant_id, case_id, media_id, version, group.label)
                    existed = speaker_id in known
                    group.case_speaker_id = self._speakers.create(tenant_id, case_id, speaker_id).id
                    new += 0 if existed else 1
            file_speakers = [self._file_speaker(data, version, group, turns, vectors) for group in groups]
            self._speakers.save_file_speakers(file_speakers)
            self._speakers.make_current(tenant_id, case_id, media_id, {fs.id for fs in file_speakers})
            if file_speakers:
                self._speakers.relabel(tenant_id, case_id, media_id)
            else:
                self._transcripts.label_speakers(tenant_id, case_id, media_id, version, {})
            resolution = self._speakers.resolution(tenant_id, case_id)
        case_speakers = {resolution[g.case_speaker_id].id for g in groups if g.case_speaker_id in resolution}
        labelled = sum(len(g.turns) for g in groups)
        log.info(
            "speakers assigned",
            extra={"media_id": media_id, "speakers": len(groups), "new": new, "turns": labelled},
        )
        return SpeakersCompleted(
            **data.media_ids(),
            model=ModelInfo.of(model),
            result_count=len(groups),
            status="completed",
            version=version,
            speakers=len(groups),
            case_speakers=len(case_speakers),
            new_case_speakers=new,
            turns=labelled,
        )

    def _groups(
        self, turns: list[SpeechSegment], vectors: npt.NDArray[np.float64], pins: list[SpeakerPin]
    ) -> list[_Group]:
        """Pinned turns by pin (the newest covering pin wins), the rest clustered; labelled S1, S2,
        ... in order of first appearance."""
        import numpy as np

        pinned: dict[str, list[int]] = {}
        free: list[int] = []
        for index, turn in enumerate(turns):
            pin = next((p for p in reversed(pins) if covered(turn.start, turn.end, p.spans)), None)
            if pin is None:
                free.append(index)
            else:
                pinned.setdefault(pin.case_speaker_id, []).append(index)
        groups = [_Group(members, pinned_to=speaker) for speaker, members in pinned.items()]
        if free:
            durations = np.array([turns[i].end - turns[i].start for i in free])
            numbers = cluster_turns(vectors[free], durations, self._options.clustering)
            clusters: dict[int, list[int]] = {}
            for index, number in zip(free, numbers, strict=True):
                if number is not None:
                    clusters.setdefault(number, []).append(index)
            groups.extend(_Group(members) for members in clusters.values())
        groups.sort(key=lambda g: min(turns[i].start for i in g.turns))
        for number, group in enumerate(groups, start=1):
            group.label = f"S{number}"
        return groups

    def _link(
        self,
        tenant_id: str,
        case_id: str,
        groups: list[_Group],
        turns: list[SpeechSegment],
        vectors: npt.NDArray[np.float64],
        rules: TenantRules,
    ) -> None:
        """Give each group the case speaker whose current voices it matches best, if similar enough;
        one group per case speaker (greedy, best match first); pinned speakers are taken already."""
        threshold = link_similarity(rules.speaker_match)
        candidates: list[tuple[float, int, str]] = []
        for number, group in enumerate(groups):
            centroid = _centroid(vectors[group.turns])
            hits = self._vectors().search(
                VOICES, centroid, tenant_id=tenant_id, case_id=case_id, limit=self._options.search_limit
            )
            close = [hit for hit in hits if hit.score >= threshold]
            found = self._speakers.file_speakers_by_id(tenant_id, case_id, [hit.id for hit in close])
            best: dict[str, float] = {}
            for hit in close:
                fs = found.get(hit.id)
                if fs is not None and fs.current:
                    best[fs.case_speaker_id] = max(best.get(fs.case_speaker_id, 0.0), hit.score)
            candidates.extend((score, number, speaker) for speaker, score in best.items())
        known = self._speakers.resolution(tenant_id, case_id)
        taken = {g.case_speaker_id for g in groups if g.case_speaker_id}
        for score, number, speaker in sorted(candidates, key=lambda c: (-c[0], c[1], c[2])):
            group = groups[number]
            if group.case_speaker_id or speaker in taken or speaker not in known:
                continue
            group.case_speaker_id, group.score = speaker, round(score, 4)
            taken.add(speaker)

    def _file_speaker(
        self,
        data: TranscriptCompleted,
        version: int,
        group: _Group,
        turns: list[SpeechSegment],
        vectors: npt.NDArray[np.float64],
    ) -> FileSpeaker:
        return FileSpeaker(
            id=file_speaker_id(data.media_id, version, group.label),
            tenant_id=data.tenant_id,
            case_id=data.case_id,
            media_id=data.media_id,
            version=version,
            label=group.label,
            case_speaker_id=group.case_speaker_id,
            turns=[
                Turn(id=turns[i].id, start=turns[i].start, end=turns[i].end, vector=encode_vector(vectors[i]))
                for i in sorted(group.turns, key=lambda i: turns[i].start)
            ],
            current=False,
            origin="pinned" if group.pinned_to is not None else "analysis",
            score=group.score,
        )

    def _not_run(self, data: TranscriptCompleted, reason: str) -> SpeakersCompleted:
        log.info("speakers not run: %s", reason, extra={"media_id": data.media_id})
        return SpeakersCompleted(
            **data.media_ids(),
            model=ModelInfo.none(),
            result_count=0,
            status="not_run",
            reason=reason,
            version=data.version,
        )


def _centroid(vectors: npt.NDArray[np.float64]) -> list[float]:
    import numpy as np

    mean = vectors.mean(axis=0)
    return [float(x) for x in mean / float(np.linalg.norm(mean))]
