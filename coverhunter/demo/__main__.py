"""``python -m coverhunter.demo [--params FILE] [--size full|tiny|large] [--out DIR]``: build
the demo catalogue from ``params.yaml``."""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import yaml

import coverhunter.demo
from coverhunter.demo.catalogue import build_catalogue
from coverhunter.demo.params import PRESETS, demo_params, reference_params


def main(argv: Sequence[str] | None = None) -> None:
    """Build the catalogue from ``params.yaml`` and print its size and splits."""
    ap = argparse.ArgumentParser(prog="python -m coverhunter.demo",
                                 description=coverhunter.demo.__doc__.split("\n", 1)[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--size", choices=["full", *PRESETS], default=None,
                    help="override demo.size")
    ap.add_argument("--out", default=None, help="override demo.out_dir")
    args = ap.parse_args(argv)
    raw = yaml.safe_load(Path(args.params).read_text())
    p = demo_params(raw, args.size)
    df = build_catalogue(p, int(raw["features"]["sample_rate"]), args.out or p.out_dir,
                         reference_params(raw))
    print(f"{len(df)} versions of {df.work_id.nunique()} works, "
          f"{df.duration_s.sum() / 3600:.2f} h; rendered {df.attrs['rendered']}, "
          f"reused {df.attrs['reused']}")
    print(df.groupby("split").work_id.nunique().to_string())


if __name__ == "__main__":
    main()
