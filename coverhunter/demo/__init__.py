"""The embedded demo catalogue: real corpus tunes rendered offline as cover versions.

No cover-song audio set can be fetched at run time, so the demo catalogue is
made from the folk-tune collections in the music21 corpus. Each *work* is one tune. Its
*versions* differ the way covers do:

- instrument: a different General MIDI program for each version of a work (and, where
  ``demo.soundfonts`` names several, a soundfont drawn per version);
- arrangement (with probability ``demo.p_band``): a band around the melody, made to fit
  it: chords chosen per bar from the melody and the key, in one or two styles (strummed,
  arpeggiated, pad, comping), a bass line, drums on the percussion channel, the melody
  an octave up or down and sometimes silent for a section, and a mix, a tone control and
  a compressor of its own (:mod:`~coverhunter.demo.accompany`);
- key (``transpose`` semitones) and tempo (``tempo`` × the score's tempo, at MIDI level);
- structure: the tune is played as many times (*passes*) as the version's length needs,
  as folk musicians do; one section of one pass may be cut or played twice; an unrelated
  tune may be added as an intro or an outro. The intro length is recorded, to the sample,
  for the alignment stage;
- recording: room reverb, added coloured noise at a random SNR, and loudness.

*Natural variants*: where the corpus holds genuinely different settings of one tune (the
same tune in two or three books, or the variant sets of the Essen collection), those
settings are the versions of one work. These works form their own split
(``variants_split``, ``test_variants`` by default); their tunes never appear in any other
split. The groups in :data:`NATURAL_VARIANTS` were checked by melody (see the notes there).

The Bach chorales are never used (they are held for an independent evaluation).

Sizes: ``full`` (the reference demo: the melody alone), ``tiny`` (tests) and ``large`` (a
training catalogue of band covers, which never plays a tune of the full demo's ``val``,
``test`` or ``test_variants`` works: ``demo.exclude_splits``).

Public entry points: :class:`DemoParams`, :func:`demo_params` (reads the ``demo:`` section
of ``params.yaml``), :func:`reference_params` and :func:`build_catalogue` (writes
``<out>/audio/*.flac`` and ``<out>/manifest.csv``, and returns the manifest). Run it by
hand with ``python -m coverhunter.demo [--size tiny|large] [--out DIR]``.

Everything is deterministic: the same parameters (and code) give a byte-identical
manifest. A version whose FLAC exists and carries the same recipe hash (in the FLAC's
comment tag) is not rendered again, so an interrupted build resumes where it stopped.

The modules, one concept each:

- :mod:`~coverhunter.demo.params`: :class:`DemoParams`, :func:`demo_params`;
- :mod:`~coverhunter.demo.corpus`: the corpus index, the natural-variant groups;
- :mod:`~coverhunter.demo.tune`: :class:`Tune`, one pass of a tune as notes;
- :mod:`~coverhunter.demo.parse`: a corpus score parsed into a :class:`Tune`;
- :mod:`~coverhunter.demo.similarity`: melody and title matching (the dedupe);
- :mod:`~coverhunter.demo.arrange`: sections, passes, cuts and repeats;
- :mod:`~coverhunter.demo.accompany`: the band: key, chords, bass, drums;
- :mod:`~coverhunter.demo.midi`: notes as MIDI bytes for the synthesiser;
- :mod:`~coverhunter.demo.recipe`: :class:`Recipe` and its hash (the render-cache key);
- :mod:`~coverhunter.demo.seeds`: the build's random streams;
- :mod:`~coverhunter.demo.plan`: the random draws of a work's versions;
- :mod:`~coverhunter.demo.synth`: a recipe rendered to audio;
- :mod:`~coverhunter.demo.splits`: which ordinary works go to which split;
- :mod:`~coverhunter.demo.selection`: which corpus tunes become works and fillers;
- :mod:`~coverhunter.demo.runner`, :mod:`~coverhunter.demo.tune_store`,
  :mod:`~coverhunter.demo.render_cache`: the parallel runner and the two caches;
- :mod:`~coverhunter.demo.catalogue`: :func:`build_catalogue`, the manifest;
- ``__main__``: the command line.
"""
from __future__ import annotations

import importlib

# two functions share their module's name: bound here, so the package attribute stays the
# function once the submodule has loaded (both modules are light)
from coverhunter.demo.accompany import accompany
from coverhunter.demo.arrange import arrange

# names -> the module that defines them, imported on first use (PEP 562): a light import
# such as coverhunter.demo.params does not load the renderer and the corpus reader
_WHERE = {
    "estimate_key": "coverhunter.demo.harmony",
    "harmonise": "coverhunter.demo.harmony",
    "section_bounds": "coverhunter.demo.arrange",
    "MANIFEST_COLUMNS": "coverhunter.demo.catalogue",
    "build_catalogue": "coverhunter.demo.catalogue",
    "NATURAL_VARIANTS": "coverhunter.demo.corpus",
    "clean_title": "coverhunter.demo.corpus",
    "corpus_index": "coverhunter.demo.corpus",
    "notes_to_midi": "coverhunter.demo.midi",
    "DemoParams": "coverhunter.demo.params",
    "demo_params": "coverhunter.demo.params",
    "reference_params": "coverhunter.demo.params",
    "load_tune": "coverhunter.demo.parse",
    "Recipe": "coverhunter.demo.recipe",
    "melody_similarity": "coverhunter.demo.similarity",
    "normalise_title": "coverhunter.demo.similarity",
    "assemble": "coverhunter.demo.synth",
    "band_tracks": "coverhunter.demo.synth",
    "render_parts": "coverhunter.demo.synth",
    "render_version": "coverhunter.demo.synth",
    "Tune": "coverhunter.demo.tune",
}

__all__ = [
    "MANIFEST_COLUMNS", "NATURAL_VARIANTS", "DemoParams", "Recipe", "Tune", "accompany",
    "arrange", "assemble", "band_tracks", "build_catalogue", "clean_title", "corpus_index",
    "demo_params", "estimate_key", "harmonise", "load_tune", "melody_similarity",
    "normalise_title", "notes_to_midi", "reference_params", "render_parts",
    "render_version", "section_bounds",
]


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'coverhunter.demo' has no attribute {name!r}")
