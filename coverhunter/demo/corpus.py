"""The music21 corpus as the demo draws on it: the tune index and the natural variants.

:func:`corpus_index` lists every tune of the chosen collections as ``(ref, title)``;
:data:`NATURAL_VARIANTS` names the groups of genuinely different settings of one tune.
The Bach chorales are never used (they are held for an independent evaluation).
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from music21 import corpus as m21_corpus

# the one name of the reserved collection (render.load_corpus_score refuses it too)
from coverhunter.demo.names import RESERVED_COLLECTION

__all__ = ["NATURAL_VARIANTS", "RESERVED_COLLECTION", "clean_title", "corpus_index"]

# Essen files that hold the natural-variant sets and test copies of other Essen songs:
# never drawn as ordinary works.
_EXCLUDED_FILES = frozenset({
    "essenFolksong/variant0.abc", "essenFolksong/test0.abc", "essenFolksong/test1.abc",
    "essenFolksong/testd.abc", "essenFolksong/teste.abc",
})
_SCORE_SUFFIXES = (".abc", ".krn", ".xml", ".mxl", ".musicxml")

# Natural variants: (work title, corpus settings as "collection/file#number").
# Checked by melody: for each group the settings' pitch sequences were compared note by
# note (and by shared interval 4-grams, 0.2-0.9 within a group against a median of 0.03
# between unrelated tunes); identical copies (americanfifeopus N vs N+100, the duplicated
# O'Neill files) were left out. Fisher's Hornpipe: O'Neill's "1st/2nd setting" share the
# first strain's opening and part later; Ryan's is the same tune in F. Green Sleeves:
# Aird's differs in rhythm and ornament. Money Musk: Aird's strathspey in G, Ryan's reel
# and strathspey in A (O'Neill's #1361 "The Money Musk" is a different tune, left out).
# Essen V0002-V0006: the variant sets of the Essen collection (its own "V" numbering).
NATURAL_VARIANTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Ritter und Magd", ("essenFolksong/ballad30.abc#1", "essenFolksong/ballad30.abc#2")),
    ("The Minstrel Boy", ("oneills1850/0201-0300.abc#203", "miscFolk/americanfifeopus.abc#24")),
    ("Fisher's Hornpipe", ("oneills1850/1556-1576.abc#1575", "oneills1850/1556-1576.abc#1576",
                           "ryansMammoth/FishersHornpipe.abc#1")),
    ("Green Sleeves", ("airdsAirs/book1.abc#130", "oneills1850/0981-1000.abc#994",
                       "ryansMammoth/GreenSleevesJig.abc#14")),
    ("Money Musk", ("airdsAirs/book4.abc#681", "ryansMammoth/MoneyMuskReel.abc#6",
                    "ryansMammoth/MoneyMuskStrathspey.abc#1")),
    ("Soldier's Joy", ("oneills1850/1625-1700.abc#1642", "ryansMammoth/SoldiersJoy.abc#1",
                       "airdsAirs/book1.abc#109")),
    ("Jackson's Morning Brush", ("oneills1850/0811-0899.abc#899",
                                 "ryansMammoth/JacksonsMorningBrushJig.abc#1",
                                 "airdsAirs/book1.abc#22")),
    ("Devil's Dream", ("oneills1850/1556-1576.abc#1564", "ryansMammoth/DevilsDreamReel.abc#10")),
    ("Nelson's Victory", ("oneills1850/1701-1780.abc#1712",
                          "ryansMammoth/NelsonsVictoryHornpipe.abc#1")),
    ("Es geht nix ueber die Gemuetlichkeit (Essen V0002)",
     tuple(f"essenFolksong/variant0.abc#{i}" for i in range(4, 12))),
    ("Siehgst an, do kummt er (Essen V0003)",
     tuple(f"essenFolksong/variant0.abc#{i}" for i in range(12, 22))),
    ("Der Buechabecher Boder (Essen V0005)",
     tuple(f"essenFolksong/variant0.abc#{i}" for i in range(22, 26))),
    ("Das Madl von der Gmaa (Essen V0006)",
     tuple(f"essenFolksong/variant0.abc#{i}" for i in range(26, 30))),
)


def corpus_index(collections: Sequence[str]) -> list[tuple[str, str]]:
    """``(ref, title)`` of every tune in the named music21 corpus collections, in file order.

    ``ref`` is ``"collection/file.abc#number"`` for a tune of a multi-tune ABC file and
    ``"collection/file"`` for a single-work file (e.g. ``.krn``). Reads the ABC text
    directly (``X:`` and ``T:`` lines), so it costs a fraction of a second, not a parse.
    """
    root = Path(m21_corpus.__file__).resolve().parent
    out: list[tuple[str, str]] = []
    for coll in collections:
        if coll == RESERVED_COLLECTION:
            raise ValueError("the Bach chorales (corpus 'bach/') are reserved for independent "
                             "evaluation and may not be used for demo data")
        folder = root / coll
        if not folder.is_dir():
            raise ValueError(f"no music21 corpus collection named {coll!r} (in {root})")
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            name = f"{coll}/{path.name}"
            if name in _EXCLUDED_FILES or path.suffix.lower() not in _SCORE_SUFFIXES:
                continue
            if path.suffix.lower() != ".abc":
                out.append((name, path.stem))
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            for m in re.finditer(r"^X:\s*(\d+)(.*?)(?=^X:|\Z)", text, re.M | re.S):
                title = re.search(r"^T:\s*(.*?)\s*$", m.group(2), re.M)
                out.append((f"{name}#{int(m.group(1))}", clean_title(title.group(1))
                            if title else ""))
    return out


_C1_AS_CP437 = {c: bytes([c]).decode("cp437") for c in range(0x80, 0xA0)}


def clean_title(title: str) -> str:
    """A corpus title made readable: the Essen files keep DOS (code page 437) umlauts as
    C1 control characters (U+0084 for 'ä'); those are decoded, other controls dropped."""
    fixed = title.translate(_C1_AS_CP437)
    if not fixed.isprintable():
        fixed = "".join(c for c in fixed if c.isprintable())
    return fixed.strip()
