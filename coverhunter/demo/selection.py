"""Choosing the catalogue's tunes: the natural-variant works, then ordinary works and the
intro/outro fillers drawn from the shuffled corpus, each usable and unlike every tune
chosen before it (by title and by melody)."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from coverhunter.demo import seeds
from coverhunter.demo.corpus import NATURAL_VARIANTS, corpus_index
from coverhunter.demo.params import DemoParams
from coverhunter.demo.plan import Work
from coverhunter.demo.similarity import containment, ngrams, normalise_title
from coverhunter.demo.splits import assign_splits
from coverhunter.demo.tune import Tune
from coverhunter.demo.tune_store import TuneStore

__all__ = ["Selection", "Selector", "barred_tunes", "select_works", "take_fillers"]


@dataclass
class Selector:
    """Accepts candidate tunes that are usable and unlike every tune accepted so far."""
    p: DemoParams
    titles: set[str] = field(default_factory=set)
    grams: list[set[tuple[int, ...]]] = field(default_factory=list)  # of each chosen tune

    def usable(self, tune: Tune | None) -> bool:
        """Parsed, with ``min_notes`` notes or more and one pass within ``pass_s``."""
        p = self.p
        return (tune is not None and len(tune.notes) >= p.min_notes
                and p.pass_s[0] <= tune.length_s <= p.pass_s[1])

    def novel(self, tune: Tune, title: str) -> bool:
        """No title match and below ``dedupe_threshold`` against every accepted melody."""
        norm = normalise_title(title)
        if norm and norm in self.titles:
            return False
        grams = ngrams(tune.melody, self.p.dedupe_ngram)
        return all(containment(grams, other) < self.p.dedupe_threshold for other in self.grams)

    def add(self, tune: Tune, title: str) -> None:
        self.grams.append(ngrams(tune.melody, self.p.dedupe_ngram))
        if normalise_title(title):
            self.titles.add(normalise_title(title))


@dataclass
class Selection:
    """The chosen works and their tunes, and where in the candidate stream to go on."""
    works: list[Work]
    tunes: dict[str, Tune]
    selector: Selector
    stream: list[tuple[str, str]]
    pos: int


def _candidate_order(p: DemoParams, index: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Every candidate once: each collection shuffled by the seed, collections interleaved."""
    rng = seeds.rng(p.seed, seeds.ORDER)
    per_coll = []
    for coll in p.collections:
        items = [it for it in index if it[0].split("/", 1)[0] == coll]
        per_coll.append([items[i] for i in rng.permutation(len(items))])
    order = []
    for k in range(max(map(len, per_coll), default=0)):
        order.extend(lst[k] for lst in per_coll if k < len(lst))
    return order


def _take(store: TuneStore, sel: Selector, stream: list[tuple[str, str]], start: int,
          count: int, expand: bool, batch: int, desc: str) -> tuple[list[Tune], int]:
    """Accept ``count`` tunes from ``stream[start:]`` (parsed in batches); returns the
    accepted tunes and the position after the last candidate examined."""
    accepted: list[Tune] = []
    pos = start
    while len(accepted) < count and pos < len(stream):
        want = count - len(accepted)
        chunk = stream[pos:pos + max(batch, want + want // 4)]
        for (_, title), tune in zip(chunk, store.fetch(chunk, expand, desc)):
            pos += 1
            if sel.usable(tune) and sel.novel(tune, title):
                sel.add(tune, title)
                accepted.append(dataclasses.replace(tune, title=title or tune.title))
                if len(accepted) == count:
                    break
    if len(accepted) < count:
        raise ValueError(f"demo: only {len(accepted)} of {count} usable, distinct tunes in "
                         f"collections {', '.join(sel.p.collections)}; lower the count or "
                         "add collections")
    return accepted, pos


def select_works(p: DemoParams, store: TuneStore, batch: int,
                 barred: Sequence[Tune] = ()) -> Selection:
    """Natural-variant works first (their melodies are then barred from the rest), then
    ``n_works`` ordinary works, deduplicated by title and melody. ``batch``: candidates
    parsed at a time. ``barred`` tunes (and any tune like one of them, by title or
    melody) are never chosen, as works or as fillers."""
    sel = Selector(p)
    for tune in barred:
        sel.add(tune, tune.title)
    tunes: dict[str, Tune] = {}
    works: list[Work] = []
    index = corpus_index(p.collections)
    titles = dict(index)
    # bar every natural-variant melody and title, used or not
    all_settings = [(ref, titles.get(ref, "")) for _, refs in NATURAL_VARIANTS for ref in refs]
    loaded = dict(zip([r for r, _ in all_settings],
                      store.fetch(all_settings, True, "demo: reading variant settings")))
    n_var = 0
    for title, refs in NATURAL_VARIANTS:
        ok = [r for r in refs if sel.usable(loaded[r])]
        for r in refs:
            if loaded[r] is not None:
                sel.add(loaded[r], titles.get(r, ""))
        sel.titles.add(normalise_title(title))
        if len(ok) >= 2 and n_var < p.n_variant_works:
            n_var += 1
            works.append(Work(f"v{n_var:02d}", title, p.variants_split, ok))
            tunes.update({r: dataclasses.replace(loaded[r], title=title) for r in ok})
    if n_var < p.n_variant_works:
        raise ValueError(f"demo.n_variant_works = {p.n_variant_works}, but only {n_var} "
                         "natural-variant works are available")

    stream = _candidate_order(p, index)
    chosen, pos = _take(store, sel, stream, 0, p.n_works, True, batch,
                        "demo: choosing works")
    split_of = assign_splits(p.n_works, p.split_fractions, p.seed)
    for i, tune in enumerate(chosen):
        works.append(Work(f"w{i + 1:03d}", tune.title, split_of[i], [tune.ref]))
        tunes[tune.ref] = tune
    return Selection(works, tunes, sel, stream, pos)


def take_fillers(store: TuneStore, chosen: Selection, count: int, batch: int) -> list[Tune]:
    """``count`` more tunes for intros and outros, unlike every tune chosen so far and
    each other (parsed as written: any few seconds of music will do)."""
    fillers, chosen.pos = _take(store, chosen.selector, chosen.stream, chosen.pos, count,
                                False, batch, "demo: choosing intro/outro tunes")
    return fillers


def barred_tunes(reference: DemoParams, splits: Sequence[str], store: TuneStore,
                 batch: int) -> list[Tune]:
    """The tunes of the ``splits`` works of the catalogue ``reference`` would choose (every
    setting of a natural-variant work): what a catalogue with ``exclude_splits`` bars.
    Only the selection is made (nothing is rendered); it reads the same corpus cache."""
    chosen = select_works(reference, store, batch)
    return [chosen.tunes[ref] for w in chosen.works if w.split in splits for ref in w.settings]
