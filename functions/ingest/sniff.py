"""What a file is, from its first bytes: never its name, never the Content-Type a client claims.

`sniff` matches the head of a file (`HEAD_BYTES`) against an explicit table of accepted formats
(`ACCEPTED`) and raises `UnsupportedMedia` for anything else, naming what the bytes look like when
that is recognisable. It checks signatures only: a PNG signature followed by garbage is "PNG"
here; the probe step decodes the file with ffprobe later and rejects it then.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

MediaKind = Literal["image", "video", "audio"]
HEAD_BYTES = 4096


@dataclass(frozen=True)
class Format:
    """An accepted format: its id, kind, the content type stored for it and its display name."""

    format: str
    kind: MediaKind
    content_type: str
    name: str


ACCEPTED: tuple[Format, ...] = (
    Format("jpeg", "image", "image/jpeg", "JPEG"),
    Format("png", "image", "image/png", "PNG"),
    Format("gif", "image", "image/gif", "GIF"),
    Format("webp", "image", "image/webp", "WebP"),
    Format("tiff", "image", "image/tiff", "TIFF"),
    Format("bmp", "image", "image/bmp", "BMP"),
    Format("heic", "image", "image/heic", "HEIC"),
    Format("heif", "image", "image/heif", "HEIF"),
    Format("mp4", "video", "video/mp4", "MP4"),
    Format("mov", "video", "video/quicktime", "QuickTime MOV"),
    Format("3gp", "video", "video/3gpp", "3GP"),
    Format("3g2", "video", "video/3gpp2", "3G2"),
    Format("matroska", "video", "video/x-matroska", "Matroska"),
    Format("webm", "video", "video/webm", "WebM"),
    Format("avi", "video", "video/x-msvideo", "AVI"),
    Format("mpegts", "video", "video/mp2t", "MPEG-TS"),
    Format("mpegps", "video", "video/mpeg", "MPEG-PS"),
    Format("flv", "video", "video/x-flv", "FLV"),
    Format("wav", "audio", "audio/wav", "WAV"),
    Format("mp3", "audio", "audio/mpeg", "MP3"),
    Format("flac", "audio", "audio/flac", "FLAC"),
    Format("ogg-vorbis", "audio", "audio/ogg", "Ogg Vorbis"),
    Format("ogg-opus", "audio", "audio/ogg", "Ogg Opus"),
    Format("m4a", "audio", "audio/mp4", "M4A"),
    Format("aac", "audio", "audio/aac", "AAC (ADTS)"),
    Format("amr", "audio", "audio/amr", "AMR"),
    Format("amr-wb", "audio", "audio/amr-wb", "AMR-WB"),
    Format("aiff", "audio", "audio/aiff", "AIFF"),
)
"""Every accepted format, images first, then video, then audio."""

_BY_ID = {entry.format: entry for entry in ACCEPTED}


def accepted_summary() -> str:
    """The accepted formats by kind, for error messages and docs."""
    groups = []
    for kind in ("image", "video", "audio"):
        names = [entry.name for entry in ACCEPTED if entry.kind == kind]
        groups.append(f"{kind}: {', '.join(names)}")
    return "; ".join(groups)


@dataclass(frozen=True)
class Sniffed:
    """An accepted format recognised from a file's head."""

    kind: MediaKind
    content_type: str
    format: str


