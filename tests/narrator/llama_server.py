"""llama.cpp's own HTTP server (tools/server, as ``llama-server`` runs it) on loopback, for tests.

The server comes from the ``xllamacpp`` wheel (PyPI ships it prebuilt for CPU; ``llama-cpp-python``
has only its source, a build of about 11 minutes on 2 cores). It serves the OpenAI-compatible routes
(``GET /v1/models``, ``POST /v1/chat/completions`` with ``response_format`` JSON-schema-constrained
output) from one GGUF model:

    python -m tests.narrator.llama_server MODEL.gguf URL_FILE [--alias NAME] [--threads N] [--context N]

It binds 127.0.0.1 on a free port, writes its base URL (``http://127.0.0.1:PORT``) to ``URL_FILE``
once the model is loaded, and serves until its standard input closes (the test process holding the
other end ended) or it gets SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("url_file", type=Path)
    parser.add_argument("--alias", default="gemma3-270m")
    # one thread: on 2 busy cores llama.cpp's second thread waits at every step's barrier for a core
    # (the same answer took 70-113 s on two threads and 7-19 s on one, with other tests running)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--context", type=int, default=2048)
    args = parser.parse_args()

    import xllamacpp  # the only import that needs the wheel

    params = xllamacpp.CommonParams()
    params.model.path = str(args.model)
    params.model_alias = [args.alias]  # a set of names in llama.cpp; a bare string is split into letters
    params.hostnames = ["127.0.0.1"]
    params.port = 0  # llama.cpp binds any free port; listening_address names it
    params.n_ctx = args.context
    params.n_parallel = 1
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    server = xllamacpp.Server(params)  # returns once the model is loaded and the port is bound

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=_set_at_end_of_input, args=(stop,), daemon=True).start()
    partial = args.url_file.with_suffix(".partial")
    partial.write_text(str(server.listening_address))
    partial.replace(args.url_file)
    stop.wait()
    del server  # stops the HTTP server and frees the model


def _set_at_end_of_input(stop: threading.Event) -> None:
    while os.read(sys.stdin.fileno(), 4096):  # unbuffered: nothing to lock at shutdown
        pass
    stop.set()


if __name__ == "__main__":
    main()
