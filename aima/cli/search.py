"""``aima search CASE "query"``: a case's transcripts searched by meaning, as over the API.

Works in one tenant like the admin commands (`aima.cli.context`: ``--tenant``, by default the
bootstrap tenant), embeds the query with the text embedder of ``AIMA_MODELS__TEXT_EMBEDDER__*`` and
prints the nearest segments, best first: score, media id, file name, time, speaker, language, text
and (for a non-English segment) its English translation; ``--json`` prints what the API answers.
Every search is one ``media.read`` audit record with the query, like the API's. A blank or overlong
query, an unknown case or a missing text embedder ends with one line and exit 1.
"""

from __future__ import annotations

import json

import click

from aima.access.scope import Scope
from aima.cli import CliError
from aima.cli.context import Kernel
from aima.settings import load_settings
from aima.storage.audit import Outcome
from aima.storage.speech_index import MAX_RESULTS, InvalidQuery, SegmentHit, SpeechIndex, check_query
from aima.storage.transcripts import TranscriptRepository
from inference.errors import ModelError
from inference.pool import ModelPool
from inference.tasks.text import TextEmbedder, TextsInput

AUDITED_QUERY = 200


@click.command("search")
@click.argument("case_id")
@click.argument("query")
@click.option("--limit", type=click.IntRange(1, MAX_RESULTS), default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option(
    "--tenant", default=None, help="Tenant name (default: the bootstrap tenant, AIMA_BOOTSTRAP_TENANT)."
)
def search_command(case_id: str, query: str, limit: int, as_json: bool, tenant: str | None) -> None:
    """Search a case's transcripts by meaning: the segments nearest to QUERY, best first."""
    try:
        query = check_query(query)
    except InvalidQuery as exc:
        raise CliError(str(exc)) from None
    settings = load_settings()
    k = Kernel(settings, tenant)
    try:
        actor = k.actor
        scope = Scope.for_case(actor.tenant_id, case_id, actor.name)
        if k.cases.get(scope, case_id) is None:
            raise CliError(f"no case {case_id}")
        index = SpeechIndex(k.stores.vectors, TranscriptRepository(k.stores.documents), k.media)
        try:
            hits = _search(index, scope, case_id, query, limit, ModelPool.from_settings(settings))
        except CliError as exc:
            _audit(k, case_id, query, outcome="failed", error=exc.message)
            raise
        _audit(k, case_id, query, results=len(hits))
    finally:
        k.close()
    if as_json:
        results = [hit.model_dump(mode="json") for hit in hits]
        click.echo(json.dumps({"query": query, "results": results}, indent=2, ensure_ascii=False))
        return
    if not hits:
        click.echo("no segments found", err=True)
    for hit in hits:
        click.echo(_line(hit))


def _search(
    index: SpeechIndex, scope: Scope, case_id: str, query: str, limit: int, models: ModelPool
) -> list[SegmentHit]:
    if not index.has_texts(case_id):
        return []
    try:
        model = models.get(TextEmbedder)
        vector = model.predict(TextsInput(texts=[query])).vectors[0]
    except ModelError as exc:
        raise CliError(f"search needs the text embedder: {exc.reason}") from None
    finally:
        models.close()
    return index.search(scope, case_id, vector, limit)


def _audit(
    k: Kernel, case_id: str, query: str, *, outcome: Outcome = "allowed", results: int = 0, error: str = ""
) -> None:
    detail: dict[str, object] = {"via": "cli", "query": query[:AUDITED_QUERY]}
    detail |= {"error": error} if error else {"results": results}
    k.audit.record_now(
        tenant_id=k.actor.tenant_id,
        actor=k.actor.name,
        action="media.read",
        outcome=outcome,
        case_id=case_id,
        object=f"case/{case_id}/search",
        detail=detail,
    )


def _line(hit: SegmentHit) -> str:
    fields = [
        f"{hit.score:.3f}",
        hit.media_id,
        hit.filename or "-",
        f"{hit.start:.1f}-{hit.end:.1f}s",
        f"ocr:{hit.frame_id}" if hit.source == "ocr" else hit.speaker or "-",
        hit.language or "-",
        hit.text,
    ]
    if hit.translation:
        fields.append(f"(English: {hit.translation})")
    return "\t".join(fields)
