"""Offline validation of Kubernetes objects, for the tests of AIMA's Helm chart and manifests.

`validate(obj)` returns the problems of one object, as ``"<field path>: <message>"`` strings (an empty
list: valid), the way an API server with strict field validation (kubectl's default) would see them:

- Built-in kinds (v1, apps/v1, batch/v1, policy/v1, networking.k8s.io/v1, rbac.authorization.k8s.io/v1,
  apiextensions.k8s.io/v1, ...) are checked against the strict Kubernetes OpenAPI schemas of
  `KUBERNETES_VERSION` bundled with ``kubernetes_validate`` (the files and resolution its
  ``validate(obj, version, strict=True)`` uses, compiled once, and every error reported rather
  than the first): an unknown field is an error.
- Custom kinds are checked with ``jsonschema`` (Draft 2020-12) against the ``openAPIV3Schema`` of the
  served version in the CustomResourceDefinitions vendored under ``tests/deploy/crds`` (Knative
  Serving and Eventing, eventing-natss, KServe, prometheus-operator; versions in
  ``tests/deploy/crds/VERSIONS.md``) and AIMA's own ``operators/analysisjob/crd.yaml``. The CRD
  schema is read as the API server reads it: ``x-kubernetes-int-or-string`` takes an integer or a
  string, an object with ``x-kubernetes-preserve-unknown-fields`` (or without ``properties``) takes
  any field, any other object with ``properties`` refuses an unknown one (the API server prunes it,
  or refuses it under strict field validation), ``apiVersion``/``kind``/``metadata`` are implied at
  the root and in embedded resources, ``x-kubernetes-list-type`` set/map refuses duplicates, and a
  null field value is dropped first (the API server prunes nulls of fields not ``nullable``).
  A custom object's ``metadata`` is checked against the Kubernetes ObjectMeta schema. CEL rules
  (``x-kubernetes-validations``) and admission webhooks are not evaluated.
- Every object needs a ``metadata.name`` valid for its kind (a DNS-1123 subdomain unless the kind is
  stricter: a DNS-1035 label for a v1 Service, Knative Serving objects and a KServe
  InferenceService; see `name_problems`), and a ``metadata.namespace`` that is a DNS-1123 label.
- A kind with neither a Kubernetes schema nor a CRD is an error: ``no schema for <apiVersion>/<kind>``.

Schemas are loaded and compiled once per process.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import kubernetes_validate.version
import yaml
from kubernetes_validate import utils as kv_utils
from referencing import Registry, Resource

KUBERNETES_VERSION = "1.37"
"""The Kubernetes version whose OpenAPI schemas (bundled with kubernetes_validate) check built-ins."""

CRD_DIR = Path(__file__).resolve().parent / "crds"
"""The vendored CustomResourceDefinitions: ``*.yaml`` or ``*.yaml.gz``, several documents a file."""

REPO_ROOT = Path(__file__).resolve().parents[2]
AIMA_CRDS = (REPO_ROOT / "operators" / "analysisjob" / "crd.yaml",)
"""AIMA's own CustomResourceDefinitions, read where they live (not copied)."""

_IMPLIED_ROOT_FIELDS = ("apiVersion", "kind", "metadata")

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_GO_FLAGS = re.compile(r"\(\?([imsU]+)\)")
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})",
)


# --- names -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NameRule:
    """How a kind's ``metadata.name`` is validated: a regular expression and a maximum length."""

    label: str
    pattern: re.Pattern[str] | None
    max_length: int
    why: str = ""

    def problems(self, name: str, field: str = "metadata.name", prefix: bool = False) -> list[str]:
        """The problems of ``name`` under this rule (``prefix``: a generateName, which may end in '-')."""
        value = name[:-1] + "a" if prefix and name.endswith("-") else name
        out: list[str] = []
        if self.pattern is None:  # a path segment (RBAC names such as "system:aggregate-to-view")
            if value in (".", "..") or "/" in value or "%" in value or not value:
                out.append(f"{field}: {name!r} is not a valid {self.label}")
        elif not self.pattern.fullmatch(value):
            out.append(f"{field}: {name!r} is not a valid {self.label}{self.why}")
        if len(name) > self.max_length:
            out.append(f"{field}: {name!r} is longer than {self.max_length} characters{self.why}")
        return out


SUBDOMAIN = NameRule(
    "DNS-1123 subdomain (lowercase letters, digits, '-' and '.', starting and ending alphanumeric)",
    _DNS1123_SUBDOMAIN,
    253,
)
DNS1123_LABEL = NameRule(
    "DNS-1123 label (lowercase letters, digits and '-', starting and ending alphanumeric)",
    _DNS1123_LABEL,
    63,
)
DNS1035_LABEL = NameRule(
    "DNS-1035 label (lowercase letters, digits and '-', starting with a letter, ending alphanumeric)",
    _DNS1035_LABEL,
    63,
)
PATH_SEGMENT = NameRule("path segment name (not '.' or '..', no '/' or '%')", None, 253)

