"""The catalogue index and identification (coverhunter/retrieval/index.py, search.py), on
synthetic chunk vectors with known answers."""
import dataclasses

import faiss
import numpy as np
import pandas as pd
import pytest

from coverhunter.retrieval import index as index_module
from coverhunter.retrieval.index import ChunkIndex, IndexSpec
from coverhunter.retrieval.search import (
    COVER,
    NO_MATCH,
    calibrate,
    check_compatible,
    open_set_rates,
    open_set_scores,
    rank,
)

D, CHUNK, HOP = 16, 45.0, 15.0
META = {"model_sha1": "m", "features_hash": "f", "chunk_s": CHUNK, "hop_s": HOP, "model_version": None}


def spec(kind="flat", codec="float"):
    return IndexSpec(kind, nlist=4, nprobe=4, hnsw_m=16, ef_search=64, auto_flat_below=1000,
                     codec=codec, refine=20)


def unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def catalogue(n_rec=12, n_chunks=5, seed=0):
    """Recordings r00..: random unit chunk vectors, two recordings per work."""
    rng = np.random.default_rng(seed)
    vecs = [unit(rng.normal(size=(n_chunks, D))) for _ in range(n_rec)]
    ids = [f"r{i:02d}" for i in range(n_rec)]
    works = [f"w{i // 2}" for i in range(n_rec)]
    starts = [np.arange(n_chunks) * HOP for _ in range(n_rec)]
    durations = [float((n_chunks - 1) * HOP + CHUNK)] * n_rec
    return vecs, starts, ids, works, durations


def build(vecs, starts, ids, works, durations, kind="flat", codec="float"):
    return ChunkIndex.from_recordings(vecs, starts, CHUNK, ids, works, durations, spec(kind, codec), META)


def test_flat_search_is_exact_inner_product():
    vecs, *rest = catalogue()
    index = build(vecs, *rest)
    q = unit(np.random.default_rng(1).normal(size=(3, D)))
    sims, rows = index.search(q, 7)
    full = q @ np.concatenate(vecs).T
    np.testing.assert_array_equal(rows, np.argsort(-full, axis=1, kind="stable")[:, :7])
    np.testing.assert_allclose(sims, np.sort(full, axis=1)[:, ::-1][:, :7], atol=1e-6)


def test_a_copied_stretch_finds_its_recording_and_where():
    """The query is chunks 2 and 3 of r05: work w2 first, a cover, matched at 00:00-01:00 of
    the query and 00:30-01:30 of r05 (chunks of 45 s every 15 s)."""
    vecs, starts, ids, works, durations = catalogue()
    index = build(vecs, starts, ids, works, durations)
    q = vecs[5][2:4]
    matches = rank(index, q, np.array([0.0, 15.0]), 60.0, k=10, shortlist=5, threshold=0.8, top=3)
    best = matches[0]
    assert (best.work_id, best.recording_id, best.decision) == ("w2", "r05", COVER)
    assert best.score == pytest.approx(1.0, abs=1e-6)
    assert best.query_s == (0.0, 60.0) and best.reference_s == (30.0, 90.0)
    assert all(m.decision == NO_MATCH for m in matches[1:])      # random vectors: far below 0.8
    assert len({m.work_id for m in matches}) == len(matches)     # one line per work


def test_add_and_remove_rank_as_a_rebuild():
    vecs, starts, ids, works, durations = catalogue()
    full = build(vecs, starts, ids, works, durations)
    first = build(vecs[:8], starts[:8], ids[:8], works[:8], durations[:8])
    rest = build(vecs[8:], starts[8:], ids[8:], works[8:], durations[8:])
    grown = first.add(rest)
    shrunk = full.drop(["r03", "r10"])
    rebuilt = build(*[[x for i, x in enumerate(col) if ids[i] not in ("r03", "r10")]
                      for col in (vecs, starts, ids, works, durations)])
    q = unit(np.random.default_rng(2).normal(size=(4, D)))
    for a, b in ((grown, full), (shrunk, rebuilt)):
        got = rank(a, q, np.arange(4) * HOP, 90.0, 20, 12, 0.5, 6)
        want = rank(b, q, np.arange(4) * HOP, 90.0, 20, 12, 0.5, 6)
        assert got == want
    with pytest.raises(KeyError, match="r99"):
        full.drop(["r99"])
    with pytest.raises(ValueError, match="model_sha1"):
        first.add(ChunkIndex(rest.vectors, rest.tags, rest.spec, META | {"model_sha1": "other"}))
    later = ChunkIndex(rest.vectors, rest.tags, rest.spec, META | {"model_version": "7", "built": "now"})
    assert len(first.add(later)) == len(full) and first.add(later).meta == first.meta   # same vectors


