"""Audio decoding: any of wav / flac / ogg / mp3 to mono float32 at one sample rate.

The sample rate comes from ``features.sample_rate`` in ``params.yaml``; every recording
of a catalogue is decoded through :func:`load_audio`, so the CQT always sees the same rate.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr


class AudioDecodeError(RuntimeError):
    """A file that cannot be read as audio; the message names the file and the fix."""


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Decode ``path`` to mono float32 samples at ``sample_rate``.

    Returns an array of shape ``(n_samples,)``. Multi-channel audio is averaged to mono;
    other rates are resampled with soxr (high quality).
    """
    path = Path(path)
    if not path.is_file():
        raise AudioDecodeError(f"{path}: no such file (check audio_path in the manifest)")
    try:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)  # (n, channels)
    except Exception as err:  # libsndfile raises several types for bad input
        raise AudioDecodeError(
            f"{path}: cannot decode audio ({err}); re-encode it as wav/flac/ogg/mp3 "
            "or remove its row from the manifest") from err
    if audio.shape[0] == 0:
        raise AudioDecodeError(f"{path}: the file holds no samples; remove or replace it")
    mono = audio.mean(axis=1)  # (n,)
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ")
    if not np.all(np.isfinite(mono)):
        raise AudioDecodeError(f"{path}: decoded samples are not finite; re-encode the file")
    return np.ascontiguousarray(mono, dtype=np.float32)


def audio_duration(path: str | Path) -> float:
    """Duration in seconds from the file header (no decoding)."""
    try:
        info = sf.info(str(path))
    except Exception as err:
        raise AudioDecodeError(f"{path}: cannot read the audio header ({err})") from err
    return info.frames / info.samplerate


def probe_audio(path: str | Path) -> float:
    """Decode the whole of ``path`` at its native rate and return its duration in seconds.

    Cheaper than :func:`load_audio` (blocks into one reused buffer, no resampling, no
    copy kept) but as strict: a truncated or corrupt file often has a valid header, so
    every block is decoded and the decoded length is compared with the header's. Raises
    :class:`AudioDecodeError`, naming the file and the fix, for a missing, empty,
    undecodable, truncated or non-finite file.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioDecodeError(f"{path}: no such file (check audio_path in the manifest)")
    if path.stat().st_size == 0:
        raise AudioDecodeError(f"{path}: the file is empty (0 bytes); replace it or remove its row")
    fix = "re-encode it as wav/flac/ogg/mp3 or remove its row from the manifest"
    try:
        handle = sf.SoundFile(str(path))
    except Exception as err:  # libsndfile raises several types for bad input
        raise AudioDecodeError(f"{path}: cannot decode audio ({err}); {fix}") from err
    with handle:
        rate, expected = handle.samplerate, handle.frames
        block = 1 << 16                                         # frames per read (4 s at 16 kHz)
        buf = np.empty((block, handle.channels), dtype=np.float32)  # (block, channels)
        decoded = 0
        try:
            while True:
                got = handle.read(block, dtype="float32", always_2d=True, out=buf)
                if len(got) == 0:
                    break
                if not np.isfinite(got).all():
                    raise AudioDecodeError(
                        f"{path}: decoded samples are not finite near "
                        f"{decoded / rate:.1f} s; re-encode the file")
                decoded += len(got)
        except AudioDecodeError:
            raise
        except Exception as err:
            raise AudioDecodeError(
                f"{path}: decoding stopped at {decoded / rate:.1f} s of {expected / rate:.1f} s "
                f"({err}): the file is truncated or corrupt; {fix}") from err
        # MPEG frame counts are estimates (and mpg123 pads a cut stream), so only the
        # formats with exact counts are compared; 50 ms covers codec priming/padding.
        if handle.format not in ("MPEG", "MP3") and expected - decoded > 0.05 * rate:
            raise AudioDecodeError(
                f"{path}: only {decoded / rate:.1f} s of the {expected / rate:.1f} s in its "
                f"header decode: the file is truncated or corrupt; {fix}")
    if decoded == 0:
        raise AudioDecodeError(f"{path}: the file holds no samples; remove or replace it")
    return decoded / rate


def load_segment(path: str | Path, sample_rate: int, start_s: float, duration_s: float) -> np.ndarray:
    """Decode ``duration_s`` seconds of ``path`` from ``start_s`` (cut short at the end of
    the file) to mono float32 at ``sample_rate``: shape ``(≤ round(duration_s · rate),)``.

    Only that stretch is read (a seek, then one read), at the file's own rate, and
    resampled when the rates differ, so training can draw chunks of long recordings
    without decoding them whole.
    """
    path = Path(path)
    try:
        with sf.SoundFile(str(path)) as handle:
            rate = handle.samplerate
            handle.seek(min(int(round(start_s * rate)), handle.frames))
            audio = handle.read(int(round(duration_s * rate)), dtype="float32", always_2d=True)
    except Exception as err:  # libsndfile raises several types for bad input
        raise AudioDecodeError(
            f"{path}: cannot decode {duration_s:.1f} s from {start_s:.1f} s ({err}); re-encode "
            "it as wav/flac/ogg/mp3 or remove its row from the manifest") from err
    mono = audio.mean(axis=1)  # (n,)
    if rate != sample_rate and len(mono):
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)
