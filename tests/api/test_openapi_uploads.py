"""The published OpenAPI document declares everything the upload routes need, so that generated clients
and fuzzers can call them: the headers they read as header parameters, the tus answers' headers and
statuses, the resumable bodies as binary, and the bulk body as ``multipart/form-data`` with an array
of binary files."""

from __future__ import annotations

from typing import Any

from openapi_spec_validator import validate

from tests.api.conftest import World

UPLOADS = "/api/v1/cases/{case_id}/uploads"
UPLOAD = UPLOADS + "/{upload_id}"


async def document(world: World) -> dict[str, Any]:
    response = await world.client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    schema: dict[str, Any] = response.json()
    validate(schema)
    return schema


def headers(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "header"}


async def test_upload_headers_are_declared_as_header_parameters(world: World) -> None:
    paths = (await document(world))["paths"]
    tus = {"required": True, "schema": {"type": "string", "default": "1.0.0", "example": "1.0.0"}}
    expected = {
        ("post", UPLOADS): {
            "Tus-Resumable": True,
            "Upload-Length": True,
            "Upload-Metadata": False,
            "X-AIMA-Filename": False,
        },
        ("head", UPLOAD): {"Tus-Resumable": True},
        ("patch", UPLOAD): {"Tus-Resumable": True, "Upload-Offset": True, "Upload-Checksum": False},
        ("delete", UPLOAD): {"Tus-Resumable": True},
        ("post", "/api/v1/cases/{case_id}/media"): {"X-AIMA-Filename": False},
    }
    for (method, path), names in expected.items():
        declared = headers(paths[path][method])
        assert {name: declared[name]["required"] for name in names} == names, (method, path)
        if "Tus-Resumable" in names:
            assert {k: declared["Tus-Resumable"][k] for k in tus} == tus
    for method, path, name in (("post", UPLOADS, "Upload-Length"), ("patch", UPLOAD, "Upload-Offset")):
        schema = headers(paths[path][method])[name]["schema"]
        assert (schema["type"], schema["minimum"]) == ("integer", 0)

    patch = paths[UPLOAD]["patch"]
    body = patch["requestBody"]["content"]["application/offset+octet-stream"]["schema"]
    assert body == {"type": "string", "format": "binary"}
    assert {"204", "409", "412", "413", "415", "460"} <= set(patch["responses"])
    assert {"Upload-Offset", "Tus-Resumable", "X-AIMA-Media-Id", "X-AIMA-Duplicate-Of"} <= set(
        patch["responses"]["204"]["headers"]
    )
    assert "Upload-Offset" in patch["responses"]["409"]["headers"]
    created = paths[UPLOADS]["post"]["responses"]["201"]["headers"]
    assert {"Location", "Tus-Resumable", "Upload-Offset"} <= set(created)
    head = paths[UPLOAD]["head"]["responses"]["200"]["headers"]
    assert {"Upload-Offset", "Upload-Length", "Upload-Metadata", "Cache-Control", "X-AIMA-Media-Id"} <= set(
        head
    )
    options = paths[UPLOADS]["options"]
    assert options["x-aima-action"] == "media.upload"
    discovery = options["responses"]["204"]["headers"]
    assert {"Tus-Version", "Tus-Extension", "Tus-Max-Size", "Tus-Checksum-Algorithm"} <= set(discovery)


async def test_the_bulk_body_is_multipart_with_an_array_of_binary_files(world: World) -> None:
    operation = (await document(world))["paths"]["/api/v1/cases/{case_id}/media:bulk"]["post"]
    content = operation["requestBody"]["content"]
    assert list(content) == ["multipart/form-data"]
    schema = content["multipart/form-data"]["schema"]
    assert schema["type"] == "object"
    assert schema["required"] == ["files"]
    assert schema["properties"]["files"]["type"] == "array"
    assert schema["properties"]["files"]["items"] == {"type": "string", "format": "binary"}
    single = (await document(world))["paths"]["/api/v1/cases/{case_id}/media"]["post"]["requestBody"]
    assert single["content"]["application/octet-stream"]["schema"] == {"type": "string", "format": "binary"}