def test_saved_index_loads_and_searches_the_same(tmp_path):
    index = build(*catalogue())
    index.meta["threshold"] = 0.7
    index.save(tmp_path / "ix")
    back = ChunkIndex.load(tmp_path / "ix")
    q = unit(np.random.default_rng(3).normal(size=(2, D)))
    assert back.meta["threshold"] == 0.7 and back.tags.equals(index.tags)
    for got, want in zip(back.search(q, 5), index.search(q, 5)):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(FileNotFoundError, match="coverhunter index build"):
        ChunkIndex.load(tmp_path / "none")


@pytest.mark.parametrize("codec", ["float", "sq8"])
@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_kinds_find_near_copies(kind, codec):
    vecs, starts, ids, works, durations = catalogue(n_rec=200, n_chunks=4)
    index = build(vecs, starts, ids, works, durations, kind, codec)
    assert index.kind == kind
    rng = np.random.default_rng(4)
    q = unit(np.concatenate(vecs)[::37] + 0.05 * rng.normal(size=(22, D)))
    _, rows = index.search(q, 1)
    assert np.mean(rows[:, 0] == np.arange(0, 800, 37)) >= 0.9


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_8_bit_codes_return_exact_similarities_of_the_float_vectors(kind, tmp_path, monkeypatch):
    """sq8 holds a quarter of the bytes in faiss, yet every returned similarity is the float
    vectors' own inner product, best first, and the top 10 are exact search's; saved, the
    structure is read back (not rebuilt) and the float vectors are memory-mapped."""
    vecs, starts, ids, works, durations = catalogue(n_rec=300, n_chunks=4)
    small = build(vecs, starts, ids, works, durations, kind, "sq8")
    large = build(vecs, starts, ids, works, durations, kind, "float")
    exact = build(vecs, starts, ids, works, durations)
    saved = len(faiss.serialize_index(large.faiss)) - len(faiss.serialize_index(small.faiss))
    assert saved >= 0.7 * small.vectors.nbytes          # 1 byte per dimension instead of 4
    q = unit(np.concatenate(vecs)[::29] + 0.3 * np.random.default_rng(5).normal(size=(42, D)))
    sims, rows = small.search(q, 10)
    np.testing.assert_allclose(sims, np.einsum("md,mkd->mk", q, small.vectors[rows]), atol=1e-6)
    assert np.all(np.diff(sims, axis=1) <= 0)
    _, want = exact.search(q, 10)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, want)]) >= 0.99
    small.save(tmp_path / "ix")
    assert (tmp_path / "ix" / "faiss.index").is_file()
    monkeypatch.setattr(index_module, "_faiss_index", lambda *a: pytest.fail("rebuilt on load"))
    back = ChunkIndex.load(tmp_path / "ix")
    assert isinstance(back.vectors, np.memmap) or isinstance(back.vectors.base, np.memmap)
    for got, sent in zip(back.search(q, 10), (sims, rows)):
        np.testing.assert_array_equal(got, sent)


def test_an_unknown_codec_is_refused_naming_the_key():
    vecs, starts, ids, works, durations = catalogue(n_rec=60, n_chunks=4)
    with pytest.raises(ValueError, match="index.codec must be float or sq8, got 'pq'"):
        ChunkIndex.from_recordings(vecs, starts, CHUNK, ids, works, durations,
                                   dataclasses.replace(spec("hnsw"), codec="pq"), META)


def test_a_query_set_up_unlike_the_index_is_refused():
    index = build(*catalogue())
    check_compatible(index, META, "ix")
    with pytest.raises(ValueError, match=r"ix was built with another model, index.hop_s"):
        check_compatible(index, META | {"model_sha1": "x", "hop_s": 5.0}, "ix")


def test_calibration_and_open_set_rates_by_hand():
    neg = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert calibrate(neg, 0.1) == 1.0             # one in ten absent works still accepted
    assert calibrate(neg, 0.35) == 0.7            # the 0.65 quantile, rounded up to a score
    rates = open_set_rates(neg, np.array([0.95, 0.6, np.nan]), 0.7)
    assert (rates["FAR"], rates["FRR"], rates["n_positive"]) == (0.4, 0.5, 2)
    # queries a (work x), b (work x), c (work y) against gallery a, b, c, d (work z)
    sim = np.array([[1.0, 0.8, 0.3, 0.5],
                    [0.8, 1.0, 0.2, 0.1],
                    [0.3, 0.2, 1.0, 0.9]])
    neg, pos = open_set_scores(sim, ["x", "x", "y"], ["x", "x", "y", "z"],
                               ["a", "b", "c"], ["a", "b", "c", "d"])
    np.testing.assert_allclose(neg, [0.5, 0.2, 0.9])
    np.testing.assert_allclose(pos, [0.8, 0.8, np.nan])