class UnsupportedMedia(ValueError):
    """The bytes are no accepted format; ``reason`` says what they look like (or "empty")."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"unsupported media: {reason}; accepted formats are {accepted_summary()}")


def sniff(head: bytes) -> Sniffed:
    """The accepted format of a file starting with ``head`` (give at least `HEAD_BYTES` when the file
    has them); raises `UnsupportedMedia` otherwise."""
    if not head:
        raise UnsupportedMedia("empty")
    found = _match(head)
    if found is None:
        raise UnsupportedMedia(_describe(head))
    if found.startswith("!"):
        raise UnsupportedMedia(found[1:])
    entry = _BY_ID[found]
    return Sniffed(entry.kind, entry.content_type, entry.format)


# --- the accepted formats ----------------------------------------------------------------------


def _match(head: bytes) -> str | None:
    """A format id, "!<description>" for a recognised container holding something not accepted, or None."""
    for check in (_image, _riff, _iso_bmff, _ebml, _simple, _mpeg_ts, _mpeg_audio, _quicktime_legacy):
        found = check(head)
        if found is not None:
            return found
    return None


def _image(head: bytes) -> str | None:
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head.startswith(b"BM") and len(head) >= 18:
        dib_size = int.from_bytes(head[14:18], "little")
        if dib_size in (12, 16, 40, 52, 56, 64, 108, 124) and head[6:10] == b"\x00\x00\x00\x00":
            return "bmp"
    return None


def _riff(head: bytes) -> str | None:
    if head[:4] not in (b"RIFF", b"RF64", b"BW64") or len(head) < 12:
        return None
    form = head[8:12]
    if form == b"WAVE":
        return "wav"
    if head[:4] != b"RIFF":
        return None
    if form == b"WEBP":
        return "webp"
    if form in (b"AVI ", b"AVIX"):
        return "avi"
    return f"!a RIFF file of type {_printable(form)!r}"


_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "}
_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"}
_HEIF_BRANDS = {b"mif1", b"msf1", b"heif"}
_AVIF_BRANDS = {b"avif", b"avis"}
_REFUSED_BRANDS = {
    b"avif": "an AVIF image",
    b"avis": "an AVIF image sequence",
    b"crx ": "a Canon raw image (CR3)",
    b"jpx ": "a JPEG 2000 image",
    b"jpm ": "a JPEG 2000 compound image",
}
_MP4_BRANDS = {
    b"isom",
    b"iso2",
    b"iso3",
    b"iso4",
    b"iso5",
    b"iso6",
    b"iso7",
    b"iso8",
    b"iso9",
    b"mp41",
    b"mp42",
    b"mp71",
    b"avc1",
    b"dash",
    b"mmp4",
    b"MSNV",
    b"NDAS",
    b"M4V ",
    b"M4VH",
    b"M4VP",
    b"F4V ",
    b"F4P ",
    b"XAVC",
    b"kddi",
    b"CAEP",
    b"caqv",
    b"MPUF",
}


def _iso_bmff(head: bytes) -> str | None:
    """ISO base media files (MP4, MOV, 3GP, M4A, HEIF) by the brands of their ``ftyp`` box."""
    if len(head) < 16 or head[4:8] != b"ftyp":
        return None
    size = int.from_bytes(head[:4], "big")
    major = head[8:12]
    end = min(max(size, 16), len(head))
    compatible = {head[i : i + 4] for i in range(16, end - 3, 4)}
    brands = [major, *sorted(compatible - {major})]
    if major in _REFUSED_BRANDS:
        return "!" + _REFUSED_BRANDS[major]
    if major in _HEIF_BRANDS and compatible & _AVIF_BRANDS and not compatible & _HEIC_BRANDS:
        return "!an AVIF image"
    for brand in brands:
        if brand in _HEIC_BRANDS:
            return "heic"
        if brand in _HEIF_BRANDS:
            return "heif"
        if brand in _AUDIO_BRANDS:
            return "m4a"
        if brand == b"qt  ":
            return "mov"
        if brand.startswith(b"3g2"):
            return "3g2"
        if brand.startswith(b"3g"):
            return "3gp"
        if brand in _MP4_BRANDS:
            return "mp4"
    return f"!an ISO media file of brand {_printable(major)!r}"


def _ebml(head: bytes) -> str | None:
    """Matroska or WebM by the EBML header's DocType."""
    if not head.startswith(b"\x1a\x45\xdf\xa3"):
        return None
    at = head.find(b"\x42\x82", 4, 64)
    if at < 0:
        return "matroska"
    length, width = _vint(head, at + 2)
    doctype = head[at + 2 + width : at + 2 + width + length]
    if doctype == b"webm":
        return "webm"
    if doctype == b"matroska":
        return "matroska"
    return f"!an EBML file of type {_printable(doctype)!r}"


