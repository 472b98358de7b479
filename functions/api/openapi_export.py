"""Write (or, with ``--check``, compare) the gateway's OpenAPI document for the web app's client.

``python -m functions.api.openapi_export`` rewrites ``functions/api/web/openapi.json`` from the
gateway's routes; the web app generates its typed client from that file (``npm run generate``,
openapi-typescript), so it can call nothing the API does not declare. ``--check`` exits 1 when the
file is stale (``make lint`` runs it).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path

DOCUMENT = Path(__file__).resolve().parent / "web" / "openapi.json"


def rendered() -> str:
    """The document as checked in: the embedded gateway's ``/api/v1/openapi.json``, keys sorted."""
    from aima.settings import load_settings
    from functions.api.app import create_app
    from functions.api.services import ApiServices

    with tempfile.TemporaryDirectory() as folder:
        services = ApiServices.open(load_settings(profile="embedded", data_dir=Path(folder)))
        try:
            document = create_app(services).openapi()
        finally:
            asyncio.run(services.close())
    return json.dumps(document, indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = rendered()
    if "--check" in args:
        if not DOCUMENT.exists() or DOCUMENT.read_text() != text:
            print(f"{DOCUMENT} is out of date with the gateway's routes (run python -m {__spec__.name})")
            return 1
        return 0
    DOCUMENT.parent.mkdir(parents=True, exist_ok=True)
    DOCUMENT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