def test_tags_hold_each_chunks_time_span():
    vecs, starts, ids, works, durations = catalogue(n_rec=2, n_chunks=3)
    durations = [100.0, 50.0]
    index = build(vecs, starts, ids, works, durations)
    t = index.tags.set_index(["recording_id", "start_s"])["end_s"]
    assert t[("r00", 30.0)] == 75.0 and t[("r01", 30.0)] == 50.0      # cut at the recording's end
    assert isinstance(index.tags, pd.DataFrame) and len(index) == 6


def test_flat_index_distances_are_the_closest_chunk_pair_distances():
    from coverhunter.retrieval.metrics import track_distances
    from coverhunter.retrieval.search import index_distances, recall_at
    vecs, *rest = catalogue()
    index = build(vecs, *rest)
    rng = np.random.default_rng(5)
    queries = [unit(rng.normal(size=(n, D))) for n in (1, 3, 2)]
    d, gallery = index_distances(index, queries, len(index))
    assert gallery == rest[1]
    np.testing.assert_allclose(d, track_distances(queries, vecs), atol=1e-6)
    few, _ = index_distances(index, queries, 2)          # only fetched recordings get a distance
    assert ((few == 2.0).sum(axis=1) >= len(gallery) - 2 * 3).all()
    assert recall_at(index, index, np.concatenate(queries)) == 1.0


def test_a_set_ranked_through_a_flat_index_scores_as_every_chunk_pair():
    """`evaluate.search: index` with a flat index gives the brute-force distances exactly;
    HNSW fetching k chunks per query chunk finds the same nearest recording."""
    from coverhunter.retrieval.evaluation import set_distances
    from coverhunter.retrieval.metrics import retrieval_metrics, track_distances
    vecs, _, ids, works, _ = catalogue(n_rec=30, n_chunks=3, seed=6)
    flat, exact = set_distances(vecs, spec("flat")), track_distances(vecs, vecs)
    np.testing.assert_allclose(flat, exact, atol=1e-6)                 # faiss and numpy round alike
    assert retrieval_metrics(flat, works, works, ids, ids) == retrieval_metrics(exact, works, works, ids, ids)
    approx = set_distances(vecs, spec("hnsw"), k=20)
    np.fill_diagonal(approx, np.inf)
    np.fill_diagonal(exact, np.inf)
    assert np.mean(approx.argmin(axis=1) == exact.argmin(axis=1)) >= 0.9   # the nearest other recording


@pytest.mark.parametrize("n_shards", [2, 3])
def test_a_sharded_index_ranks_as_one_index(tmp_path, n_shards):
    """Shards split by recording, saved and loaded apart, searched in parallel and merged:
    the same chunks in the same order, with the same similarities, as one flat index."""
    from coverhunter.retrieval.shards import ShardedIndex, merge_top_k, split_by_recording
    vecs, *rest = catalogue(n_rec=21, n_chunks=4, seed=3)
    whole = build(vecs, *rest)
    shards = split_by_recording(whole, n_shards)
    assert sorted(r for s in shards for r in s.recordings()) == sorted(whole.recordings())
    assert all(set(a.recordings()).isdisjoint(b.recordings()) for a in shards for b in shards if a is not b)
    folders = [s.save(tmp_path / f"shard{i}") for i, s in enumerate(shards)]
    sharded = ShardedIndex.load(folders)
    q = unit(np.random.default_rng(4).normal(size=(6, D)))
    for k in (1, 10, 200):                       # 200 > the 84 vectors: every chunk, ranked
        sims, rows = whole.search(q, k)
        s_sims, s_rows = sharded.search(q, k)
        got = sharded.tags.loc[s_rows.ravel(), ["recording_id", "start_s"]].to_numpy()
        want = whole.tags.loc[rows.ravel(), ["recording_id", "start_s"]].to_numpy()
        np.testing.assert_array_equal(got, want)
        np.testing.assert_allclose(s_sims, sims, atol=1e-6)
    # by hand: two shards' lists with an empty slot and a tie (the lower row first)
    a = (np.array([[0.9, 0.5, 0.1]]), np.array([[4, 7, -1]]))
    b = (np.array([[0.5, 0.3, 0.2]]), np.array([[2, 9, 11]]))
    sims, rows = merge_top_k([a, b], 4)
    np.testing.assert_array_equal(rows, [[4, 2, 7, 9]])
    np.testing.assert_allclose(sims, [[0.9, 0.5, 0.5, 0.3]])