_NAME_RULES: dict[tuple[str, str], NameRule] = {
    ("", "Service"): DNS1035_LABEL,
    ("", "Namespace"): DNS1123_LABEL,
    ("batch", "CronJob"): NameRule(SUBDOMAIN.label, _DNS1123_SUBDOMAIN, 52, " (a CronJob's Jobs add 11)"),
    ("batch", "Job"): NameRule(SUBDOMAIN.label, _DNS1123_SUBDOMAIN, 63, " (it is a label value)"),
    ("rbac.authorization.k8s.io", "*"): PATH_SEGMENT,
    ("serving.knative.dev", "*"): NameRule(
        DNS1035_LABEL.label, _DNS1035_LABEL, 63, " (Knative's ValidateObjectMetadata)"
    ),
    ("serving.kserve.io", "InferenceService"): NameRule(
        DNS1035_LABEL.label, _DNS1035_LABEL, 63, " (KServe's IsvcNameFmt; it names Services)"
    ),
}


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def name_rule(api_version: str, kind: str) -> NameRule:
    """The rule ``metadata.name`` follows for this kind (the API server's default: a DNS-1123 subdomain)."""
    group = _group(api_version)
    return _NAME_RULES.get((group, kind)) or _NAME_RULES.get((group, "*")) or SUBDOMAIN


