"""What each audio container says about its own length, for spotting a cut file.

A file cut short often still decodes: libsndfile sizes a WAV by the bytes present, an Ogg
stream by its last page and an MP3 by its frames, so the decoded length alone cannot tell.
Each container keeps a trace of the whole: the WAV ``data`` chunk declares its size, an
Ogg stream ends with a complete page flagged end-of-stream, and an MP3 written by LAME
(or with a Xing/VBRI tag) counts its frames. FLAC's STREAMINFO holds the total samples,
which libsndfile reports as the frame count. :func:`cut_short` reads those traces.
"""
from __future__ import annotations

import struct
from pathlib import Path

OGG_EOS = 0x04            # header_type flag of an Ogg stream's last page
UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # streaming WAV writers leave these in the data chunk


def wav_data_shortfall(path: Path) -> int | None:
    """Bytes the WAV ``data`` chunk declares beyond the end of the file (None: no trace)."""
    with path.open("rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None                       # RF64, W64 and friends: no 32-bit sizes
        size = path.stat().st_size
        while True:
            chunk = fh.read(8)
            if len(chunk) < 8:
                return None
            cid, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"data":
                if length in UNKNOWN_SIZES:
                    return None
                return max(0, fh.tell() + length - size)
            fh.seek(length + (length & 1), 1)  # chunks are padded to even sizes


def ogg_is_complete(path: Path) -> bool | None:
    """Whether the last Ogg page is whole and flagged end-of-stream (None: not Ogg)."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        if fh.read(4) != b"OggS":
            return None
        fh.seek(max(0, size - 70_000))         # a page is at most 65,307 bytes
        tail = fh.read()
    at = tail.rfind(b"OggS")
    page = tail[at:]
    if at < 0 or len(page) < 27:
        return False
    n_segments = page[26]
    if len(page) < 27 + n_segments:
        return False
    body = sum(page[27:27 + n_segments])
    return len(page) >= 27 + n_segments + body and bool(page[5] & OGG_EOS)


def mp3_counts_its_frames(path: Path) -> bool:
    """Whether the MP3 carries a frame count (a Xing, Info or VBRI tag in its first frame)."""
    with path.open("rb") as fh:
        head = fh.read(10)
        skip = 0
        if head[:3] == b"ID3" and len(head) == 10:   # ID3v2: a syncsafe size after the header
            skip = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(head[6:10]))
        fh.seek(skip)
        first = fh.read(4096)
    return any(tag in first for tag in (b"Xing", b"Info", b"VBRI"))


def cut_short(path: str | Path, container: str, declared_s: float, decoded_s: float) -> str | None:
    """Why ``path`` looks cut short, in words, or None when its container shows no sign.

    ``container`` is libsndfile's major format (``WAV``, ``FLAC``, ``OGG``, ``MP3`` …),
    ``declared_s`` its header's duration and ``decoded_s`` what a full decode gave.
    """
    path = Path(path)
    if container == "WAV":
        missing = wav_data_shortfall(path)
        if missing:
            return f"its data chunk declares {missing} bytes more than the file holds"
        return None
    if container == "OGG":
        if ogg_is_complete(path) is False:
            return "the Ogg stream has no complete end-of-stream page"
        return None
    if container in ("MPEG", "MP3") and not mp3_counts_its_frames(path):
        return None                            # frame count estimated from the size: no trace
    if declared_s - decoded_s > 0.05:          # 50 ms covers codec priming and padding
        return f"only {decoded_s:.1f} s of the {declared_s:.1f} s in its header decode"
    return None