def _vint(data: bytes, at: int) -> tuple[int, int]:
    """An EBML variable-length integer at ``at``: (value, width); (0, 1) if it is cut off."""
    if at >= len(data) or data[at] == 0:
        return 0, 1
    first = data[at]
    width = 9 - first.bit_length()
    value = first & ((1 << (8 - width)) - 1)
    for byte in data[at + 1 : at + width]:
        value = (value << 8) | byte
    return value, width


def _simple(head: bytes) -> str | None:
    """Formats with a plain signature at the start."""
    if head.startswith(b"FLV\x01"):
        return "flv"
    if head.startswith(b"\x00\x00\x01\xba"):
        return "mpegps"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"#!AMR-WB\n"):
        return "amr-wb"
    if head.startswith(b"#!AMR\n"):
        return "amr"
    if head.startswith(b"FORM") and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head.startswith(b"OggS"):
        return _ogg(head)
    if head.startswith(b"ID3") and len(head) >= 10:
        return _after_id3(head)
    return None


def _ogg(head: bytes) -> str:
    """Ogg Vorbis or Opus by the codec header in the first page."""
    if len(head) < 27:
        return "!a truncated Ogg stream"
    first_packet = head[27 + head[26] :]
    if first_packet.startswith(b"\x01vorbis"):
        return "ogg-vorbis"
    if first_packet.startswith(b"OpusHead"):
        return "ogg-opus"
    if first_packet.startswith(b"\x80theora"):
        return "!an Ogg Theora video"
    return "!an Ogg stream with a codec other than Vorbis or Opus"


def _after_id3(head: bytes) -> str:
    """An ID3v2 tag precedes MP3 (usually), ADTS AAC or FLAC; look past it when the head reaches."""
    size = 0
    for byte in head[6:10]:
        size = (size << 7) | (byte & 0x7F)
    end = 10 + size + (10 if head[5] & 0x10 else 0)
    rest = head[end:]
    if len(rest) >= 4:
        if rest.startswith(b"fLaC"):
            return "flac"
        if _adts_frame(rest, 0) is not None:
            return "aac"
    return "mp3"


def _mpeg_ts(head: bytes) -> str | None:
    """MPEG transport streams: a sync byte every 188 bytes (or 192 for M2TS), three packets at least."""
    for start, stride in ((0, 188), (4, 192)):
        positions = range(start, min(len(head), start + 8 * stride), stride)
        if len(positions) >= 3 and all(head[i] == 0x47 for i in positions):
            return "mpegts"
    return None


