"""Ground truth of the chunk alignment (coverhunter/align/truth.py): known answers."""
import json

import numpy as np
import pandas as pd
import pytest

from coverhunter.align.alignment import align_work
from coverhunter.align.truth import (
    PAIR_TRUTH_COLUMNS,
    arrangement,
    best_offset,
    diagonal_counts,
    gap_matrix,
    judge,
    manifest_timelines,
    timeline,
    truly_aligned,
    truth_matrix,
)

HOP = 7.5
LONG = np.array([0.0, 50.0, 100.0, 150.0, 200.0])   # one 200 s pass: no repeat in 2 minutes


def grid(n):
    return np.arange(n) * HOP


# --- timelines ------------------------------------------------------------------------

def test_arrangement_pieces_with_cut_and_repeat():
    bounds = np.array([0.0, 10.0, 20.0, 30.0])
    starts, sections = arrangement(bounds, 75.0, cut=(0, 1), repeat=(1, 2))
    # pass 0: s0 s2 (s1 cut); pass 1: s0 s1 s2 s2; pass 2, begun before 75 s, in full
    assert sections.tolist() == [0, 2, 0, 1, 2, 2, 0, 1, 2]
    assert starts.tolist() == [0, 10, 20, 30, 40, 50, 60, 70, 80]


def test_score_position_and_times_of():
    tl = timeline(np.array([0.0, 10.0, 20.0, 30.0]), tempo=2.0, duration_s=40.0, intro_s=4.0,
                  outro_s=6.0)                       # work in [4, 34) s: 60 s of tune time
    np.testing.assert_allclose(tl.score_position(np.array([0.0, 4.0, 9.0, 21.0, 33.0, 34.0])),
                               [np.nan, 0.0, 10.0, 4.0, 28.0, np.nan])
    occ = tl.times_of(np.array(5.0))                 # score 5 s: 2.5 s into each 15 s pass
    np.testing.assert_allclose(np.sort(occ[~np.isnan(occ)]), [6.5, 21.5])


def test_arrangement_follows_the_demo_arrange():
    from coverhunter.demo.arrange import arrange, section_bounds
    from coverhunter.demo.tune import Tune
    rng = np.random.default_rng(0)
    onsets = np.round(np.sort(rng.uniform(0, 30, 40)), 3)
    notes = np.stack([onsets, np.full(40, 0.25), rng.integers(50, 80, 40), np.full(40, 90)], 1)
    tune = Tune("t", "t", notes, 31.0)
    bounds = section_bounds(tune, 4)
    for cut, rep in [(None, None), ((1, 2), None), (None, (0, 3)), ((0, 0), (2, 1))]:
        played, _ = arrange(tune, 100.0, 4, cut, rep)
        tl = timeline(bounds, 1.0, 100.0, cut=cut, repeat=rep)
        x = tl.score_position(played[:, 0])          # where each played note is in the pass
        for xi, pitch in zip(x, played[:, 2]):
            at = np.isclose(notes[:, 0], xi, atol=1e-9)
            assert at.any() and pitch in notes[at, 2]
        # and every time the pass's first note is played is an onset of arrange's output
        first = tl.times_of(np.array(notes[0, 0]))
        assert np.isin(np.round(first[~np.isnan(first)], 9), np.round(played[:, 0], 9)).all()


# --- judging chunk pairs --------------------------------------------------------------

def test_intro_of_15_s_in_b_gives_a_true_offset_of_two_hops():
    a = timeline(LONG, 1.0, 120.0)
    b = timeline(LONG, 1.0, 120.0, intro_s=15.0)
    m = truth_matrix(a, b, grid(15), grid(15), HOP)
    offsets, counts, gap_sums = diagonal_counts(m, gap_matrix(a, b, grid(15), grid(15)))
    # δ = 1 holds as many truly aligned pairs (each 7.5 s off); δ = 2 is exact
    assert counts[offsets == 2] == counts[offsets == 1] == counts.max() == 13
    assert gap_sums[offsets == 2] == 0 and gap_sums[offsets == 1] == 13 * 7.5
    assert best_offset(offsets, counts, gap_sums) == 2
    assert m[0, 2] and m[3, 5]
    assert not m[0, 0]            # b's chunk 0 is in its intro, and 15 s away
    assert not m[0, 1]            # 7.5 s from the truth, but b's 7.5 s is still intro
    assert m[3, 4] and m[3, 6]    # 7.5 s either side: within one hop (inclusive)
    assert not m[3, 7]            # 15 s away
    assert not m[14, :].any()     # a's 105 s is past the music b reaches (score 105 s)


def test_a_version_twice_as_fast():
    a = timeline(LONG, 1.0, 120.0)
    b = timeline(LONG, 2.0, 60.0)            # plays score x at x / 2 s
    ok = truly_aligned(a, b, np.array([30.0, 30.0, 30.0, 60.0]),
                       np.array([15.0, 22.5, 30.0, 30.0]), HOP)
    assert ok.tolist() == [True, True, False, True]


