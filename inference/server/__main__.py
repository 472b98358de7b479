"""``python -m inference.server [--host H] [--port P] [--model-name NAME] [--preload]``.

Exits with 2 and one line naming the variable when a setting is invalid.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from aima.settings import SettingsError
from aima.telemetry.logging import setup_logging

DEFAULT_PORT = 8080


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m inference.server",
        description="AIMA's CPU text embedder over the Open Inference Protocol (KServe v2, REST).",
    )
    parser.add_argument(
        "--host",
        default="0.0.0.0",  # noqa: S104 - a pod's server listens on its pod address
        help="address to listen on (default 0.0.0.0)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PORT") or DEFAULT_PORT),
        help=f"port to listen on (default: $PORT, else {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--model-name",
        "--model_name",
        dest="model_name",
        default="minilm",
        help="the model's name in the v2 routes (default minilm)",
    )
    parser.add_argument(
        "--max-batch", type=int, default=256, help="most texts in one infer request (default 256)"
    )
    parser.add_argument(
        "--max-body-bytes", type=int, default=16 * 1024 * 1024, help="largest request body (default 16 MiB)"
    )
    parser.add_argument("--preload", action="store_true", help="load the model at start-up, not on first use")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"--port {args.port} is not a port")
    if args.max_batch < 1 or args.max_body_bytes < 1024:
        parser.error("--max-batch must be >= 1 and --max-body-bytes >= 1024")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from inference.server.served import ServedTextEmbedder, ServerSettings

    try:
        settings = ServerSettings.load()
    except SettingsError as exc:
        print(f"aima model server: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_json, service="aima-models")

    import uvicorn

    from inference.server.app import create_app

    served = ServedTextEmbedder.from_settings(settings, args.model_name, max_batch=args.max_batch)
    app = create_app(
        [served],
        health_timeout=settings.health_timeout,
        max_body_bytes=args.max_body_bytes,
        preload=args.preload,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
