"""The processes of `aima dev up` and the state file that lets `aima dev down` stop exactly them.

A process is known by its pid **and** its start time (field 22 of ``/proc/PID/stat``, clock ticks
since boot): a pid that the kernel has given to another process since does not match, so it is
never signalled. Each process starts in a session of its own (it outlives ``aima dev up`` and is
the leader of its process group), writes stdout and stderr to one log file, and is stopped with
SIGTERM to its group, then SIGKILL after a grace period.

The state file (``state.json``) holds the processes and the settings a client needs, without
secrets; the environment file (``env``, mode 0600) holds the same settings with the secrets, as
``export NAME='value'`` lines to source in a shell. `read_state` reads both into a `DevStack`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr

from aima.settings import ENV_PREFIX, Settings, load_settings

STATE_FILE = "state.json"
ENV_FILE = "env"
LOCK_FILE = "lock"
LOG_DIR = "logs"
STATE_VERSION = 1

Kind = Literal["function", "helper"]


class DevStackError(RuntimeError):
    """The development stack cannot do what was asked; the message is one line."""


def start_time_of(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), or None if it does not run (a zombie
    does not run)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # the name in parentheses may hold spaces
    if not fields or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def processes_with_argument(argument: str) -> list[int]:
    """Pids of the running processes that have ``argument`` as one of their command-line arguments."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argument.encode() in argv and start_time_of(int(entry.name)) is not None:
            found.append(int(entry.name))
    return found


@dataclass(frozen=True)
class DevProcess:
    """One process of the stack: a function (``aima serve NAME``) or a helper (a store's server)."""

    name: str
    kind: Kind
    pid: int
    start_time: int
    port: int
    log: str
    argv: tuple[str, ...]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        """True while this very process runs (the pid and its start time both match)."""
        return start_time_of(self.pid) == self.start_time

    def signal(self, signum: int) -> bool:
        """Send ``signum`` to the process's group (to the process alone if it leads none); False if
        the process no longer runs."""
        if not self.alive():
            return False
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(self.pid) == self.pid:
                os.killpg(self.pid, signum)
            else:
                os.kill(self.pid, signum)
            return True
        return False

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> DevProcess:
        return cls(
            name=str(raw["name"]),
            kind="helper" if raw["kind"] == "helper" else "function",
            pid=int(raw["pid"]),
            start_time=int(raw["start_time"]),
            port=int(raw["port"]),
            log=str(raw["log"]),
            argv=tuple(str(a) for a in raw["argv"]),
        )


@dataclass(frozen=True)
class DevStack:
    """A development stack as its state file describes it (see the module docstring).

    ``env`` is every ``AIMA_*`` variable a client needs to reach the same stores, bus and gateway,
    secrets included (read from the environment file); ``public_env`` is the same without secrets.
    """

    dir: Path
    gateway_url: str
    delivery: str
    started_at: str
    processes: tuple[DevProcess, ...]
    public_env: dict[str, str]
    env: dict[str, str] = field(repr=False)

    @property
    def env_file(self) -> Path:
        return self.dir / ENV_FILE

    def process(self, name: str) -> DevProcess:
        """The process named ``name`` (a function's name, or ``milvus``, ``s3``)."""
        for process in self.processes:
            if process.name == name:
                return process
        raise KeyError(name)

    def function_url(self, name: str) -> str:
        """The base URL of the function ``name``."""
        return self.process(name).url

    def running(self) -> list[DevProcess]:
        """The stack's processes that still run."""
        return [process for process in self.processes if process.alive()]

    def client_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """An environment for a client process (``aima ...``): ``base`` (default: this process's)
        without its ``AIMA_*`` variables, plus the stack's."""
        source = os.environ if base is None else base
        return {k: v for k, v in source.items() if not k.startswith(ENV_PREFIX)} | self.env

    def settings(self, **overrides: Any) -> Settings:
        """`Settings` of a client of this stack (``AIMA_*`` of this process ignored while they are
        read: this swaps ``os.environ`` for the call, so call it before other threads read it)."""
        with _environ(self.env):
            return load_settings(**overrides)


