"""On-the-fly audio augmentation [III-B, "training tricks"]: speed, noise mixing, volume.

The paper transforms each training sample anew every time it is drawn, before the CQT, so
the model hears one recording under many conditions: a different tempo with the pitch
kept, noise mixed in at a random SNR (from -10 to 30 dB, MUSAN noise in the paper) and a
different level (-6 to 0 dB). Here the steps run in that physical order (speed, then
noise, then volume), each with its own probability and range from ``params.yaml``
(``augment:``). Audio is mono float32 of shape ``(n_samples,)``; every random draw comes
from an explicit ``numpy.random.Generator``, so a seed fixes the result. The gain and the
SNR mix are :mod:`coverhunter.features.effects`' functions; the time stretch is librosa's.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np

from coverhunter.features.audio import AudioDecodeError, audio_duration, load_audio
from coverhunter.features.effects import coloured_noise, gain_db, mix_at_snr
from coverhunter.params import AugmentParams

__all__ = ["AUDIO_SUFFIXES", "AudioAugment", "AudioAugmentRecord", "NoiseSource",
           "OtherWorks", "change_speed", "noise_files"]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".opus")

# Audio of works other than the one being augmented, at the training sample rate: a list of
# signals, or a callable drawing one with the generator it is given. The caller (the
# training loop) builds it so that it never returns the current work.
OtherWorks = Callable[[np.random.Generator], np.ndarray] | Sequence[np.ndarray]


def change_speed(x: np.ndarray, rate: float) -> np.ndarray:
    """``x`` played ``rate`` times faster with its pitch kept (librosa's phase-vocoder time
    stretch). Shape ``(n,)`` → ``(round(n / rate),)``, float32."""
    return librosa.effects.time_stretch(np.asarray(x, dtype=np.float32), rate=rate).astype(
        np.float32, copy=False)


def noise_files(folder: str | Path) -> list[Path]:
    """Every audio file under ``folder`` (recursively, sorted), each header checked.

    Raises ``ValueError`` naming ``augment.noise_dir`` and the folder when it is missing or
    holds no audio, and :class:`AudioDecodeError` naming the folder and the file when a
    file cannot be read."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"augment.noise_dir: {folder} is not a folder")
    files = sorted(f for f in folder.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES and f.is_file())
    if not files:
        raise ValueError(f"augment.noise_dir: {folder} holds no audio files "
                         f"({', '.join(AUDIO_SUFFIXES)})")
    for f in files:
        try:
            seconds = audio_duration(f)
        except AudioDecodeError as err:
            raise AudioDecodeError(f"augment.noise_dir {folder}: {err}") from err
        if seconds <= 0:
            raise AudioDecodeError(f"augment.noise_dir {folder}: {f} holds no samples")
    return files


