"""ffprobe/ffmpeg behind hard limits: the only code that touches a media file's bytes.

Every call runs ffprobe or ffmpeg as a child process without stdin, with few threads, a wall-clock
timeout, rlimits (address space, CPU time, output size, no core dumps), a minimal environment,
only the ``file`` protocol and an allow-list of demuxers (no playlists such as HLS or concat that
could pull in other files) and a per-picture pixel limit on every decoder. Image headers are read
before ffprobe runs, so a decompression bomb is refused without decoding a pixel. Anything wrong
with the media raises `MediaError` with a reason a reviewer can read; a missing binary or a full
disk raises `OSError` as usual.
"""

from __future__ import annotations

import json
import math
import os
import re
import resource
import selectors
import shutil
import signal
import struct
import subprocess
import time
import wave
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

from aima.domain import MediaKind

DEMUXERS = (
    "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,flv,mpegts,mpeg,mpegvideo,m4v,h264,hevc,ivf,dv,mxf,asf,"
    "ogg,wav,w64,aiff,caf,mp3,flac,aac,ac3,eac3,amr,amrnb,amrwb,wv,ape,"
    "gif,gif_pipe,png_pipe,jpeg_pipe,webp_pipe,bmp_pipe,tiff_pipe,image2"
)
"""Demuxers ffmpeg may pick (``-format_whitelist``): containers, raw streams and single images."""

_HEADERS = "reading the file's headers"
_STDOUT_CAP = 16 << 20
_TAIL_LINES = 20
_LEVEL = re.compile(r"\[(trace|debug|verbose|info|warning|error|fatal|panic)\] ")
_QUIET_LEVELS = frozenset({"trace", "debug", "verbose", "info"})
_LINE_PREFIX = re.compile(r"^(?:\[[^\]]+ @ 0x[0-9a-f]+\]\s*)?\[\w+\]\s*(?:file:\S*?:\s*)?")
_MAX_TAGS = 100
_PIXEL_COUNT = re.compile(r"Picture size (\d+)x(\d+) exceeds specified max pixel count")
_LINE_CAP = 64 << 10
_SHOWINFO = re.compile(r"\bn:\s*(\d+)\s+pts:\s*(-?\d+)\s+pts_time:")
_TIME_BASE = re.compile(r"config in time_base: (\d+)/(\d+)")
_ISO6709 = re.compile(r"^([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)?")


