"""The cue list file: the packaged one loads, a replacement is taken from AIMA_CUES_FILE, and a bad file
stops the function's start with one line naming the file and what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from aima.settings import SettingsError, load_settings
from functions.cues.cuelist import DEFAULT_FILE, CueList, CueListError, load_cue_list, normalise
from functions.cues.spec import SPEC
from functions.runtime.deps import Deps

GOOD = {
    "version": 3,
    "semantic_threshold": 0.5,
    "cues": [
        {
            "id": "call-for-help",
            "category": "distress",
            "label": "a call for help",
            "examples": ["help me"],
            "patterns": {"en": [r"\bhelp me\b"], "de": [r"\bhilf mir\b"]},
        }
    ],
}


def write(tmp_path: Path, data: object, name: str = "cues.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if name.endswith(".yaml") else json.dumps(data))
    return path


def test_the_packaged_list_loads() -> None:
    cues = load_cue_list()
    assert cues == load_cue_list(DEFAULT_FILE)
    assert cues.version == 1
    ids = {cue.id for cue in cues.cues}
    assert {"plea-to-stop", "call-for-help", "threat", "held-captive", "tied-up", "locked-in"} <= ids
    assert {cue.category for cue in cues.cues} == {"distress", "coercion"}
    assert all(set(cue.patterns) == {"en", "de"} and cue.examples for cue in cues.cues)


def test_a_replacement_is_taken_from_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIMA_CUES_FILE", str(write(tmp_path, GOOD)))
    cues = load_cue_list()
    assert (cues.version, [cue.id for cue in cues.cues]) == (3, ["call-for-help"])
    assert cues.lexical_confidence == 0.65  # the default
    assert load_cue_list(write(tmp_path, GOOD, "cues.json")) == cues  # JSON works too


def broken(**changes: object) -> dict[str, object]:
    cue = {**GOOD["cues"][0], **changes}  # type: ignore[index]
    return {**GOOD, "cues": [cue]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            broken(patterns={"de": [r"\bhilf (mir"]}),
            r"cues\.0: cue call-for-help: patterns\.de\.0: not a regular",
        ),
        (broken(category="anger"), r"cues\.0\.category: Input should be 'distress' or 'coercion'"),
        (broken(id="Call For Help"), r"cues\.0\.id: String should match pattern"),
        (broken(examples=[], patterns={}), r"cue call-for-help has neither examples nor patterns"),
        (broken(patterns={"german": ["x"]}), r"cues\.0\.patterns\.german\.\[key\]: String should match"),
        (broken(colour="red"), r"cues\.0\.colour: Extra inputs are not permitted"),
        ({**GOOD, "cues": GOOD["cues"] * 2}, r"cue id 'call-for-help' appears twice"),  # type: ignore[operator]
        ({**GOOD, "version": 0}, r"version: Input should be greater than or equal to 1"),
        ({**GOOD, "semantic_threshold": 1.5}, r"semantic_threshold: Input should be less than or equal to 1"),
        ({**GOOD, "cues": []}, r"cues: List should have at least 1 item"),
        (["not", "a", "mapping"], r"Input should be a valid dictionary"),
    ],
)
def test_a_bad_list_is_one_line_naming_the_file_and_the_entry(
    tmp_path: Path, data: object, message: str
) -> None:
    path = write(tmp_path, data)
    with pytest.raises(CueListError, match=message) as caught:
        load_cue_list(path)
    text = str(caught.value)
    assert text.startswith(f"invalid setting AIMA_CUES_FILE: {path}: ")
    assert "\n" not in text
    assert isinstance(caught.value, SettingsError)  # `aima` prints it as one line and exits 2


def test_a_missing_or_unreadable_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(CueListError, match=r"nothing\.yaml: cannot be read: No such file or directory"):
        load_cue_list(tmp_path / "nothing.yaml")
    path = tmp_path / "cues.yaml"
    path.write_text("version: 1\ncues: [\n")
    with pytest.raises(CueListError, match=r"cues\.yaml: not YAML at line 3"):
        load_cue_list(path)
    path.write_bytes(b"\xff\xfe version")
    with pytest.raises(CueListError, match="cannot be read"):
        load_cue_list(path)
    bad_json = tmp_path / "cues.json"
    bad_json.write_text("{")
    with pytest.raises(CueListError, match=r"cues\.json: not JSON"):
        load_cue_list(bad_json)


def test_the_function_does_not_start_with_a_bad_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIMA_CUES_FILE", str(write(tmp_path, broken(category="anger"))))
    deps = Deps(load_settings(profile="embedded", data_dir=tmp_path / "aima"))
    assert SPEC.build is not None
    with pytest.raises(CueListError, match=r"AIMA_CUES_FILE: .*cues\.0\.category"):
        SPEC.build(deps)
    assert "stores" not in deps.__dict__  # refused before any store was opened
    deps.close()


GERMAN = [
    ("Bitte hören Sie auf!", "plea-to-stop"),
    ("Hör auf, du tust mir weh", "plea-to-stop"),
    ("Aufhören, bitte!", "plea-to-stop"),
    ("Lass mich los!", "plea-to-stop"),
    ("Lassen Sie mich bitte gehen", "plea-to-be-released"),
    ("Hilfe!", "call-for-help"),
    ("Hilfe, Hilfe!", "call-for-help"),
    ("Helfen Sie mir!", "call-for-help"),
    ("Ruf die Polizei!", "call-for-help"),
    ("Ich bring dich um", "threat"),
    ("Sag es niemandem, sonst passiert was", "threat"),
    ("Sie lassen mich nicht gehen", "held-captive"),
    ("Ich werde hier gegen meinen Willen festgehalten", "held-captive"),
    ("Meine Hände sind gefesselt", "tied-up"),
    ("Sie haben mich im Keller eingesperrt", "locked-in"),
]
EVERYDAY_GERMAN = [
    "Danke für deine Hilfe beim Umzug",
    "Hilf mir mal beim Tragen",
    "Kannst du bitte aufhören, so laut Musik zu hören?",
    "Sag es niemandem, es ist eine Überraschung",
    "Wir haben den Laden um sechs abgeschlossen",
    "Der Hund war am Zaun festgemacht",
    "Ich will nach dem Film nach Hause",
]


@pytest.mark.parametrize(("text", "cue_id"), GERMAN)
def test_german_patterns_find_their_cue(text: str, cue_id: str) -> None:
    cues = load_cue_list()
    assert cue_id in {cue.id for cue in cues.cues if cue.match_text(text, "de") is not None}


def test_everyday_german_matches_no_pattern() -> None:
    cues: CueList = load_cue_list()
    flagged = [(text, cue.id) for text in EVERYDAY_GERMAN for cue in cues.cues if cue.match_text(text, "de")]
    assert flagged == []


def test_patterns_see_normalised_text_in_the_segments_language_only() -> None:
    assert normalise("  I\u2019m   LOCKED\tin! ") == "i'm locked in!"
    locked = next(cue for cue in load_cue_list().cues if cue.id == "locked-in")
    match = locked.match_text("They LOCKED me in.", "en")
    assert match is not None
    assert (match.language, match.words) == ("en", "locked me in")
    assert locked.match_text("They locked me in.", "de") is None  # German patterns for a German segment
    assert locked.match_text("Sie haben mich eingesperrt", "fr") is None  # no French patterns
    assert locked.match_text("Sie haben mich eingesperrt", None) is not None  # unknown: every language