def test_a_chunk_in_an_intro_or_outro_has_no_partner():
    a = timeline(LONG, 1.0, 60.0, intro_s=10.0)
    b = timeline(LONG, 1.0, 60.0, outro_s=10.0)
    # a's 7.5 s is intro; b's 52.5 s is outro (a plays score 45 at 55 s, b at 45 s)
    ok = truly_aligned(a, b, np.array([0.0, 7.5, 15.0, 55.0, 55.0]),
                       np.array([0.0, 0.0, 7.5, 52.5, 45.0]), HOP)
    assert ok.tolist() == [False, False, True, False, True]


def test_any_pass_of_the_tune_counts():
    pass30 = np.array([0.0, 10.0, 20.0, 30.0])
    a, b = timeline(pass30, 1.0, 120.0), timeline(pass30, 1.0, 120.0)
    ok = truly_aligned(a, b, np.full(5, 7.5), np.array([7.5, 37.5, 67.5, 97.5, 22.5]), HOP)
    assert ok.tolist() == [True, True, True, True, False]   # 22.5 s: 15 s from 7.5 and 37.5


def test_cut_and_repeated_sections():
    bounds = np.array([0.0, 10.0, 20.0, 30.0, 40.0])
    a = timeline(bounds, 1.0, 80.0)
    cut = timeline(bounds, 1.0, 80.0, cut=(0, 1))        # score 15 s only at 45 s (pass 1)
    rep = timeline(bounds, 1.0, 80.0, repeat=(0, 1))     # score 15 s at 15, 25 and 65 s
    t_a = np.full(4, 15.0)
    assert truly_aligned(a, cut, t_a, np.array([45.0, 37.5, 15.0, 22.5]), HOP).tolist() == \
        [True, True, False, False]
    assert truly_aligned(a, rep, t_a, np.array([25.0, 32.5, 40.0, 65.0]), HOP).tolist() == \
        [True, True, False, True]


def test_different_tunes_cannot_be_compared():
    with pytest.raises(ValueError, match="different tunes"):
        truly_aligned(timeline(LONG, 1.0, 60.0, source="x"), timeline(LONG, 1.0, 60.0, source="y"),
                      np.zeros(1), np.zeros(1), HOP)


# --- from manifest rows ---------------------------------------------------------------

def manifest_rows():
    base = dict(work_id="w", source="tune", tempo=1.0, duration_s=120.0, intro_s=0.0,
                outro_s=0.0, cut_pass=-1, cut_section=-1, repeat_pass=-1, repeat_section=-1)
    return pd.DataFrame([
        {**base, "recording_id": "a"},
        {**base, "recording_id": "b", "intro_s": 15.0},
        {**base, "recording_id": "fast", "tempo": 2.0, "duration_s": 60.0},
        {**base, "recording_id": "other", "source": "unknown tune"},
    ])


def test_manifest_timelines():
    tls = manifest_timelines(manifest_rows(), {"tune": LONG})
    assert sorted(tls) == ["a", "b", "fast"]                 # no bounds for "unknown tune"
    assert tls["b"].body_start_s == 15.0 and tls["fast"].tempo == 2.0
    assert truly_aligned(tls["a"], tls["fast"], np.array([30.0]), np.array([15.0]), HOP)[0]
    assert manifest_timelines(manifest_rows().drop(columns="intro_s"), {"tune": LONG}) == {}


def pairs_table(rows):
    """The pair summary of align_catalogue, the columns judge reads."""
    return pd.DataFrame(rows, columns=["work_id", "rec_a", "rec_b", "n_chunks_a", "n_chunks_b",
                                       "matches", "delta", "aligned"]).astype({"delta": "Int64"})


def alignment_table(rows):
    t = pd.DataFrame(rows, columns=["rec_a", "rec_b", "chunk_a", "chunk_b"])
    return t.assign(start_a_s=t.chunk_a * HOP, start_b_s=t.chunk_b * HOP)