class MediaError(Exception):
    """The media cannot be processed; ``reason`` says why in words for a reviewer."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class RunLimits:
    """Bounds of one ffprobe/ffmpeg call."""

    timeout_s: float = 60.0
    max_pixels: int = 100_000_000
    max_duration_s: float = 4 * 3600.0
    memory_bytes: int = 2 << 30
    max_output_bytes: int = 4 << 30
    threads: int = 2

    def scaled(self, duration_s: float | None) -> RunLimits:
        """The limits for work proportional to ``duration_s``: one timeout per started minute of media."""
        return replace(self, timeout_s=self.timeout_s * max(1.0, (duration_s or 0.0) / 60.0))


@dataclass(frozen=True)
class Location:
    """Where the recording was made (EXIF GPS or the ISO 6709 location tag of MOV/MP4)."""

    latitude: float
    longitude: float
    altitude: float | None = None


@dataclass(frozen=True)
class ProbeResult:
    """What ffprobe read from a file's headers (plus EXIF for images)."""

    kind: MediaKind
    format_name: str
    duration_s: float | None
    start_s: float
    width: int | None
    height: int | None
    rotation: int  # degrees counter-clockwise the picture is turned for display (0, 90, 180, 270)
    fps: float | None
    video_codec: str | None
    audio_codec: str | None
    audio_channels: int | None
    audio_sample_rate: int | None
    video_streams: int
    audio_streams: int
    subtitle_streams: int
    bit_rate: int | None
    creation_time: str | None
    make: str | None = None
    model: str | None = None
    software: str | None = None
    location: Location | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def has_audio(self) -> bool:
        return self.audio_streams > 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready metadata."""
        return asdict(self)


# --- public operations -------------------------------------------------------------------------


def probe(path: Path, limits: RunLimits = RunLimits()) -> ProbeResult:
    """Read container, stream and EXIF-ish metadata; refuses oversized images from their header."""
    if path.stat().st_size == 0:
        raise MediaError("the file is empty (0 bytes)")
    _check_header_pixels(path, limits.max_pixels)
    command = [
        "ffprobe",
        *_input_options(limits),
        *_args("-print_format json -show_format -show_streams"),
    ]
    out = _run([*command, *_input(path)], limits, what=_HEADERS, capture=True)
    info = _json(out.stdout)
    result = _interpret(info, limits)
    if result.kind == "image":
        result = _with_image_tags(path, result, limits)
    return result


def extract_audio(path: Path, out_path: Path, limits: RunLimits = RunLimits()) -> float:
    """The first audio track as 16 kHz mono 16-bit PCM WAV at ``out_path``; returns its duration (s)."""
    output = _args("-map 0:a:0 -vn -sn -dn -ac 1 -ar 16000 -c:a pcm_s16le -threads 1 -f wav -y")
    _run(
        ["ffmpeg", *_ffmpeg_input(path, limits), *output, f"file:{out_path}"],
        limits,
        what="extracting the audio",
    )
    try:
        with wave.open(str(out_path), "rb") as wav:
            frames, rate = wav.getnframes(), wav.getframerate()
    except (wave.Error, EOFError, FileNotFoundError) as exc:
        raise MediaError("the audio track could not be decoded") from exc
    if frames == 0:
        raise MediaError("the audio track contains no decodable samples")
    return frames / rate


def sample_frames(
    path: Path,
    out_dir: Path,
    *,
    max_per_minute: int,
    scene_threshold: float,
    start_s: float = 0.0,
    max_edge: int = 1280,
    limits: RunLimits = RunLimits(),
) -> list[tuple[float, Path]]:
    """Sample JPEG frames in one decode pass: scene changes plus an even floor, capped.

    The media is cut into windows of ``60 / max_per_minute`` seconds and every window yields
    exactly one frame: its first scene change (score above ``scene_threshold``), else its first
    frame. So there is at least one frame per window (the floor) and never more than
    ``ceil(max_per_minute * minutes)`` (the cap). Timestamps are exact: each frame's pts times the
    stream time base, relative to ``start_s`` (the container's start time). Frames are turned
    upright and scaled to at most ``max_edge`` pixels; returns (timestamp_s, file) in time order.
    """
    if max_per_minute < 1 or not 0 < scene_threshold < 1:
        raise ValueError("max_per_minute must be >= 1 and scene_threshold in (0, 1)")
    step = 60.0 / max_per_minute
    window = f"floor((t-{start_s!r})/{step!r})"
    # a new window: remember it (register 0) and clear "scene taken" (register 1); else the
    # window's first scene change sets register 1. st() returns the stored value, hence the +1.
    expression = (
        f"if(isnan(prev_selected_t)+gt({window},ld(0)),st(0,{window})*0+st(1,0)+1,"
        f"if(gt(scene,{scene_threshold!r})*not(ld(1)),st(1,1),0))"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    candidates: list[tuple[int, int]] = []  # (showinfo n, pts)
    time_base: list[tuple[int, int]] = []

    def on_line(line: str) -> None:
        if found := _SHOWINFO.search(line):
            candidates.append((int(found[1]), int(found[2])))
        elif found := _TIME_BASE.search(line):
            time_base.append((int(found[1]), int(found[2])))

    chain = f"select='{expression}',sidedata=mode=delete,showinfo,{_fit(max_edge)}"
    command = [
        "ffmpeg",
        *_ffmpeg_input(path, limits, loglevel="info"),
        *_args("-map 0:V:0 -an -sn -dn -vf"),
        chain,
        *_args("-fps_mode passthrough -q:v 3 -threads 1 -f image2 -y"),
        f"file:{out_dir / 'candidate-%06d.jpg'}",
    ]
    _run(command, limits, what="sampling frames", on_line=on_line)
    if not candidates or not time_base or time_base[0][1] == 0:
        raise MediaError("no video frame could be decoded")
    num, den = time_base[0]
    chosen: dict[int, tuple[float, Path]] = {}
    for n, pts in candidates:
        t = pts * (num / den)
        file = out_dir / f"candidate-{n + 1:06d}.jpg"
        if not file.is_file():
            continue
        # the select expression's arithmetic; pre-roll before the start counts as the first window
        bucket = max(0, math.floor((t - start_s) / step))
        if bucket in chosen:  # the window's scene change replaces its first frame
            chosen[bucket][1].unlink()
        chosen[bucket] = (max(0.0, t - start_s), file)
    if not chosen:
        raise MediaError("no video frame could be decoded")
    return sorted(chosen.values())


def still_frame(path: Path, out: Path, *, max_edge: int, limits: RunLimits = RunLimits()) -> None:
    """The first picture (an image, or a video's first frame) as an upright JPEG of at most ``max_edge``."""
    _single_picture(path, out, _fit(max_edge), limits, what="decoding the image")


def thumbnail(
    path: Path, out: Path, *, duration_s: float | None, edge: int = 320, limits: RunLimits = RunLimits()
) -> None:
    """A representative JPEG frame from about a tenth into the video, at most ``edge`` pixels."""
    at = min((duration_s or 0.0) / 10.0, 30.0)
    _single_picture(path, out, f"thumbnail=25,{_fit(edge)}", limits, what="making a thumbnail", seek=at)


def preview_strip(
    path: Path,
    out: Path,
    n: int = 8,
    *,
    duration_s: float | None,
    edge: int = 160,
    limits: RunLimits = RunLimits(),
) -> None:
    """``n`` evenly spaced frames side by side in one JPEG (each at most ``edge`` pixels)."""
    rate = n / duration_s if duration_s else 1.0
    chain = f"fps={rate!r},{_fit(edge)},tile={n}x1"
    _single_picture(path, out, chain, limits, what="making a preview strip")


# --- ffprobe output ----------------------------------------------------------------------------


def _interpret(info: Mapping[str, Any], limits: RunLimits) -> ProbeResult:
    fmt: Mapping[str, Any] = info.get("format") or {}
    streams: list[Mapping[str, Any]] = list(info.get("streams") or [])
    format_name = str(fmt.get("format_name") or "unknown")
    pictures = [
        s
        for s in streams
        if s.get("codec_type") == "video" and not (s.get("disposition") or {}).get("attached_pic")
    ]
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    subtitles = [s for s in streams if s.get("codec_type") == "subtitle"]
    video = pictures[0] if pictures else None
    track = audio[0] if audio else None
    if video is None and track is None:
        raise MediaError(f"no audio or video stream found in the {format_name} file")
    kind = _kind(format_name, video, track)
    duration = _float(fmt.get("duration")) or _float((video or track or {}).get("duration"))
    if kind == "image":
        duration = None
    width = _int(video.get("width")) if video else None
    height = _int(video.get("height")) if video else None
    if video is not None:
        if not width or not height:
            raise MediaError("the picture size could not be read: the image or video header is damaged")
        if width * height > limits.max_pixels:
            raise MediaError(_too_many_pixels(width, height, limits.max_pixels))
    if duration is not None and duration > limits.max_duration_s:
        raise MediaError(
            f"the {kind} lasts {duration:.0f} s, longer than the limit of {limits.max_duration_s:.0f} s"
        )
    tags = {str(k).lower(): str(v) for k, v in (fmt.get("tags") or {}).items()}
    for stream in (video, track):
        for key, value in ((stream or {}).get("tags") or {}).items():
            tags.setdefault(str(key).lower(), str(value))
    return ProbeResult(
        kind=kind,
        format_name=format_name,
        duration_s=duration,
        start_s=max(0.0, _float(fmt.get("start_time")) or 0.0),
        width=width,
        height=height,
        rotation=_rotation(video) if video else 0,
        fps=_rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate")) if video else None,
        video_codec=str(video["codec_name"]) if video and video.get("codec_name") else None,
        audio_codec=str(track["codec_name"]) if track and track.get("codec_name") else None,
        audio_channels=_int(track.get("channels")) if track else None,
        audio_sample_rate=_int(track.get("sample_rate")) if track else None,
        video_streams=len(pictures),
        audio_streams=len(audio),
        subtitle_streams=len(subtitles),
        bit_rate=_int(fmt.get("bit_rate")),
        creation_time=tags.get("creation_time") or tags.get("com.apple.quicktime.creationdate"),
        make=tags.get("com.apple.quicktime.make") or tags.get("make"),
        model=tags.get("com.apple.quicktime.model") or tags.get("model"),
        software=tags.get("com.apple.quicktime.software") or tags.get("software") or tags.get("encoder"),
        location=_iso6709(tags.get("com.apple.quicktime.location.iso6709") or tags.get("location")),
        tags=_keep_tags(tags),
    )


def _kind(format_name: str, video: Mapping[str, Any] | None, track: Mapping[str, Any] | None) -> MediaKind:
    if video is None:
        return MediaKind.AUDIO
    single_gif = format_name == "gif" and _int(video.get("nb_frames")) == 1
    if (format_name.endswith("_pipe") or format_name == "image2" or single_gif) and track is None:
        return MediaKind.IMAGE
    return MediaKind.VIDEO


def _with_image_tags(path: Path, result: ProbeResult, limits: RunLimits) -> ProbeResult:
    """Add EXIF (camera, GPS, date) that the image decoder exports as frame tags."""
    first_frame = "-select_streams v:0 -read_intervals %+#1 -show_entries frame_tags -print_format json"
    command = ["ffprobe", *_input_options(limits), *first_frame.split(), *_input(path)]
    out = _run(command, limits, what="reading the image's EXIF data", capture=True)
    frames = _json(out.stdout).get("frames") or [{}]
    exif = {str(k): str(v) for k, v in (frames[0].get("tags") or {}).items()}
    if not exif:
        return result
    return replace(
        result,
        make=exif.get("Make", result.make),
        model=exif.get("Model", result.model),
        software=exif.get("Software", result.software),
        creation_time=exif.get("DateTimeOriginal") or exif.get("DateTime") or result.creation_time,
        location=_exif_gps(exif) or result.location,
        tags={**result.tags, **{f"exif:{k[:100]}": v[:500] for k, v in list(exif.items())[:_MAX_TAGS]}},
    )


def _rotation(video: Mapping[str, Any]) -> int:
    for side in video.get("side_data_list") or []:
        if "rotation" in side:
            return round(_float(side["rotation"]) or 0.0) % 360
    return round(_float((video.get("tags") or {}).get("rotate")) or 0.0) % 360


def _iso6709(value: str | None) -> Location | None:
    found = _ISO6709.match(value or "")
    if not found:
        return None
    altitude = float(found[3]) if found[3] else None
    return Location(float(found[1]), float(found[2]), altitude)


def _exif_gps(exif: Mapping[str, str]) -> Location | None:
    lat, lon = _dms(exif.get("GPSLatitude")), _dms(exif.get("GPSLongitude"))
    if lat is None or lon is None:
        return None
    lat *= -1 if exif.get("GPSLatitudeRef", "N").strip().upper().startswith("S") else 1
    lon *= -1 if exif.get("GPSLongitudeRef", "E").strip().upper().startswith("W") else 1
    return Location(round(lat, 7), round(lon, 7), _ratio(exif.get("GPSAltitude")))


def _dms(value: str | None) -> float | None:
    parts = [_ratio(p) for p in (value or "").split(",")]
    if len(parts) != 3 or any(p is None for p in parts):
        return None
    degrees, minutes, seconds = (p or 0.0 for p in parts)
    return degrees + minutes / 60 + seconds / 3600


def _ratio(value: str | None) -> float | None:
    num, _, den = (value or "").strip().partition(":")
    try:
        return float(num) / float(den) if den else float(num)
    except (ValueError, ZeroDivisionError):
        return None


_KEPT_TAGS = ("title", "comment", "description", "artist", "album", "date", "encoder", "handler_name")


def _keep_tags(tags: Mapping[str, str]) -> dict[str, str]:
    kept = [(k, v) for k, v in tags.items() if k in _KEPT_TAGS or k.startswith("com.apple.quicktime.")]
    return {k[:100]: v[:500] for k, v in kept[:_MAX_TAGS]}


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw or b"{}")
    except ValueError as exc:
        raise MediaError("ffprobe returned unreadable output for this file") from exc
    return value if isinstance(value, dict) else {}


def _float(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int(value: object) -> int | None:
    number = _float(value)
    return int(number) if number is not None else None


def _rate(value: object) -> float | None:
    fps = _ratio(str(value).replace("/", ":")) if value else None
    return round(fps, 3) if fps else None


# --- image headers (checked before any decoder runs) ---------------------------------------------


def header_dimensions(path: Path) -> tuple[int, int] | None:
    """Width and height from a PNG, GIF, JPEG, WebP or BMP header; None for anything else."""
    with path.open("rb") as handle:
        head = handle.read(32)
        if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
            width, height = struct.unpack(">II", head[16:24])
            return int(width), int(height)
        if head[:6] in (b"GIF87a", b"GIF89a"):
            width, height = struct.unpack("<HH", head[6:10])
            return int(width), int(height)
        if head[:2] == b"BM" and len(head) >= 26:
            width, height = struct.unpack("<ii", head[18:26])
            return abs(int(width)), abs(int(height))
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            return _webp_dimensions(head)
        if head[:2] == b"\xff\xd8":
            return _jpeg_dimensions(handle)
    return None


def _webp_dimensions(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8X":
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return width, height
    if chunk == b"VP8L":
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", head[26:30])
        return int(width) & 0x3FFF, int(height) & 0x3FFF
    return None


def _jpeg_dimensions(handle: BinaryIO) -> tuple[int, int] | None:
    handle.seek(2)
    for _ in range(4096):  # segments before the frame header
        marker = handle.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        code = marker[1]
        if code == 0xFF:
            handle.seek(-1, os.SEEK_CUR)
            continue
        if code in (0x01, *range(0xD0, 0xD8)):
            continue
        size = handle.read(2)
        if len(size) < 2:
            return None
        if 0xC0 <= code <= 0xCF and code not in (0xC4, 0xC8, 0xCC):
            frame = handle.read(5)
            if len(frame) < 5:
                return None
            height, width = struct.unpack(">HH", frame[1:5])
            return int(width), int(height)
        handle.seek(struct.unpack(">H", size)[0] - 2, os.SEEK_CUR)
    return None


def _check_header_pixels(path: Path, max_pixels: int) -> None:
    size = header_dimensions(path)
    if size is not None and size[0] * size[1] > max_pixels:
        raise MediaError(_too_many_pixels(*size, max_pixels))


def _too_many_pixels(width: int, height: int, max_pixels: int) -> str:
    return (
        f"the picture is {width}x{height} pixels ({width * height / 1e6:.3g} megapixels), over the limit "
        f"of {max_pixels / 1e6:.3g} megapixels; refused without decoding"
    )


# --- running the tools ---------------------------------------------------------------------------


def _input_options(limits: RunLimits, loglevel: str = "error") -> list[str]:
    """Options before ``-i``: quiet, few decoder threads, pixel limit, local files, known demuxers."""
    return [
        *_args(f"-hide_banner -loglevel level+{loglevel} -threads {limits.threads}"),
        *_args(f"-max_pixels {limits.max_pixels} -protocol_whitelist file -format_whitelist {DEMUXERS}"),
    ]


def _args(text: str) -> list[str]:
    """Command-line words (none of ours contain spaces)."""
    return text.split()


def _input(path: Path) -> list[str]:
    return ["-i", f"file:{path.resolve()}"]


def _ffmpeg_input(path: Path, limits: RunLimits, *, loglevel: str = "error", seek: float = 0.0) -> list[str]:
    seeking = ["-ss", f"{seek:.3f}"] if seek > 0 else []
    bounded = ["-t", f"{limits.max_duration_s:.3f}"]
    quiet = ["-nostdin", "-nostats", "-filter_threads", "1"]
    return [*quiet, *_input_options(limits, loglevel), *seeking, *bounded, *_input(path)]


def _fit(edge: int) -> str:
    return f"scale=w='min({edge},iw)':h='min({edge},ih)':force_original_aspect_ratio=decrease"


def _single_picture(
    path: Path, out: Path, chain: str, limits: RunLimits, *, what: str, seek: float = 0.0
) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [
        "ffmpeg",
        *_ffmpeg_input(path, limits, seek=seek),
        *_args("-map 0:V:0 -an -sn -dn -vf"),
        chain,
        *_args("-frames:v 1 -q:v 3 -threads 1 -f image2 -update 1 -y"),
        f"file:{out}",
    ]
    _run(command, limits, what=what)
    if not out.is_file() or out.stat().st_size == 0:
        raise MediaError(f"{what} failed: no picture could be decoded")


@dataclass
class _Output:
    stdout: bytes


def _run(
    command: list[str],
    limits: RunLimits,
    *,
    what: str,
    capture: bool = False,
    on_line: Callable[[str], None] | None = None,
) -> _Output:
    """Run a tool under the limits; `MediaError` if it fails, times out or is killed by a limit."""
    cpu = math.ceil(limits.timeout_s * limits.threads) + 5
    rlimits = (
        (resource.RLIMIT_AS, limits.memory_bytes),
        (resource.RLIMIT_CPU, cpu),
        (resource.RLIMIT_FSIZE, limits.max_output_bytes),
        (resource.RLIMIT_CORE, 0),
    )

    def confine() -> None:  # runs in the child between fork and exec (only without prlimit)
        for which, value in rlimits:
            resource.setrlimit(which, (value, value))

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
    # util-linux's prlimit sets the limits and execs the tool, so no Python runs in the forked child:
    # a preexec_fn there can deadlock the fork when another thread holds a lock (an import, say),
    # which hung `aima analyze` for good while other steps loaded their models
    prlimit = shutil.which("prlimit")
    if prlimit is not None:
        flags = {resource.RLIMIT_AS: "as", resource.RLIMIT_CPU: "cpu", resource.RLIMIT_FSIZE: "fsize"}
        limited = [prlimit, *(f"--{flags[which]}={value}" for which, value in rlimits if which in flags)]
        command = [*limited, "--core=0", "--", *command]
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=None if prlimit is not None else confine,
        start_new_session=True,
        close_fds=True,
    )
    stdout = bytearray()
    head: list[str] = []  # the first problems often name the cause; the last say what gave up
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    pending = b""
    deadline = time.monotonic() + limits.timeout_s
    try:
        with selectors.DefaultSelector() as selector:
            assert process.stderr is not None
            selector.register(process.stderr, selectors.EVENT_READ)
            if process.stdout is not None:
                selector.register(process.stdout, selectors.EVENT_READ)
            while selector.get_map():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise MediaError(f"{what} took longer than {limits.timeout_s:g} s and was stopped")
                for key, _ in selector.select(remaining):
                    chunk = os.read(key.fd, 1 << 16)
                    if not chunk:
                        selector.unregister(key.fileobj)
                    elif key.fileobj is process.stdout:
                        stdout += chunk
                        if len(stdout) > _STDOUT_CAP:
                            raise MediaError(f"{what} produced implausibly large metadata; refused")
                    else:
                        *lines, pending = (pending + chunk).split(b"\n")
                        pending = pending[-_LINE_CAP:]
                        for raw in lines:
                            line = raw[:_LINE_CAP].decode("utf-8", "replace").rstrip("\r")
                            if on_line is not None:
                                on_line(line)
                            level = _LEVEL.search(line)
                            if line and (level is None or level[1] not in _QUIET_LEVELS):
                                (head if len(head) < _TAIL_LINES else tail).append(line)
        returncode = process.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired as exc:
        raise MediaError(f"{what} took longer than {limits.timeout_s:g} s and was stopped") from exc
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    if returncode != 0:
        raise MediaError(_failure(what, returncode, [*head, *tail], limits))
    return _Output(bytes(stdout))


def _failure(what: str, returncode: int, tail: list[str], limits: RunLimits) -> str:
    text = "\n".join(tail)
    if returncode == -signal.SIGXCPU:
        return f"{what} used more CPU time than allowed and was stopped"
    if returncode == -signal.SIGXFSZ:
        return f"{what} produced more output than allowed and was stopped"
    if "Cannot allocate memory" in text or "failed to map segment" in text:
        return f"{what} needed more than {limits.memory_bytes >> 20} MiB of memory; refused"
    if returncode < 0:
        return f"{what} crashed the decoder (signal {-returncode}); the file is probably damaged or hostile"
    if found := _PIXEL_COUNT.search(text):
        return _too_many_pixels(int(found[1]), int(found[2]), limits.max_pixels)
    if "not on whitelist" in text:
        demuxer = re.search(r"\[([\w,]+) @", text)
        named = f" ({demuxer[1]})" if demuxer else ""
        return f"unsupported container format{named}: only common audio, video and image formats are accepted"
    detail = "; ".join(_errors(tail)) or f"exit status {returncode}"
    if what == _HEADERS:
        return f"not a readable audio, video or image file ({detail})"
    return f"{what} failed ({detail})"


def _errors(tail: list[str]) -> list[str]:
    """The last two distinct error lines, without addresses and paths."""
    found: list[str] = []
    for line in reversed(tail):
        line = _LINE_PREFIX.sub("", line).strip()
        if line and line not in found and not line.startswith(("Conversion failed", "Error opening output")):
            found.append(line[:200])
        if len(found) == 2:
            break
    return found[::-1]
