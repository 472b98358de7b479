"""The report's narrative from a real OpenAI-compatible server (llama.cpp), and without one.

The prose of the tiny model is not judged: only that the report keeps sentences citing its own
entries, names the model and counts what it dropped; and that a narrator that does not answer
leaves the deterministic sentences with a note saying so.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aima.settings import load_settings
from functions.fuse.core import Pipeline
from functions.fuse.narrative import deterministic, facts_of
from functions.fuse.spec import ReportBuilder
from functions.runtime.deps import Deps
from tests.narrator.conftest import LlamaServer
from tests.reports.sample import build_report
from tests.support import free_port

EMPTY = Pipeline(consumes={}, emits={})


def builder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, endpoint: str, model: str) -> ReportBuilder:
    monkeypatch.setenv("AIMA_MODELS__NARRATOR__BACKEND", "openai")
    monkeypatch.setenv("AIMA_MODELS__NARRATOR__ENDPOINT", endpoint)
    monkeypatch.setenv("AIMA_MODELS__NARRATOR__MODEL", model)
    options = {"max_tokens": 800, "seed": 7, "max_statements": 2, "max_statement_chars": 100}
    monkeypatch.setenv("AIMA_MODELS__NARRATOR__OPTIONS", json.dumps(options))
    monkeypatch.setenv("AIMA_MODELS__NARRATOR__TIMEOUT_SECONDS", "120")
    return ReportBuilder(Deps(load_settings(profile="embedded", data_dir=tmp_path)), EMPTY)


def test_the_narrator_writes_cited_sentences_into_the_report(
    llama_server: LlamaServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    report = build_report()
    section = builder(tmp_path, monkeypatch, f"{llama_server.base}/v1", llama_server.model).narrate(report)
    assert section.generator == llama_server.model, section.note
    assert section.model is not None
    assert section.model.backend == "openai"
    assert section.note is None
    assert 1 <= len(section.statements) + section.dropped <= 2
    cited = {fact.id for fact in facts_of(report)}
    assert cited <= report.ids()
    for statement in section.statements:
        assert statement.citations
        assert set(statement.citations) <= cited


def test_a_narrator_that_does_not_answer_leaves_the_deterministic_sentences_and_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    report = build_report()
    section = builder(tmp_path, monkeypatch, f"http://127.0.0.1:{free_port()}/v1", "absent").narrate(report)
    assert section.generator == "deterministic"
    assert section.statements == deterministic(report).statements
    assert section.note is not None
    assert section.note.startswith("the narrator did not answer")