def test_judge_hand_built_alignment():
    tls = manifest_timelines(manifest_rows(), {"tune": LONG})
    # a ~ b: Δ = 2, right and best; a ~ fast: Δ = 0, right only near the start (fast is
    # 2x: a's t lands at t / 2; the best offsets are -2, -3, -4, five pairs each, equally
    # close); b ~ fast: no Δ; a ~ other: no truth
    pairs = pairs_table([["w", "a", "b", 15, 15, 3, 2, 3],
                         ["w", "a", "fast", 15, 7, 3, 0, 3],
                         ["w", "b", "fast", 15, 7, 0, None, 0],
                         ["w", "a", "other", 15, 15, 1, 0, 1]])
    alignments = alignment_table([["a", "b", 0, 2], ["a", "b", 3, 5], ["a", "b", 12, 14],
                                  ["a", "fast", 0, 0], ["a", "fast", 3, 3], ["a", "fast", 4, 4],
                                  ["a", "other", 1, 1]])
    verdict, table, summary = judge(alignments, pairs, tls, HOP)
    # a ~ fast: a's 22.5 s is fast's 11.25 s (11.25 s from 22.5), a's 30 s its 15 s
    assert verdict.tolist() == [True, True, True, True, False, False, pd.NA]
    assert list(table.columns) == PAIR_TRUTH_COLUMNS
    assert table["truth_correct"].tolist() == [3, 1, 0, pd.NA]
    assert table["truth_delta_right"].tolist() == [True, True, pd.NA, pd.NA]  # (0,0) is true
    assert table["truth_delta_best"].tolist() == [True, False, pd.NA, pd.NA]
    assert table["truth_best_delta"].tolist()[:3] == [2, -2, -4]
    assert summary["truth_pairs_checked"] == 3 and summary["truth_pairs_with_delta"] == 2
    assert summary["truth_chunk_pairs_checked"] == 6
    assert summary["truth_chunk_pairs_correct"] == 4
    assert summary["truth_within_hop"] == pytest.approx(4 / 6)
    assert summary["truth_delta_right"] == 1.0 and summary["truth_delta_best"] == 0.5
    assert 0 < summary["truth_chance"] < 0.5 and 0 < summary["truth_delta_chance"] < 1


def test_judge_without_truth_gives_nulls():
    pairs = pairs_table([["w", "x", "y", 4, 4, 3, 1, 3]])
    alignments = alignment_table([["x", "y", 0, 1], ["x", "y", 1, 2], ["x", "y", 2, 3]])
    verdict, table, summary = judge(alignments, pairs, {}, HOP)
    assert verdict.isna().all() and table.isna().all().all()
    assert summary["truth_pairs_checked"] == 0
    for key in ("truth_within_hop", "truth_chance", "truth_delta_right", "truth_delta_best",
                "truth_delta_chance"):
        assert summary[key] is None
    empty = judge(alignments.iloc[:0], pairs.iloc[:0], {}, HOP)[2]
    assert empty["truth_within_hop"] is None and empty["truth_chunk_pairs_checked"] == 0


def test_align_work_on_score_position_embeddings_finds_the_true_offset():
    """Chunks embedded by the score position they start at (one-hot per 7.5 s of score;
    intro chunks unique): align_work's Δ and every aligned pair are right."""
    tls = manifest_timelines(manifest_rows(), {"tune": LONG})
    ids = ["a", "b"]
    starts = [grid(15), grid(15)]

    def embed(tl, st, salt):
        x = tl.score_position(st)
        slot = np.where(np.isnan(x), 40 + salt * 20 + np.arange(len(st)),
                        np.round(np.nan_to_num(x) / HOP)).astype(int)
        return np.eye(80)[slot]

    emb = [embed(tls[r], s, k) for k, (r, s) in enumerate(zip(ids, starts))]
    table, summary = align_work("w", ids, emb, starts, threshold=0.9)
    assert summary["delta"].tolist() == [2]
    verdict, pair_truth, numbers = judge(table, summary, tls, HOP)
    assert verdict.all() and len(verdict) == 13          # a's chunks 0..12 ↔ b's 2..14
    assert numbers["truth_within_hop"] == 1.0 and numbers["truth_delta_best"] == 1.0


# --- the stage's view of a manifest ---------------------------------------------------

def test_stage_timelines_need_the_demo_recipe(tmp_path):
    from coverhunter.demo.tune_store import TuneStore
    from coverhunter.pipeline.align import timelines
    rows = manifest_rows()
    (tmp_path / "cache").mkdir()
    manifest = tmp_path / "manifest.csv"
    raw = {"demo": {"sections": 2}}
    assert timelines(rows, manifest, raw) == {}                      # no tune cache
    store_path = TuneStore(tmp_path / "cache", runner=None).path
    notes = [[float(t), 0.5, 60.0, 90.0] for t in range(0, 40, 2)]
    store_path.write_text(json.dumps({"tune": {"title": "t", "length_s": 40.0, "notes": notes},
                                      "unknown tune": {"error": "unreadable"}}))
    text = rows.astype(str)                    # the validated manifest holds text
    tls = timelines(text, manifest, raw)
    assert sorted(tls) == ["a", "b", "fast"]
    np.testing.assert_allclose(tls["a"].score_end[:2], [20.0, 40.0])   # 2 sections of 20 s
    assert tls["b"].body_start_s == 15.0 and tls["fast"].tempo == 2.0
    # a manifest built before the tune extraction changed: its tunes are in an older file
    store_path.rename(tmp_path / "cache" / "tunes-older.json")
    assert sorted(timelines(text, manifest, raw)) == ["a", "b", "fast"]
    assert timelines(rows, manifest, {}) == {}                        # no demo.sections
    assert timelines(rows[["recording_id", "work_id"]], manifest, raw) == {}  # user manifest