def name_problems(obj: Mapping[str, Any]) -> list[str]:
    """The problems of ``metadata.name``/``generateName``/``namespace`` of ``obj`` for its kind."""
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return ["metadata: required (an object with a name)"]
    rule = name_rule(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
    name, generate = meta.get("name"), meta.get("generateName")
    out: list[str] = []
    if isinstance(name, str) and name:
        out += rule.problems(name)
    elif isinstance(generate, str) and generate:
        out += rule.problems(generate, "metadata.generateName", prefix=True)
    else:
        out.append("metadata.name: required (a non-empty string)")
    namespace = meta.get("namespace")
    if isinstance(namespace, str):
        out += DNS1123_LABEL.problems(namespace, "metadata.namespace")
    if obj.get("kind") == "CustomResourceDefinition" and isinstance(name, str):
        spec = obj.get("spec") or {}
        expected = f"{(spec.get('names') or {}).get('plural')}.{spec.get('group')}"
        if name != expected:
            out.append(f"metadata.name: {name!r} must be <spec.names.plural>.<spec.group>: {expected!r}")
    return out


# --- error formatting --------------------------------------------------------------------------------

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def field_path(path: Iterable[Any]) -> str:
    """A field path as kubectl writes it: ``spec.template.spec.containers[0].image``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(str(part)):
            out += f".{part}" if out else str(part)
        else:
            out += f"[{str(part)!r}]"
    return out or "<root>"


def _int_or_string(schema: Mapping[str, Any]) -> bool:
    """Whether ``schema`` is an int-or-string: the CRD marker, or Kubernetes' IntOrString definition."""
    if schema.get("x-kubernetes-int-or-string"):
        return True
    branches = schema.get("anyOf") or schema.get("oneOf") or []
    types: set[str] = set()
    for branch in branches:
        kinds = branch.get("type") if isinstance(branch, Mapping) else None
        types.update([kinds] if isinstance(kinds, str) else kinds or ["?"])
    return types - {"null"} == {"integer", "string"} and len(branches) == 2


def _messages(error: jsonschema.ValidationError) -> list[str]:
    """One or more ``path: message`` lines for a schema error; one line per unknown field."""
    path = list(error.absolute_path)
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        known = set(schema.get("properties") or {})
        patterns = [re.compile(p) for p in schema.get("patternProperties") or {}]
        unknown = [k for k in error.instance if k not in known and not any(p.search(k) for p in patterns)]
        if unknown:
            return [f"{field_path([*path, k])}: unknown field" for k in unknown]
    if _int_or_string(schema) and error.validator in ("anyOf", "oneOf", "type"):
        return [f"{field_path(path)}: {error.instance!r} is not an integer or a string"]
    if error.validator == "anyOf" and error.context:  # the nearest branch's reason
        best = jsonschema.exceptions.best_match(error.context)
        return [f"{field_path(path)}: {error.message} ({best.message})"]
    return [f"{field_path(path)}: {error.message}"]


# --- built-in kinds --------------------------------------------------------------------------------
#
# kubernetes_validate's own validate() reloads its 1.8 MB of definitions on every call and stops at the
# first error; its bundled strict schemas are used here the same way (same files, same resolution,
# Draft 2020-12), compiled once per kind, and every error is reported.

_K8S_DEFINITIONS = "https://kubernetes.io/api/_definitions.json"
_OBJECT_META = f"{_K8S_DEFINITIONS}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


@cache
def _k8s_schema_dir() -> Traversable:
    """kubernetes_validate's strict schemas of `KUBERNETES_VERSION`."""
    versions = [v for v in kv_utils.all_versions() if kv_utils.major_minor(v) == KUBERNETES_VERSION]
    if not versions:
        installed = kubernetes_validate.version.__version__
        raise RuntimeError(
            f"kubernetes_validate {installed} has no schemas of Kubernetes {KUBERNETES_VERSION}"
        )
    return files("kubernetes_validate").joinpath("kubernetes-json-schema", f"v{versions[-1]}-local-strict")


@cache
def _k8s_registry() -> Registry[Any]:
    """The Kubernetes definitions every built-in schema refers to."""
    definitions = json.loads(_k8s_schema_dir().joinpath("_definitions.json").read_text(encoding="utf-8"))
    registry: Registry[Any] = Registry().with_resource(_K8S_DEFINITIONS, Resource.from_contents(definitions))
    return registry


@cache
def _builtin_validator(api_version: str, kind: str) -> jsonschema.Draft202012Validator | None:
    """The compiled strict schema of a built-in kind (``None``: Kubernetes has none for it)."""
    # kubernetes_validate's file naming: rbac.authorization.k8s.io/v1 Role -> role-rbac-v1.json
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    if not re.fullmatch(r"[a-z0-9]+", kind.lower()) or not re.fullmatch(r"[a-z0-9-]+", group_version):
        return None
    schema_file = _k8s_schema_dir().joinpath(f"{kind.lower()}-{group_version}.json")
    if not schema_file.is_file():
        return None
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    if api_version not in (schema.get("properties", {}).get("apiVersion", {}).get("enum") or [api_version]):
        return None  # e.g. apps.example.com/v1 Deployment: not apps/v1's
    registry = Resource.from_contents(schema) @ _k8s_registry()
    return jsonschema.Draft202012Validator(schema, registry=registry)


@cache
def _metadata_validator() -> jsonschema.Draft202012Validator:
    """Checks ``metadata`` of a custom object as the API server does: as an ObjectMeta."""
    schema = {"type": "object", "properties": {"metadata": {"$ref": _OBJECT_META}}}
    return jsonschema.Draft202012Validator(schema, registry=_k8s_registry())


def _problems(validator: Any, instance: Any) -> list[str]:
    errors = sorted(
        validator.iter_errors(instance), key=lambda e: ([str(p) for p in e.absolute_path], e.message)
    )
    return [line for error in errors for line in _messages(error)]


# --- custom kinds ----------------------------------------------------------------------------------


def _structural(node: Any, root: bool = False, metadata: bool = False) -> Any:
    """A CRD schema node as JSON Schema with the API server's reading of its ``x-kubernetes-*`` keys."""
    if not isinstance(node, Mapping):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {
                name: _structural(sub, metadata=(root and name == "metadata")) for name, sub in value.items()
            }
        elif key in ("items", "additionalProperties", "not") and isinstance(value, Mapping):
            out[key] = _structural(value)
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [_structural(sub) for sub in value]
        elif key in ("default", "example", "enum"):
            out[key] = value
        elif key == "pattern" and isinstance(value, str):
            out[key] = _python_regex(value)
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and isinstance(value, bool):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            if value and bound in node:  # OpenAPI 3.0's boolean form
                out[key] = node[bound]
        else:
            out[key] = value
    if "exclusiveMinimum" in out and "minimum" in out and out["exclusiveMinimum"] == out["minimum"]:
        del out["minimum"]
    if "exclusiveMaximum" in out and "maximum" in out and out["exclusiveMaximum"] == out["maximum"]:
        del out["maximum"]
    if node.get("x-kubernetes-int-or-string") and "type" not in out and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if root or node.get("x-kubernetes-embedded-resource"):
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
        and not metadata  # ObjectMeta is checked on its own; a CRD may only narrow name/generateName
    ):
        out["additionalProperties"] = False
    return out


def _python_regex(pattern: str) -> str:
    """A Go (RE2) ``pattern`` of a CRD for Python's ``re``: flag groups such as ``^(?i)`` moved first."""
    flags = "".join(sorted(set("".join(_GO_FLAGS.findall(pattern))) - {"U"}))
    python = _GO_FLAGS.sub("", pattern).replace(r"\z", r"\Z")
    python = f"(?{flags}){python}" if flags else python
    try:
        re.compile(python)
    except re.error as error:
        raise ValueError(f"CRD pattern {pattern!r} is not usable by Python's re: {error}") from error
    return python


