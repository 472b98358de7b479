"""Just enough of a Kubernetes API server for ``kopf run`` and the AnalysisJob resource, on loopback:
discovery, list and watch of AnalysisJobs, merge and JSON patches of the resource and of its status
subresource (refused with 422 when the result does not fit the CRD's schema, as the API server's
validation would), deletion held by finalizers, and events. Every request is recorded, so a test
can compare what the operator really asked for with its RBAC."""

from __future__ import annotations

import asyncio
import copy
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jsonpatch
from aiohttp import web

from operators.analysisjob.resource import GROUP, KIND, PLURAL, VERSION
from tests.operators.support import merge_patch, schema_errors

BASE = f"/apis/{GROUP}/{VERSION}"
DISCOVERY = {
    "/version": {"major": "1", "minor": "34", "gitVersion": "v1.34.0"},
    "/api": {"kind": "APIVersions", "versions": ["v1"]},
    "/api/v1": {
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            {
                "name": "events",
                "singularName": "event",
                "namespaced": True,
                "kind": "Event",
                "verbs": ["create"],
            },
            {
                "name": "namespaces",
                "singularName": "namespace",
                "namespaced": False,
                "kind": "Namespace",
                "verbs": ["list", "watch"],
            },
        ],
    },
    "/apis": {
        "kind": "APIGroupList",
        "groups": [
            {
                "name": name,
                "versions": [{"groupVersion": f"{name}/{version}", "version": version}],
                "preferredVersion": {"groupVersion": f"{name}/{version}", "version": version},
            }
            for name, version in ((GROUP, VERSION), ("apiextensions.k8s.io", "v1"))
        ],
    },
    BASE: {
        "kind": "APIResourceList",
        "groupVersion": f"{GROUP}/{VERSION}",
        "resources": [
            {
                "name": PLURAL,
                "singularName": "analysisjob",
                "namespaced": True,
                "kind": KIND,
                "shortNames": ["aj"],
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            },
            {
                "name": f"{PLURAL}/status",
                "singularName": "",
                "namespaced": True,
                "kind": KIND,
                "verbs": ["get", "patch", "update"],
            },
        ],
    },
    "/apis/apiextensions.k8s.io/v1": {
        "kind": "APIResourceList",
        "groupVersion": "apiextensions.k8s.io/v1",
        "resources": [
            {
                "name": "customresourcedefinitions",
                "singularName": "customresourcedefinition",
                "namespaced": False,
                "kind": "CustomResourceDefinition",
                "verbs": ["list", "watch"],
            }
        ],
    },
}


@dataclass
class FakeApiServer:
    """AnalysisJobs by (namespace, name); ``requests`` as (method, path, query string)."""

    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    watchers: list[asyncio.Queue[dict[str, Any] | None]] = field(default_factory=list)
    revision: int = 1

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{path:.*}", self.get)
        app.router.add_patch(BASE + "/namespaces/{namespace}/" + PLURAL + "/{name}", self.patch)
        app.router.add_patch(BASE + "/namespaces/{namespace}/" + PLURAL + "/{name}/status", self.patch)
        app.router.add_post("/api/v1/namespaces/{namespace}/events", self.event)
        app.middlewares.append(self._record)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path, request.query_string))
        response: web.StreamResponse = await handler(request)
        return response

    # --- what the test does, as kubectl would ----------------------------------------------------

    def create(self, body: dict[str, Any]) -> None:
        body = copy.deepcopy(body)
        body["metadata"].update(resourceVersion=self._next(), generation=1)
        assert not schema_errors(body), schema_errors(body)
        self.objects[_key(body)] = body
        self._broadcast("ADDED", body)

    def update(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """A merge patch of metadata and spec (``kubectl patch --type=merge``)."""
        self._store(merge_patch(self.objects[(namespace, name)], patch), status=False)

    def delete(self, namespace: str, name: str) -> None:
        body = copy.deepcopy(self.objects[(namespace, name)])
        body["metadata"]["deletionTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._store(body, status=False)

    # --- the API -----------------------------------------------------------------------------------

    async def get(self, request: web.Request) -> web.StreamResponse:
        if request.path in DISCOVERY:
            return web.json_response(DISCOVERY[request.path])
        if request.path != f"{BASE}/{PLURAL}":
            return _status(404, "NotFound", f"no {request.path} here")
        if request.query.get("watch") == "true":
            return await self._watch(request)
        items = [copy.deepcopy(body) for body in self.objects.values()]
        return web.json_response(
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": f"{KIND}List",
                "metadata": {"resourceVersion": str(self.revision)},
                "items": items,
            }
        )

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.watchers.append(queue)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            while (event := await queue.get()) is not None:
                await response.write(json.dumps(event).encode() + b"\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.watchers.remove(queue)
        return response

    async def patch(self, request: web.Request) -> web.Response:
        key = (request.match_info["namespace"], request.match_info["name"])
        if key not in self.objects:
            return _status(404, "NotFound", f"{key} not found")
        status = request.path.endswith("/status")
        current = self.objects[key]
        payload = await request.json()
        if request.content_type == "application/json-patch+json":
            try:
                patched = jsonpatch.apply_patch(current, payload)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                return _status(422, "Invalid", f"the patch cannot be applied: {exc}")
        elif request.content_type == "application/merge-patch+json":
            patched = merge_patch(current, payload)
        else:
            return _status(415, "UnsupportedMediaType", request.content_type)
        errors = schema_errors(patched)
        if errors:
            self.refused.append(f"{request.path}: {errors}")
            return _status(422, "Invalid", "; ".join(errors))
        return web.json_response(self._store(patched, status=status))

    async def event(self, request: web.Request) -> web.Response:
        self.events.append(await request.json())
        return web.json_response({}, status=201)

    # --- storage -----------------------------------------------------------------------------------

    def _store(self, body: dict[str, Any], *, status: bool) -> dict[str, Any]:
        """Keep what a patch of the resource (``status``: of its status subresource) may change."""
        key = _key(body)
        current = self.objects[key]
        stored = copy.deepcopy(current)
        if status:
            stored["status"] = body.get("status", {})
        else:
            stored["metadata"] = {**body["metadata"], "generation": current["metadata"]["generation"]}
            if body.get("spec") != current.get("spec"):
                stored["spec"] = body["spec"]
                stored["metadata"]["generation"] += 1
        stored["metadata"]["resourceVersion"] = self._next()
        if stored["metadata"].get("deletionTimestamp") and not stored["metadata"].get("finalizers"):
            del self.objects[key]
            self._broadcast("DELETED", stored)
        else:
            self.objects[key] = stored
            self._broadcast("MODIFIED", stored)
        return stored

    def close(self) -> None:
        """End every watch stream."""
        for queue in self.watchers:
            queue.put_nowait(None)

    def _broadcast(self, kind: str, body: dict[str, Any]) -> None:
        for queue in self.watchers:
            queue.put_nowait({"type": kind, "object": copy.deepcopy(body)})

    def _next(self) -> str:
        self.revision += 1
        return str(self.revision)


def _key(body: dict[str, Any]) -> tuple[str, str]:
    return body["metadata"]["namespace"], body["metadata"]["name"]


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }
    return web.json_response(body, status=code)
