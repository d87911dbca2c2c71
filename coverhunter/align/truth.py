"""How right the chunk alignment [II-D] is, where the catalogue knows how its versions were made.

The demo catalogue (:mod:`coverhunter.demo`) records each version's recipe in the manifest:
the tune it plays (``source``), its tempo (× the score's tempo, at MIDI level, so audio
time = tune time / ``tempo``), the seconds of unrelated music before and after the work
(``intro_s``, ``outro_s``), its length (``duration_s``) and the one section of one pass
left out (``cut_pass``/``cut_section``) or played twice (``repeat_pass``/``repeat_section``).
With the tune's section bounds (:func:`coverhunter.demo.arrange.section_bounds`) that gives
each version's :class:`Timeline`: which position of one pass of the tune (the *score
position*, seconds at score tempo) it plays at every audio time, the way
:func:`coverhunter.demo.arrange.arrange` lays the passes out.

A chunk pair (``a`` from ``t_a``, ``b`` from ``t_b``, the chunks' start times) is **truly
aligned** when ``t_a`` and ``t_b`` both fall in their version's work (not in an intro or
outro: such a chunk has no true partner) and ``b`` plays the score position that ``a``
plays at ``t_a`` at some time within ``tolerance_s`` (one hop) of ``t_b``, inclusive. The
tune repeats pass after pass, so the same music occurs at several times of ``b``: any one
of them counts. Only the chunks' start times are judged (a chunk starting just before an
outro counts as music).

For each recording pair with an offset Δ, Δ is **right** when the diagonal ``p2 - p1 = Δ``
of the two chunk grids holds at least one truly aligned chunk pair (somewhere the versions
really are Δ hops apart: with different tempos the true offset drifts along the
recording, so no single Δ is right everywhere), and **best** when no other offset's
diagonal holds more truly aligned chunk pairs.

Without the recipe columns (a user's own catalogue), or for works whose versions play
different tunes (natural variants), there is no truth: the columns are <NA> and the
summary's numbers null.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from coverhunter.demo.arrange import plan_sections

TRUTH_COLUMNS = ("source", "tempo", "intro_s", "outro_s", "duration_s", "cut_pass",
                 "cut_section", "repeat_pass", "repeat_section")
PAIR_TRUTH_COLUMNS = ["truth_correct", "truth_delta_right", "truth_delta_best",
                      "truth_best_delta"]
EPS_S = 1e-6    # slack of the tolerance comparison (start times are sums of float hops)


@dataclass(frozen=True)
class Timeline:
    """Where one version plays which part of its tune.

    The work occupies audio ``[body_start_s, body_end_s)``; inside it tune time is
    ``u = (t - body_start_s) * tempo``. The passes are laid out as pieces (one section
    played once each): piece ``k`` covers tune time ``[piece_start[k], piece_start[k] +
    score_end[k] - score_start[k])`` and plays score positions ``[score_start[k],
    score_end[k])`` of one pass.
    """
    source: str
    body_start_s: float
    body_end_s: float
    tempo: float
    piece_start: np.ndarray   # (n_pieces,) tune time, ascending
    score_start: np.ndarray   # (n_pieces,) section start in one pass, score seconds
    score_end: np.ndarray     # (n_pieces,)

    def in_body(self, t: np.ndarray) -> np.ndarray:
        """Whether each audio time ``t`` falls in the work (not an intro or outro)."""
        t = np.asarray(t, dtype=np.float64)
        return (t >= self.body_start_s) & (t < self.body_end_s)

    def score_position(self, t: np.ndarray) -> np.ndarray:
        """The score position played at each audio time ``t`` (same shape); NaN outside
        the work."""
        t = np.asarray(t, dtype=np.float64)
        u = (t - self.body_start_s) * self.tempo
        k = np.clip(np.searchsorted(self.piece_start, u, side="right") - 1, 0, None)
        x = self.score_start[k] + u - self.piece_start[k]
        return np.where(self.in_body(t), x, np.nan)

    def times_of(self, x: np.ndarray) -> np.ndarray:
        """Every audio time at which the work plays score position ``x``: shape
        ``(*x.shape, n_pieces)``, NaN for pieces that do not (other sections, a pass
        beyond the recording's end, or ``x`` NaN)."""
        x = np.asarray(x, dtype=np.float64)[..., None]
        t = self.body_start_s + (self.piece_start + x - self.score_start) / self.tempo
        plays = (self.score_start <= x) & (x < self.score_end) & (t < self.body_end_s)
        return np.where(plays, t, np.nan)


def arrangement(bounds: np.ndarray, length_s: float, cut: tuple[int, int] | None = None,
                repeat: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The pieces of :func:`coverhunter.demo.arrange.arrange` (same rules): the tune cut
    at ``bounds`` ``(n_sec + 1,)`` into sections, played pass after pass for ``length_s``
    seconds of tune time, section ``cut[1]`` left out of pass ``cut[0]``, section
    ``repeat[1]`` played twice in pass ``repeat[0]``.

    Returns ``(piece_start (n,), section (n,))``: each piece's tune-time start and the
    section it plays.
    """
    bounds = np.asarray(bounds, dtype=np.float64)
    if bounds.size < 2 or not np.all(np.diff(bounds) > 0):
        raise ValueError(f"section bounds must rise from 0 to the pass length, got {bounds}")
    plan, _ = plan_sections(bounds, length_s, cut, repeat)   # (start, end, t, pass, section)
    return (np.array([piece[2] for piece in plan], dtype=np.float64),
            np.array([piece[4] for piece in plan], dtype=np.int64))


def timeline(bounds: np.ndarray, tempo: float, duration_s: float, intro_s: float = 0.0,
             outro_s: float = 0.0, cut: tuple[int, int] | None = None,
             repeat: tuple[int, int] | None = None, source: str = "") -> Timeline:
    """The :class:`Timeline` of a version: its tune's section ``bounds`` (``0, ...,
    length_s`` of one pass at score tempo), its recipe (``cut``/``repeat`` as ``(pass,
    section)`` or None)."""
    if tempo <= 0:
        raise ValueError(f"tempo must be > 0, got {tempo}")
    body_start, body_end = float(intro_s), float(duration_s) - float(outro_s)
    piece_start, section = arrangement(bounds, max(body_end - body_start, 0.0) * tempo,
                                       cut, repeat)
    bounds = np.asarray(bounds, dtype=np.float64)
    return Timeline(source, body_start, body_end, float(tempo), piece_start,
                    bounds[section], bounds[section + 1])


def has_truth_columns(manifest: pd.DataFrame) -> bool:
    """Whether the manifest carries the recipe columns a :class:`Timeline` needs."""
    return all(c in manifest.columns for c in TRUTH_COLUMNS)


def manifest_timelines(manifest: pd.DataFrame, bounds: Mapping[str, np.ndarray]
                       ) -> dict[str, Timeline]:
    """Timelines of the manifest's recordings, by ``recording_id``, from the recipe columns
    (:data:`TRUTH_COLUMNS`) and ``bounds``: each source tune's section bounds. Recordings
    without a complete recipe or whose source has no bounds are left out; an empty dict
    when the manifest has no recipe columns."""
    if not has_truth_columns(manifest):
        return {}
    numeric = [c for c in TRUTH_COLUMNS if c != "source"]   # the validated manifest is text
    manifest = manifest.assign(**{c: pd.to_numeric(manifest[c], errors="coerce")
                                  for c in numeric})
    out = {}
    for row in manifest.itertuples(index=False):
        if row.source not in bounds or pd.isna(row.source) or any(
                pd.isna(getattr(row, c)) for c in TRUTH_COLUMNS):
            continue
        cut = (int(row.cut_pass), int(row.cut_section)) if row.cut_pass >= 0 else None
        rep = (int(row.repeat_pass), int(row.repeat_section)) if row.repeat_pass >= 0 else None
        out[row.recording_id] = timeline(bounds[row.source], float(row.tempo),
                                         float(row.duration_s), float(row.intro_s),
                                         float(row.outro_s), cut, rep, str(row.source))
    return out


def demo_section_bounds(cache_dir: str | Path, sources: Sequence[str],
                        sections: int) -> dict[str, np.ndarray]:
    """Section bounds of the demo's ``sources`` tunes, read from the demo build's tune
    cache in ``cache_dir`` (``<out_dir>/cache``): tunes not there are left out (an empty
    dict without a cache). Imports the demo package (music21) only when called.

    The cache file of the current tune extraction comes first; a tune it lacks is taken
    from an older cache file there (newest first), the one a manifest built before a
    change of the extraction was made from. The section bounds depend only on the notes'
    onsets and the pass length.
    """
    from coverhunter.demo.arrange import section_bounds
    from coverhunter.demo.tune import Tune
    from coverhunter.demo.tune_store import TuneStore

    store = TuneStore(Path(cache_dir), runner=None)   # reads the cache file; parses nothing
    older = sorted((f for f in Path(cache_dir).glob("tunes-*.json") if f != store.path),
                   key=lambda f: f.stat().st_mtime, reverse=True)
    caches = [store.data]
    out, todo = {}, set(sources)
    while todo and (caches or older):
        data = caches.pop() if caches else json.loads(older.pop(0).read_text())
        for ref in [r for r in todo if r in data and "error" not in data[r]]:
            out[ref] = section_bounds(Tune.from_json(ref, data[ref]), sections)
            todo.discard(ref)
    return out


# --- judging chunk pairs ----------------------------------------------------------------

def chunk_gaps(a: Timeline, b: Timeline, t_a: np.ndarray, t_b: np.ndarray) -> np.ndarray:
    """For chunk pairs (``a`` from ``t_a``, ``b`` from ``t_b``, broadcast together): how
    far ``t_b`` is from the nearest time at which ``b`` plays ``a``'s music at ``t_a``,
    in seconds; inf where ``t_a`` or ``t_b`` is outside its work or ``b`` never plays
    that music."""
    if a.source != b.source:
        raise ValueError(f"versions of different tunes ({a.source!r}, {b.source!r}) have "
                         "no common score positions")
    t_a, t_b = np.broadcast_arrays(np.asarray(t_a, np.float64), np.asarray(t_b, np.float64))
    occurrences = b.times_of(a.score_position(t_a))            # (*shape, n_pieces_b)
    gap = np.abs(np.nan_to_num(occurrences, nan=np.inf) - t_b[..., None])
    gap = gap.min(axis=-1, initial=np.inf)
    return np.where(a.in_body(t_a) & b.in_body(t_b), gap, np.inf)


def truly_aligned(a: Timeline, b: Timeline, t_a: np.ndarray, t_b: np.ndarray,
                  tolerance_s: float) -> np.ndarray:
    """Whether each chunk pair (``a`` from ``t_a``, ``b`` from ``t_b``, broadcast
    together) is truly aligned (module docstring): both starts in their work, and ``b``
    plays ``a``'s music at ``t_a`` within ``tolerance_s`` of ``t_b`` (any occurrence)."""
    return chunk_gaps(a, b, t_a, t_b) <= tolerance_s + EPS_S


def gap_matrix(a: Timeline, b: Timeline, starts_a: np.ndarray,
               starts_b: np.ndarray) -> np.ndarray:
    """:func:`chunk_gaps` for every chunk pair of two chunk grids: ``(n_a, n_b)``."""
    return chunk_gaps(a, b, np.asarray(starts_a)[:, None], np.asarray(starts_b)[None, :])


def truth_matrix(a: Timeline, b: Timeline, starts_a: np.ndarray, starts_b: np.ndarray,
                 tolerance_s: float) -> np.ndarray:
    """:func:`truly_aligned` for every chunk pair of two chunk grids: ``(n_a, n_b)``."""
    return gap_matrix(a, b, starts_a, starts_b) <= tolerance_s + EPS_S


def diagonal_counts(matrix: np.ndarray, gaps: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Truly aligned chunk pairs on each diagonal ``δ = p2 - p1`` of a ``(n_a, n_b)``
    truth matrix: ``(offsets (n_a + n_b - 1,), counts, gap sums)``, offsets from
    ``-(n_a - 1)``; gap sums: the summed ``gaps`` of those truly aligned pairs (zeros
    without ``gaps``)."""
    n_a, n_b = matrix.shape
    p1, p2 = np.nonzero(matrix)
    offsets = np.arange(-(n_a - 1), n_b)
    diag = p2 - p1 + n_a - 1
    weights = np.zeros(len(p1)) if gaps is None else gaps[p1, p2]
    return (offsets, np.bincount(diag, minlength=len(offsets)),
            np.bincount(diag, weights=weights, minlength=len(offsets)))


def best_offset(offsets: np.ndarray, counts: np.ndarray, gap_sums: np.ndarray) -> int | None:
    """The offset whose diagonal holds the most truly aligned chunk pairs (ties: the
    smallest summed gap, then the smallest ``|δ|``, then the smaller δ); None when none
    holds any."""
    if len(counts) == 0 or counts.max() == 0:
        return None
    top = np.flatnonzero(counts == counts.max())
    pick = np.lexsort((offsets[top], np.abs(offsets[top]), np.round(gap_sums[top], 6)))[0]
    return int(offsets[top[pick]])


class _PairTruth:
    """Per recording pair: ``truth_correct`` (aligned chunk pairs that are truly aligned),
    Δ right/best, the offset with the most truly aligned chunk pairs, and what chance
    gives (truly aligned share of all chunk pairs and of all offsets)."""

    def __init__(self, n: int):
        self.correct = pd.array([pd.NA] * n, dtype="Int64")
        self.right = pd.array([pd.NA] * n, dtype="boolean")
        self.best = pd.array([pd.NA] * n, dtype="boolean")
        self.best_delta = pd.array([pd.NA] * n, dtype="Int64")
        self.true_cells = np.zeros(n, dtype=np.int64)         # truly aligned chunk pairs
        self.cells = np.zeros(n, dtype=np.int64)              # all chunk pairs (with truth)
        self.right_offsets = np.full(n, np.nan)               # share of offsets that are right
        self.checked = np.zeros(n, dtype=bool)


def judge(alignments: pd.DataFrame, pairs: pd.DataFrame, timelines: Mapping[str, Timeline],
          hop_s: float, tolerance_s: float | None = None) -> tuple[pd.Series, pd.DataFrame, dict]:
    """Judge an alignment (:func:`coverhunter.align.alignment.align_catalogue`'s two tables) against
    the versions' timelines.

    ``hop_s``: the chunk grid's hop in seconds (chunk ``k`` of a recording starts at
    ``k * hop_s``: the pairs table gives each recording's chunk count);
    ``tolerance_s``: how far from the truth a chunk start may be (default one hop).

    Returns the alignments' truth (boolean Series, <NA> without truth), the pairs' truth
    columns (:data:`PAIR_TRUTH_COLUMNS`, index as ``pairs``) and the summary
    (:func:`truth_summary`).
    """
    tol = hop_s if tolerance_s is None else float(tolerance_s)
    verdict = pd.array([pd.NA] * len(alignments), dtype="boolean")
    pt = _PairTruth(len(pairs))
    rows = {key: np.asarray(idx) for key, idx in alignments.groupby(
        ["rec_a", "rec_b"], sort=False).indices.items()} if len(alignments) else {}
    for i, pair in enumerate(pairs.itertuples(index=False)):
        a, b = timelines.get(pair.rec_a), timelines.get(pair.rec_b)
        if a is None or b is None or a.source != b.source:
            continue
        gaps = gap_matrix(a, b, np.arange(pair.n_chunks_a) * hop_s,
                          np.arange(pair.n_chunks_b) * hop_s)
        matrix = gaps <= tol + EPS_S
        offsets, counts, gap_sums = diagonal_counts(matrix, gaps)
        pt.checked[i] = True
        pt.true_cells[i], pt.cells[i] = matrix.sum(), matrix.size
        pt.right_offsets[i] = np.mean(counts > 0)
        best = best_offset(offsets, counts, gap_sums)
        if best is not None:
            pt.best_delta[i] = best
        idx = rows.get((pair.rec_a, pair.rec_b), np.empty(0, dtype=np.int64))
        ok = truly_aligned(a, b, alignments["start_a_s"].to_numpy()[idx],
                           alignments["start_b_s"].to_numpy()[idx], tol)
        verdict[idx] = ok
        pt.correct[i] = int(ok.sum())
        if not pd.isna(pair.delta):
            n_true = counts[int(pair.delta) + pair.n_chunks_a - 1]
            pt.right[i] = bool(n_true > 0)
            pt.best[i] = bool(n_true > 0 and n_true == counts.max())
    table = pd.DataFrame({"truth_correct": pt.correct, "truth_delta_right": pt.right,
                          "truth_delta_best": pt.best, "truth_best_delta": pt.best_delta},
                         index=pairs.index)
    return pd.Series(verdict, index=alignments.index, name="truth_within_hop"), table, \
        truth_summary(pairs, table, pt, tol)


def truth_summary(pairs: pd.DataFrame, table: pd.DataFrame, pt: _PairTruth,
                  tolerance_s: float) -> dict:
    """The numbers of ``reports/align.json`` (``truth_*``; null without truth):

    - ``truth_within_hop``: share of aligned chunk pairs that are truly aligned;
      ``truth_chance``: the same share over *all* chunk pairs of those recording pairs
      (what chunk pairs drawn at random would score);
    - ``truth_delta_right``: share of recording pairs with a Δ whose Δ is right;
      ``truth_delta_chance``: the mean share of offsets that are right (a random Δ);
      ``truth_delta_best``: share whose Δ is among the best offsets;
    - counts: recording pairs checked / with a Δ / alignable (some truly aligned chunk
      pair exists), aligned chunk pairs checked / correct.
    """
    checked = pt.checked
    with_delta = checked & ~pairs["delta"].isna().to_numpy()
    n_checked_chunks = int(pairs["aligned"].to_numpy()[checked].sum()) if len(pairs) else 0
    n_correct = int(table["truth_correct"].sum()) if checked.any() else 0

    def share(num, den):
        return float(num / den) if checked.any() and den else None

    return {
        "truth_tolerance_s": float(tolerance_s),
        "truth_pairs_checked": int(checked.sum()),
        "truth_pairs_with_delta": int(with_delta.sum()),
        "truth_pairs_alignable": int((pt.true_cells[checked] > 0).sum()),
        "truth_chunk_pairs_checked": n_checked_chunks,
        "truth_chunk_pairs_correct": n_correct,
        "truth_within_hop": share(n_correct, n_checked_chunks),
        "truth_chance": share(pt.true_cells[checked].sum(), pt.cells[checked].sum()),
        "truth_delta_right": share(table["truth_delta_right"].sum(), with_delta.sum()),
        "truth_delta_best": share(table["truth_delta_best"].sum(), with_delta.sum()),
        "truth_delta_chance": (float(np.mean(pt.right_offsets[with_delta]))
                               if with_delta.any() else None),
    }