def _drop_nulls(value: Any) -> Any:
    """``value`` without null map entries, as the API server prunes them before validating."""
    if isinstance(value, Mapping):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _list_type(
    validator: Any, list_type: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    """``x-kubernetes-list-type``: a ``set`` has no duplicate items, a ``map`` no duplicate keys."""
    if not isinstance(instance, list):
        return
    seen: list[Any] = []
    for index, item in enumerate(instance):
        if list_type == "set":
            key: Any = item
        elif list_type == "map" and isinstance(item, Mapping):
            key = tuple(item.get(k) for k in schema.get("x-kubernetes-list-map-keys") or ())
        else:
            continue
        if key in seen:
            error = jsonschema.ValidationError(
                f"duplicate entry {key!r} (x-kubernetes-list-type: {list_type})"
            )
            error.path.append(index)
            yield error
        else:
            seen.append(key)


def _is_date_time(value: object) -> bool:
    """``format: date-time``: RFC 3339 with a time zone, as Kubernetes checks it."""
    if not isinstance(value, str):
        return True
    if not _RFC3339.fullmatch(value):
        return False
    datetime.fromisoformat(value.upper().replace("Z", "+00:00"))  # ValueError: not a real time
    return True


def _is_date(value: object) -> bool:
    """``format: date``: a full date, YYYY-MM-DD."""
    if not isinstance(value, str):
        return True
    return bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", value)) and bool(date.fromisoformat(value))


_FORMATS = jsonschema.FormatChecker(formats=())
"""The formats the API server checks that CRDs here use; other formats (int32, byte ...) pass."""
_FORMATS.checks("date-time", raises=ValueError)(_is_date_time)
_FORMATS.checks("date", raises=ValueError)(_is_date)


_CrdValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, {"x-kubernetes-list-type": _list_type}
)


@dataclass(frozen=True)
class CrdVersion:
    """One served version of a CRD: its kind, the file it came from, and its compiled schema."""

    api_version: str
    kind: str
    source: str
    validator: Any


def _crd_files() -> list[Path]:
    return sorted([*CRD_DIR.glob("*.yaml"), *CRD_DIR.glob("*.yaml.gz")]) + list(AIMA_CRDS)


def _read_documents(path: Path) -> list[Any]:
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as stream:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        return [doc for doc in yaml.load_all(stream, Loader=loader) if doc]


@cache
def crd_schemas() -> dict[tuple[str, str], CrdVersion]:
    """The compiled schema of every served version of every known CRD, by (apiVersion, kind)."""
    out: dict[tuple[str, str], CrdVersion] = {}
    for path in _crd_files():
        for doc in _read_documents(path):
            if doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                if not version.get("served", True):
                    continue
                schema = (version.get("schema") or spec.get("validation") or {}).get("openAPIV3Schema")
                schema = _structural(
                    schema or {"type": "object", "x-kubernetes-preserve-unknown-fields": True}, root=True
                )
                key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                source = str(path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path)
                out[key] = CrdVersion(*key, source, _CrdValidator(schema, format_checker=_FORMATS))
    return out


def crd_kinds() -> set[tuple[str, str]]:
    """The (apiVersion, kind) of every served version of the vendored CRDs and AIMA's own."""
    return set(crd_schemas())


def _custom_problems(obj: Mapping[str, Any], crd: CrdVersion) -> list[str]:
    instance = _drop_nulls(obj)
    return _problems(crd.validator, instance) + _problems(_metadata_validator(), instance)


# --- the API -----------------------------------------------------------------------------------------


def validate(obj: dict[str, Any]) -> list[str]:
    """The problems of one Kubernetes object, as ``"<field path>: <message>"``; empty if it is valid."""
    if not isinstance(obj, Mapping):
        return [f"<root>: not an object but {type(obj).__name__}"]
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not api_version or not isinstance(kind, str) or not kind:
        return ["apiVersion, kind: required (non-empty strings)"]
    crd = crd_schemas().get((api_version, kind))
    if crd is not None:
        problems = _custom_problems(obj, crd)
    elif (builtin := _builtin_validator(api_version, kind)) is not None:
        problems = _problems(builtin, obj)
    else:
        return [f"no schema for {api_version}/{kind}"]
    return problems + name_problems(obj)


def validate_all(objects: Iterable[dict[str, Any] | None]) -> list[str]:
    """The problems of several objects (e.g. a rendered chart, empty documents as None), each prefixed
    ``<Kind>/<name>: ``."""
    out: list[str] = []
    for obj in objects:
        if obj is None:
            continue
        meta = obj.get("metadata") if isinstance(obj, Mapping) else None
        name = meta.get("name") if isinstance(meta, Mapping) else None
        kind = obj.get("kind") if isinstance(obj, Mapping) else None
        out += [f"{kind}/{name}: {problem}" for problem in validate(obj)]
    return out