def with_twodftm(index: ChunkIndex, seed=5) -> tuple[ChunkIndex, dict]:
    """The index with a random unit 2DFTM-like vector per recording; also {recording: vector}."""
    rng = np.random.default_rng(seed)
    rows = unit(rng.normal(size=(len(index.recordings()), 8)))
    return (ChunkIndex(index.vectors, index.tags, index.spec, index.meta, twodftm=rows),
            dict(zip(index.recordings(), rows)))


def test_each_recordings_2dftm_vector_follows_it_through_add_drop_save_and_shards(tmp_path):
    """The per-recording vectors of late fusion stay with their recordings: after adding,
    removing, saving and loading, and splitting into shards, each recording has its own."""
    from coverhunter.retrieval.shards import split_by_recording
    vecs, starts, ids, works, durations = catalogue()
    full, own = with_twodftm(build(vecs, starts, ids, works, durations))

    def held(index):
        return {r: np.asarray(index.twodftm[i]) for i, r in enumerate(index.recordings())}

    first = ChunkIndex.from_recordings(vecs[:8], starts[:8], CHUNK, ids[:8], works[:8], durations[:8],
                                       spec(), META, np.stack([own[r] for r in ids[:8]]))
    rest = ChunkIndex.from_recordings(vecs[6:], starts[6:], CHUNK, ids[6:], works[6:], durations[6:],
                                      spec(), META, np.stack([own[r] for r in ids[6:]]))
    for index in (first.add(rest), full.drop(["r03", "r10"]),
                  ChunkIndex.load(full.save(tmp_path / "ix")), *split_by_recording(full, 3)):
        got = held(index)
        assert set(got) == set(index.recordings())
        for r, v in got.items():
            np.testing.assert_array_equal(v, own[r])
    assert set(held(first.add(rest))) == set(ids)                 # r06, r07 replaced, not doubled
    np.testing.assert_array_equal(full.twodftm_of(["r05", "r01"]), np.stack([own["r05"], own["r01"]]))
    with pytest.raises(ValueError, match="2DFTM vectors"):
        first.add(build(vecs[8:], starts[8:], ids[8:], works[8:], durations[8:]))
    with pytest.raises(ValueError, match="3 2DFTM vectors for 12 recordings"):
        ChunkIndex(full.vectors, full.tags, full.spec, META, twodftm=full.twodftm[:3])
    plain = ChunkIndex.load(build(vecs, starts, ids, works, durations).save(tmp_path / "plain"))
    assert plain.twodftm is None


def test_centred_vectors_by_hand_and_what_is_added_later_takes_the_catalogues_mean(params, tmp_path):
    """``index.centre``: chunk vectors (3, 1), (1, 1), (2, -2) have the mean (2, 0) and are
    stored as (1, 1)/√2, (-1, 1)/√2, (0, -1), the mean kept in the meta. A recording added
    later, (4, 0), is centred on that mean, (1, 0), not on its own (which would leave
    nothing). A query is centred as the catalogue was: a copy of b scores 1. Without a
    centre (an index built before, or index.centre off) vectors stay as they are."""
    from coverhunter.pipeline.index import build

    def embedder(vectors):
        return lambda p, rows, model_path, features_dir: (
            vectors, [np.zeros(len(v)) for v in vectors], [CHUNK] * len(vectors))

    rows = pd.DataFrame({"recording_id": ["a", "b"], "work_id": ["wa", "wb"]})
    raw = [np.array([[3.0, 1.0]], np.float32), np.array([[1.0, 1.0], [2.0, -2.0]], np.float32)]
    index = build(params, rows, tmp_path / "m.pt", META, embed=embedder(raw), centre=True)
    r = 2 ** -0.5
    np.testing.assert_allclose(index.vectors, [[r, r], [-r, r], [0.0, -1.0]], atol=1e-6)
    assert index.centre == pytest.approx([2.0, 0.0])
    added = build(params, pd.DataFrame({"recording_id": ["c"], "work_id": ["wc"]}), tmp_path / "m.pt", META,
                  embed=embedder([np.array([[4.0, 0.0]], np.float32)]), centre=index.centre)
    np.testing.assert_allclose(added.vectors, [[1.0, 0.0]], atol=1e-6)
    grown = index.add(added)
    assert grown.centre == index.centre
    index.save(tmp_path / "ix")
    back = ChunkIndex.load(tmp_path / "ix")
    top = rank(back, back.centred(raw[1][:1]), np.zeros(1), CHUNK, 3, 3, None, 1)[0]
    assert (top.recording_id, top.score) == ("b", pytest.approx(1.0))
    plain = build(params, rows, tmp_path / "m.pt", META, embed=embedder(raw))
    assert plain.centre is None and plain.centred(raw[0]) is raw[0]
    np.testing.assert_allclose(plain.vectors, np.concatenate(raw))