def _window(signal: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of ``signal`` from a random start, looping it when it is shorter."""
    if len(signal) == 0:
        raise ValueError("augment: a noise source returned empty audio")
    if len(signal) >= n:
        start = int(rng.integers(len(signal) - n + 1))
        return signal[start:start + n]
    start = int(rng.integers(len(signal)))
    return np.resize(np.roll(signal, -start), n)  # (n,)


class NoiseSource:
    """Noise for :func:`coverhunter.features.effects.mix_at_snr`, drawn from up to three sources.

    ``coloured``: synthetic 1/f^e noise, ``e`` uniform in ``exponent`` (always available);
    ``folder``: a random stretch of a random file under ``noise_dir`` (decoded with
    :func:`coverhunter.features.audio.load_audio` when drawn); ``other_work``: a random stretch of
    another work's recording from ``other_works``. Each draw picks a source with the given
    shares; an absent source (no folder, no other works) drops out and the others keep
    their proportions. A stretch that is digital silence is replaced by coloured noise.
    """

    def __init__(self, sample_rate: int, exponent: tuple[float, float],
                 coloured_share: float, folder_share: float, other_work_share: float,
                 noise_dir: str | Path | None = None, other_works: OtherWorks | None = None):
        self.sample_rate = sample_rate
        self.exponent = exponent
        self.files = noise_files(noise_dir) if noise_dir else []
        self.noise_dir = noise_dir
        if other_works is not None and not callable(other_works) and len(other_works) == 0:
            other_works = None
        self.other_works = other_works
        shares = {"coloured": coloured_share,
                  "folder": folder_share if self.files else 0.0,
                  "other_work": other_work_share if other_works is not None else 0.0}
        total = sum(shares.values())
        if total <= 0:
            raise ValueError(
                "augment: no noise source with a positive share is available "
                f"(noise_coloured_share={coloured_share}, noise_dir={noise_dir!r} with share "
                f"{folder_share}, other-work audio {'given' if other_works is not None else 'not given'} "
                f"with share {other_work_share})")
        self.names = list(shares)
        self.probs = np.array([shares[k] / total for k in self.names])  # (3,)

    @classmethod
    def from_params(cls, p: AugmentParams, sample_rate: int,
                    other_works: OtherWorks | None = None) -> NoiseSource:
        return cls(sample_rate, p.noise_exponent, p.noise_coloured_share, p.noise_folder_share,
                   p.noise_other_work_share, p.noise_dir, other_works)

    def draw(self, rng: np.random.Generator, n_samples: int) -> np.ndarray:
        """``n_samples`` of noise, float32 ``(n_samples,)``."""
        return self.draw_with_source(rng, n_samples)[0]

    def draw_with_source(self, rng: np.random.Generator, n_samples: int) -> tuple[np.ndarray, str]:
        """Noise ``(n_samples,)`` and a label of where it came from (for logs and tests)."""
        name = self.names[int(rng.choice(len(self.names), p=self.probs))]
        if name == "coloured":
            return self._coloured(rng, n_samples)
        if name == "folder":
            path = self.files[int(rng.integers(len(self.files)))]
            try:
                audio = load_audio(path, self.sample_rate)
            except AudioDecodeError as err:
                raise AudioDecodeError(f"augment.noise_dir {self.noise_dir}: {err}") from err
            label = f"folder:{path.name}"
        else:
            works = self.other_works
            audio = works(rng) if callable(works) else works[int(rng.integers(len(works)))]
            label = "other_work"
        noise = _window(np.asarray(audio, dtype=np.float32), n_samples, rng)
        if n_samples > 0 and not np.any(noise):
            noise, coloured = self._coloured(rng, n_samples)
            label = f"{coloured} (silent {label})"
        return noise, label

    def _coloured(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, str]:
        exponent = float(rng.uniform(*self.exponent))
        return coloured_noise(n, exponent, rng), f"coloured:{exponent:.2f}"


@dataclass(frozen=True)
class AudioAugmentRecord:
    """What one call applied; ``None`` = the step was skipped."""
    speed_rate: float | None
    snr_db: float | None
    volume_db: float | None
    noise_source: str | None = None

    def as_dict(self) -> dict[str, float | str | None]:
        return dataclasses.asdict(self)


class AudioAugment:
    """Speed → noise → volume, each applied with its own probability from ``p``.

    ``plan(rng)`` draws the decisions (useful to read the speed rate before cutting a
    chunk), ``apply(x, plan, rng)`` carries them out; calling the object does both. A
    signal that is digital silence gets no noise (its SNR is undefined). The input is
    never modified.
    """

    def __init__(self, p: AugmentParams, noise: NoiseSource):
        self.p = p
        self.noise = noise

    @classmethod
    def from_params(cls, p: AugmentParams, sample_rate: int,
                    other_works: OtherWorks | None = None) -> AudioAugment:
        return cls(p, NoiseSource.from_params(p, sample_rate, other_works))

    def plan(self, rng: np.random.Generator) -> AudioAugmentRecord:
        """Draw which steps run and their values (a fixed number of draws per call)."""
        p = self.p
        u = rng.random(3)  # one uniform per step: applied when below its probability
        rate, snr, volume = (float(rng.uniform(*r)) for r in (p.speed_rate, p.snr_db, p.volume_db))
        return AudioAugmentRecord(speed_rate=rate if u[0] < p.speed_prob else None,
                                  snr_db=snr if u[1] < p.noise_prob else None,
                                  volume_db=volume if u[2] < p.volume_prob else None)

    def apply(self, x: np.ndarray, plan: AudioAugmentRecord,
              rng: np.random.Generator) -> tuple[np.ndarray, AudioAugmentRecord]:
        """``x`` ``(n,)`` → augmented ``(round(n / rate),)`` float32, and what was applied."""
        y = np.asarray(x, dtype=np.float32)
        if plan.speed_rate is not None:
            y = change_speed(y, plan.speed_rate)
        if plan.snr_db is not None:
            if np.any(y):
                noise, source = self.noise.draw_with_source(rng, len(y))
                y = mix_at_snr(y, noise, plan.snr_db)
                plan = dataclasses.replace(plan, noise_source=source)
            else:
                plan = dataclasses.replace(plan, snr_db=None)
        if plan.volume_db is not None:
            y = gain_db(y, plan.volume_db)
        return y, plan

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, AudioAugmentRecord]:
        return self.apply(x, self.plan(rng), rng)
