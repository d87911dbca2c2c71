import numpy as np
import pytest
import soundfile as sf
from synth import tone

from coverhunter.features.audio import AudioDecodeError, audio_duration, load_audio


def dominant_frequency(x: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.fft.rfftfreq(len(x), 1 / sample_rate)[spectrum.argmax()]


@pytest.mark.parametrize("ext,subtype", [("wav", "PCM_16"), ("flac", "PCM_16"),
                                         ("ogg", "VORBIS"), ("mp3", "MPEG_LAYER_III")])
def test_formats_decode_to_mono_at_the_target_rate(tmp_path, ext, subtype):
    src_rate, target = 22050, 16000
    left = tone(440.0, 2.0, src_rate)
    stereo = np.stack([left, 0.5 * left], axis=1)          # (n, 2)
    path = tmp_path / f"tone.{ext}"
    sf.write(path, stereo, src_rate, subtype=subtype)
    audio = load_audio(path, target)
    assert audio.dtype == np.float32 and audio.ndim == 1
    # lossy codecs pad a few ms of priming / padding samples
    assert abs(len(audio) / target - 2.0) < 0.1
    assert abs(dominant_frequency(audio, target) - 440.0) < 2.0
    # mono is the channel mean: amplitude 0.5 and 0.25 average to 0.375
    assert abs(np.abs(audio[2000:-2000]).max() - 0.375) < 0.03
    assert abs(audio_duration(path) - 2.0) < 0.1


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.wav"
    with pytest.raises(AudioDecodeError, match="nope.wav: no such file"):
        load_audio(missing, 16000)


def test_undecodable_file_names_the_path_and_the_fix(tmp_path):
    bad = tmp_path / "corrupt.flac"
    bad.write_bytes(b"this is not audio" * 100)
    with pytest.raises(AudioDecodeError, match=r"corrupt.flac: cannot decode audio.*re-encode"):
        load_audio(bad, 16000)


@pytest.mark.parametrize("ext", ["flac", "wav"])
def test_a_long_file_decoded_in_stretches_equals_one_plain_read(tmp_path, ext):
    """Long FLAC / WAV files are decoded as several stretches at once, each averaged to mono
    and resampled on its own: at the file's rate the samples are the same, bit for bit, as
    one plain read averaged to mono; resampled, within 1e-5 of resampling the whole file,
    with the same length (odd lengths, three channels, 44.1 and 48 kHz)."""
    import soxr

    from coverhunter.features.audio import PARALLEL_MIN_FRAMES, to_mono
    rng = np.random.default_rng(5)
    for rate in (44100, 48000):
        x = (0.3 * rng.standard_normal((PARALLEL_MIN_FRAMES + 12_345, 3))).astype(np.float32)
        path = tmp_path / f"long{rate}.{ext}"
        sf.write(path, x, rate, subtype="PCM_16")
        plain, _ = sf.read(path, dtype="float32", always_2d=True)
        mono = to_mono(plain)
        np.testing.assert_allclose(mono, plain.mean(axis=1), rtol=0, atol=1e-7)
        np.testing.assert_array_equal(load_audio(path, rate), mono)
        whole = soxr.resample(mono, rate, 16000, quality="HQ")
        got = load_audio(path, 16000)
        assert got.shape == whole.shape
        np.testing.assert_allclose(got, whole, rtol=0, atol=1e-5)