_MP3_BITRATES = {
    1: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_ADTS_RATES = 13


def _mpeg_audio(head: bytes) -> str | None:
    """MP3 (MPEG audio layer III) or ADTS AAC frames; the next frame must follow where the head reaches."""
    if _adts_frame(head, 0) is not None:
        return "aac"
    length = _mp3_frame(head, 0)
    if length is None:
        return None
    following = length
    if following + 2 <= len(head) and (
        head[following] != 0xFF or (head[following + 1] & 0xFE) != (head[1] & 0xFE)
    ):
        return None
    return "mp3"


def _mp3_frame(data: bytes, at: int) -> int | None:
    """The length of a layer III frame whose header is at ``at``, or None."""
    if len(data) < at + 4 or data[at] != 0xFF or data[at + 1] & 0xE0 != 0xE0:
        return None
    version = (data[at + 1] >> 3) & 3  # 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5, 1: reserved
    layer = (data[at + 1] >> 1) & 3  # 1: layer III
    bitrate_index, rate_index = data[at + 2] >> 4, (data[at + 2] >> 2) & 3
    if version == 1 or layer != 1 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    bitrate = _MP3_BITRATES[1 if version == 3 else 2][bitrate_index] * 1000
    rate = _MP3_RATES[version][rate_index]
    padding = (data[at + 2] >> 1) & 1
    return (144 if version == 3 else 72) * bitrate // rate + padding


def _adts_frame(data: bytes, at: int) -> int | None:
    """The length of an ADTS frame whose header is at ``at`` (checked against the next one), or None."""
    if len(data) < at + 7 or data[at] != 0xFF or data[at + 1] & 0xF6 != 0xF0:
        return None
    if (data[at + 2] >> 2) & 0xF >= _ADTS_RATES:
        return None
    length = ((data[at + 3] & 3) << 11) | (data[at + 4] << 3) | (data[at + 5] >> 5)
    if length < 7:
        return None
    following = at + length
    if following + 2 <= len(data) and (data[following] != 0xFF or data[following + 1] & 0xF6 != 0xF0):
        return None
    return length


_LEGACY_ATOMS = {b"moov", b"mdat", b"wide", b"pnot", b"skip", b"free"}


def _quicktime_legacy(head: bytes) -> str | None:
    """Old QuickTime files start with a movie atom instead of ``ftyp``."""
    if len(head) < 8 or head[4:8] not in _LEGACY_ATOMS:
        return None
    size = int.from_bytes(head[:4], "big")  # 0: to the end of the file, 1: a 64-bit size follows
    return "mov" if size in (0, 1) or size >= 8 else None


# --- what refused bytes look like --------------------------------------------------------------

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (or a document or package stored as one)"),
    (b"PK\x05\x06", "an empty ZIP archive"),
    (b"PK\x07\x08", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\x28\xb5\x2f\xfd", "a Zstandard archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a Microsoft Office (OLE) document"),
    (b"{\\rtf", "an RTF document"),
    (b"%!PS", "a PostScript document"),
    (b"\x7fELF", "an ELF executable"),
    (b"MZ", "a Windows executable"),
    (b"\xca\xfe\xba\xbe", "a Mach-O or Java class file"),
    (b"\xcf\xfa\xed\xfe", "a Mach-O executable"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"8BPS", "a Photoshop document"),
    (b"\x00\x00\x01\x00", "an ICO icon"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "a JPEG 2000 image"),
    (b"\xff\x4f\xff\x51", "a JPEG 2000 codestream"),
    (b"0&\xb2u\x8ef\xcf\x11", "a Windows Media (ASF/WMV/WMA) file"),
    (b"MThd", "a MIDI file"),
    (b"\x00\x00\x01\xb3", "an MPEG video elementary stream"),
    (b"-----BEGIN ", "a PEM certificate or key"),
)
_HTML = re.compile(rb"^(<!doctype\s+html|<html|<head|<body|<script|<iframe|<meta|<title|<div|<p[\s>])", re.I)


def _describe(head: bytes) -> str:
    """What bytes no accepted format matched look like, in a few words."""
    for signature, description in _SIGNATURES:
        if head.startswith(signature):
            return description
    if len(head) > 262 and head[257:262] == b"ustar":
        return "a tar archive"
    text = _as_text(head)
    if text is None:
        return "unrecognised binary data"
    stripped = text.lstrip().encode()
    if _HTML.match(stripped) or (stripped.startswith(b"<!--") and b"<html" in stripped.lower()):
        return "an HTML page"
    if stripped.startswith(b"<?xml") or stripped.startswith(b"<svg"):
        return "an SVG image" if b"<svg" in stripped else "an XML document"
    if stripped.startswith(b"#!"):
        return "a script"
    if stripped[:1] in (b"{", b"["):
        return "JSON or other structured text"
    return "a text file"


def _as_text(head: bytes) -> str | None:
    """``head`` as text if it is UTF-8 (a BOM and a cut-off last character allowed) without control bytes."""
    data = head.removeprefix(b"\xef\xbb\xbf")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(data) - 3:
            return None
        text = data[: exc.start].decode("utf-8")
    if any(ord(char) < 32 and char not in "\t\n\r\f" for char in text):
        return None
    return text


def _printable(raw: bytes) -> str:
    return raw.decode("latin-1").strip() or "?"
