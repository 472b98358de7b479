"""Run the transcribe core once in this process, on stores in a folder; optionally die by SIGKILL.

``python -m tests.transcribe.crash_run FOLDER EVENT_JSON KILL_AT``: handle the event with the
real models, chunks of one sentence; when ``KILL_AT`` > 0, the process kills itself with SIGKILL
as the model starts its ``KILL_AT``-th chunk. Prints the start times of the chunks it asked the
model for, one line per chunk, so the test sees what was (re)done.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from aima.model_settings import ModelsSettings
from aima.storage.documents import DocumentStore
from aima.storage.media import MediaRepository
from aima.storage.objects_local import LocalObjectStore
from aima.storage.relational import Database
from aima.storage.transcripts import TranscriptRepository
from events.envelope import CloudEvent
from functions.runtime.dispatch import Dispatcher
from functions.transcribe.core import TranscribeCore, TranscribeOptions
from functions.transcribe.spec import SPEC
from inference.registry import REGISTRY
from inference.tasks.speech import SpeechDetector, Transcriber, TranscriptionInput
from tests.transcribe.wrapped import Wrapped


def dying(inner: Transcriber, kill_at: int) -> Wrapped:
    """Prints the first region's start of every call; SIGKILLs this process at call ``kill_at``."""

    def before(call: int, inputs: TranscriptionInput) -> None:
        print(inputs.regions[0].start, flush=True)
        if call == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    return Wrapped(inner, before)


def main(folder: Path, event_json: str, kill_at: int) -> None:
    db = Database(f"sqlite:///{folder / 'aima.db'}")
    objects = LocalObjectStore(
        folder / "objects", presign_secret=b"s" * 32, public_base_url="http://aima.test"
    )
    documents = DocumentStore.from_uri(f"litemongo://{folder / 'documents'}", "aima")
    settings = ModelsSettings()
    detector = REGISTRY.create("speech_detector", settings.speech_detector)
    inner = REGISTRY.create("transcriber", settings.transcriber.model_copy(update={"threads": 2}))
    assert isinstance(detector, SpeechDetector)
    assert isinstance(inner, Transcriber)
    core = TranscribeCore(
        objects,
        TranscriptRepository(documents),
        MediaRepository(db),
        detector=lambda: detector,
        transcriber=lambda: dying(inner, kill_at),
        options=TranscribeOptions(chunk_speech_s=5.0),
    )
    event = CloudEvent.model_validate_json(event_json)
    asyncio.run(Dispatcher(SPEC, core, outbox=None, relay=None).dispatch(event))
    documents.close()
    db.dispose()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