@contextlib.contextmanager
def _environ(env: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    try:
        for name in [n for n in os.environ if n.startswith(ENV_PREFIX)]:
            del os.environ[name]
        os.environ.update(env)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


SECRET_WORDS = ("SECRET", "PASSWORD", "TOKEN", "API_KEY", "ACCESS_KEY")


def is_setting(variable: str) -> bool:
    """True for an ``AIMA_*`` variable that names a setting (``AIMA_MODELS__...`` included)."""
    if not variable.startswith(ENV_PREFIX):
        return False
    return variable.removeprefix(ENV_PREFIX).split("__")[0].lower() in Settings.model_fields


def is_secret(variable: str) -> bool:
    """True for a variable that holds a secret: a `SecretStr` setting (nested ones too), or one
    whose name says so (``...SECRET...``, ``...PASSWORD...``, ``...TOKEN...``, ``...KEY...``)."""
    if any(word in variable.upper() for word in SECRET_WORDS):
        return True
    model: Any = Settings
    for part in variable.removeprefix(ENV_PREFIX).lower().split("__"):
        fields = getattr(model, "model_fields", None)
        if not isinstance(fields, dict) or part not in fields:
            return False
        annotation = fields[part].annotation
        if "SecretStr" in str(annotation):
            return True
        model = annotation
    return False


def read_state(directory: Path | str) -> DevStack:
    """The stack described in ``directory``; `DevStackError` if there is none."""
    root = Path(directory).absolute()
    path = root / STATE_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise DevStackError(f"no dev stack in {root} (start one with `aima dev up --dir {root}`)") from None
    except (OSError, ValueError) as exc:
        raise DevStackError(f"unreadable state file {path}: {exc}") from exc
    if raw.get("version") != STATE_VERSION:
        raise DevStackError(f"state file {path} has version {raw.get('version')!r}, not {STATE_VERSION}")
    public = {str(k): str(v) for k, v in raw["env"].items()}
    return DevStack(
        dir=root,
        gateway_url=str(raw["gateway_url"]),
        delivery=str(raw["delivery"]),
        started_at=str(raw["started_at"]),
        processes=tuple(DevProcess.from_json(p) for p in raw["processes"]),
        public_env=public,
        env=public | read_env_file(root / ENV_FILE),
    )


def write_state(stack: DevStack) -> None:
    """Write the state file (atomically) and the environment file (mode 0600)."""
    stack.dir.mkdir(parents=True, exist_ok=True)
    raw = {
        "version": STATE_VERSION,
        "gateway_url": stack.gateway_url,
        "delivery": stack.delivery,
        "started_at": stack.started_at,
        "env": {k: redact_url(v) for k, v in stack.env.items() if not is_secret(k)},
        "processes": [asdict(p) for p in stack.processes],
    }
    _write(stack.dir / STATE_FILE, json.dumps(raw, indent=2) + "\n", mode=0o644)
    lines = [f"export {name}={shlex.quote(value)}" for name, value in sorted(stack.env.items())]
    _write(stack.dir / ENV_FILE, "\n".join(lines) + "\n", mode=0o600)


def remove_state(directory: Path) -> None:
    """Forget the processes (the environment file, logs and data stay)."""
    (directory / STATE_FILE).unlink(missing_ok=True)


def redact_url(value: str) -> str:
    """``value`` with the password of a URL in it replaced by ``***``."""
    scheme, sep, rest = value.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials or "/" in credentials:
        return value
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"


def read_env_file(path: Path) -> dict[str, str]:
    """The ``export NAME=value`` lines of an environment file (missing file: nothing)."""
    env: dict[str, str] = {}
    try:
        text = path.read_text()
    except FileNotFoundError:
        return env
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            env[name] = value
    return env


def _write(path: Path, text: str, *, mode: int) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(temporary, mode)
    os.replace(temporary, path)


def spawn(
    name: str,
    kind: Kind,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    port: int,
    log: Path,
    cwd: Path,
) -> DevProcess:
    """Start ``argv`` in a session of its own, stdout and stderr appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        child = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started = start_time_of(child.pid)
    if started is None:
        code = child.wait()
        raise DevStackError(f"{name} exited at once with {code}: {last_line(log)}")
    # The child outlives this process; drop the handle without the "still running" warning.
    child.returncode = 0
    return DevProcess(name, kind, child.pid, started, port, str(log), tuple(argv))


def stop(processes: Sequence[DevProcess], *, grace: float) -> list[DevProcess]:
    """SIGTERM every running one of ``processes``, SIGKILL those still running after ``grace``
    seconds; returns the ones that were running."""
    signalled = [p for p in processes if p.signal(signal.SIGTERM)]
    deadline = time.monotonic() + grace
    while any(p.alive() for p in signalled) and time.monotonic() < deadline:
        time.sleep(0.1)
    for process in signalled:
        process.signal(signal.SIGKILL)
    deadline = time.monotonic() + 5
    while any(p.alive() for p in signalled) and time.monotonic() < deadline:
        time.sleep(0.05)
    return signalled


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on loopback that nothing listens on right now."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_open(port: int) -> bool:
    """True if something accepts TCP connections on loopback ``port``."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def last_line(log: Path | str) -> str:
    """The last non-empty line of a log file (for one-line errors), at most 300 characters."""
    try:
        with Path(log).open("rb") as source:
            source.seek(0, os.SEEK_END)
            size = source.tell()
            source.seek(max(0, size - 8192))
            tail = source.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(empty log)"


def secret_value(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None
