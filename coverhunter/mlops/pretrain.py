"""Pretraining on the large catalogue, and the shipped checkpoint's model card.

The paper trains on SHS100K (about 8,000 works); the demo's 56 training works are far too
few to learn what makes two recordings one work. ``make pretrain`` therefore runs the
very same pipeline on the builder's ``large`` catalogue in a workspace folder of its own:
its ``params.yaml`` is the project's with ``pretrain.overrides`` applied (dotted keys of
any depth), its ``dvc.yaml`` a copy of the project's, and its code links to the project's,
so each has one source. The final model is then exported with a model card (data,
parameters, steps, wall time, held-out metrics beside the baselines, the commit).
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from coverhunter.atomic import write_atomic

LINKED = ("coverhunter", "stages", "flows")   # linked into the workspace
COPIED = ("dvc.yaml",)   # copied (DVC resolves a linked dvc.yaml to the project's own pipeline)


def apply_overrides(raw: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``raw`` with each dotted key of ``overrides`` set; every key must
    already exist (a typo is an error naming it, never a new silent key)."""
    out = copy.deepcopy(dict(raw))
    for dotted, value in overrides.items():
        node, parts = out, dotted.split(".")
        for depth, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                raise ValueError(f"pretrain.overrides: '{dotted}' names no parameter "
                                 f"('{'.'.join(parts[:depth + 1])}' is not in params.yaml)")
            if depth == len(parts) - 1:
                node[part] = copy.deepcopy(value)
            else:
                node = node[part]
    return out


def pretrained_checkpoint(folder: str | Path) -> Path:
    """``<folder>/model.pt`` of ``train.pretrained``; a clear error when it is absent."""
    path = Path(folder) / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(f"train.init is 'pretrained' but {path} does not exist: run "
                                "`make pretrain`, or train from scratch with -S train.init=scratch")
    return path


def init_dvc(ws: Path) -> None:
    """Make ``ws`` a DVC project of its own (no git: it lives in the repository's ignored files)."""
    if not (ws / ".dvc").exists():
        ws.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=ws, check=True)
        subprocess.run(["dvc", "config", "core.analytics", "false"], cwd=ws, check=True)


def prepare_workspace(root: Path, raw: Mapping[str, Any]) -> Path:
    """Create (or refresh) the workspace ``root / pretrain.workspace``: its params.yaml
    (the project's with ``pretrain.overrides``) and dvc.yaml (a copy), each rewritten only
    when it changes, so DVC sees no change otherwise, and links to the project's code."""
    settings = raw["pretrain"]
    ws = root / settings["workspace"]
    ws.mkdir(parents=True, exist_ok=True)
    params = apply_overrides(raw, settings["overrides"])   # every section: the one config needs them all
    text = ("# Written by `make pretrain` from the project's params.yaml and its pretrain.overrides;\n"
            "# edit those, not this file.\n" + yaml.safe_dump(params, sort_keys=False))
    files = {"params.yaml": text} | {name: (root / name).read_text() for name in COPIED}
    for name, content in files.items():
        target = ws / name
        if target.is_symlink():
            target.unlink()
        if not target.exists() or target.read_text() != content:   # unchanged: DVC sees no change
            write_atomic(target, content)
    # the workspace trains from scratch: its train.pretrained (a DVC dependency) is an empty
    # folder of its own, so exporting a new checkpoint does not make the workspace stale
    (ws / params["train"]["pretrained"]).mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        link, source = ws / name, root / name
        if not source.exists():
            continue
        if link.is_symlink() and link.resolve() == source.resolve():
            continue
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.exists():
            raise FileExistsError(f"{link} exists and is not a link to {source}; remove it")
        link.symlink_to(os.path.relpath(source, ws))
    return ws


def model_card(card: Mapping[str, Any]) -> str:
    """The Markdown model card of an exported checkpoint (``card`` as in card.json)."""
    rows = []
    for model, sets in card["metrics"].items():
        for name, m in sets.items():
            rows.append(f"| {card['metrics_source'].get(model, 'pretraining workspace')} | {model} | {name} | "
                        f"{m['mAP']:.3f} | {m['HR1']:.3f} | {m['MR1']:.2f} | {m['n_queries']} |")
    data = card["data"]
    lines = [
        f"# Pretrained CoverHunter checkpoint: {card['name']}", "",
        f"Commit `{card['commit']}`, exported {card['exported']}. Reproduce with `make pretrain`.", "",
        "## Data", "",
        f"The `large` catalogue of the demo builder: {data['works']} works, {data['recordings']} "
        f"recordings, {data['hours']:.1f} h of audio (splits {data['works_per_split']}); "
        f"none of the demo's {', '.join(data['excluded_splits'])} tunes, and no Bach chorale.", "",
        "## Training", "",
        f"{card['steps']} steps in {card['wall_s'] / 60:.1f} min on {card['device']}; "
        f"final loss {card['final_loss']:.3f}.", "",
        "```yaml", yaml.safe_dump({k: card["params"][k] for k in ("model", "loss", "train", "augment")},
                                  sort_keys=False).rstrip(), "```", "",
        "## Metrics (leave-one-out within each set)", "",
        "| where | row | set | mAP | HR1 | MR1 | queries |", "|---|---|---|---|---|---|---|", *rows, "",
    ]
    return "\n".join(lines)


def write_card(dest: Path, card: Mapping[str, Any]) -> None:
    write_atomic(dest / "card.json", json.dumps(card, indent=2, sort_keys=True) + "\n")
    write_atomic(dest / "MODEL_CARD.md", model_card(card))
