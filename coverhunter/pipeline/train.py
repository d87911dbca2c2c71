"""DVC stages `train_coarse` and `train_fine` [II-D]: `coverhunter train coarse|fine`.

coarse: 15 s chunks with a 7.5 s hop, labelled by work, on the training split; it starts
from the shipped checkpoint (`train.init: pretrained`, all but its classifier) or from
random weights (`scratch`).
fine: the aligned chunk pairs of the align stage, each side extended from its aligned start
to a random 15–45 s (`fine:` in params.yaml); from the coarse weights (`fine.init: coarse`)
or a new model (`scratch`, as the paper). When it descends from the shipped checkpoint, its
final weights are blended with the checkpoint's (`fine.pretrained_share`, weight-space
ensembling), and the model as trained is kept beside them (`as_trained.pt`). With
`fine.enabled: false` it writes `skipped.json` instead of a model.

Resumable: checkpoints go to a scratch folder named by a fingerprint of everything that
shapes the run (parameters, training recordings and their features), so a killed run
resumes on the next `dvc repro`, and a changed parameter starts afresh. Raising only
`max_steps` continues the longest shorter run of the same recipe (the learning-rate
schedule and the batches depend on the step alone, so the result is the longer run's),
which is how a model is trained for as long as held-out quality keeps rising. The stage's output
is the final model only (`artifacts/models/<name>/model.pt`), the loss history
(`reports/train/<name>/loss.csv`) and its plot.

Data-parallel under `torchrun --nproc_per_node N -m stages.train coarse` (or
`coverhunter train coarse --nproc N`): every process trains on its share of each global
batch (coverhunter.distributed); rank 0 alone writes outputs and tracks the run.
"""
from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from coverhunter import distributed
from coverhunter.atomic import replacing, write_atomic
from coverhunter.digest import file_sha1
from coverhunter.features.cqt import CQTFrontEnd
from coverhunter.features.extract import load_features, read_index
from coverhunter.mlops import tracking
from coverhunter.mlops.pretrain import pretrained_checkpoint
from coverhunter.model import CoverHunterNet
from coverhunter.model.checkpoint import interpolate_from, load_checkpoint, resolve_device, save_model, start_from
from coverhunter.params import Params
from coverhunter.pipeline.layout import (
    ALIGN,
    AS_TRAINED,
    FEATURES,
    MODELS,
    PARAMS,
    REPORTS,
    SKIPPED,
    WORK,
    fingerprint,
    load,
    validated_manifest,
    write_json,
)
from coverhunter.reporting.plots import plot_loss
from coverhunter.training.augment import FeatureAugment
from coverhunter.training.augment_audio import AudioAugment
from coverhunter.training.batches import AudioChunks, BatchMaker, OtherWorkAudio
from coverhunter.training.data import ChunkDataset
from coverhunter.training.fine import AlignedChunks, AlignedPairSampler
from coverhunter.training.loop import CHECKPOINT, seed_everything, train
from coverhunter.training.losses import CoverHunterLoss
from coverhunter.training.sampler import PKSampler

log = logging.getLogger(__name__)

SECTIONS = {"coarse": ("features", "model", "loss", "train", "augment"),         # what each
            "fine": ("features", "model", "loss", "train", "augment", "fine")}  # model reads


def pretrained_share(p: Params, name: str) -> float:
    """The share of the pretrained checkpoint in the final weights of model ``name``
    (``fine.pretrained_share``): only for a fine model that descends from the checkpoint
    (``train.init: pretrained``, ``fine.init: coarse``), else 0."""
    descends = p.train.init == "pretrained" and p.fine.init == "coarse"
    return p.fine.pretrained_share if name == "fine" and descends else 0.0


def _training_params(used: dict) -> dict:
    """The params that shape a training run: ``used`` without ``fine.pretrained_share``,
    which is applied after it (changing it re-exports the model without training again)."""
    if "fine" not in used:
        return used
    return {**used, "fine": {k: v for k, v in used["fine"].items() if k != "pretrained_share"}}


def _coarse_data(p: Params, df: pd.DataFrame, works: list[str], feats: list) -> tuple:
    """15 s chunks, 7.5 s hop, every chunk of every training recording [II-D coarse]."""
    labels = df["work_id"].map({w: i for i, w in enumerate(works)}).to_numpy()
    ds = ChunkDataset(feats, labels, p.train.chunk_s, p.train.hop_s, p.features.frame_rate)
    sampler = PKSampler(ds.label, ds.recording, p.train.works_per_batch,
                        p.train.versions_per_work, p.train.seed)
    return ds, sampler, np.bincount(ds.label, minlength=len(works))


def _fine_data(p: Params, alignments: pd.DataFrame, works: list[str], feats: dict) -> tuple:
    """Aligned chunk pairs, each side 15–45 s from its aligned start [II-D fine]."""
    label_of = {w: i for i, w in enumerate(works)}
    ds = AlignedChunks(alignments, feats, label_of, p.features.frame_rate)
    sampler = AlignedPairSampler(ds, p.train.works_per_batch, p.train.versions_per_work,
                                 p.fine.min_s, p.fine.max_s, p.features.frame_rate, p.train.seed)
    return ds, sampler, 2 * np.bincount(ds.label, minlength=len(works))


def batch_maker(p: Params, ds, keys: list, df: pd.DataFrame, labels: list[int],
                longest_s: float) -> BatchMaker:
    """How training batches are built: with ``train.tricks`` on, the audio tricks (speed,
    noise, volume, with the CQT recomputed on the training device) and the CQT ones (pitch
    roll, masks) of ``augment:`` [III-B]; off, the stored chunks as they are. ``keys``
    name the recordings as ``ds.locate`` does, ``df`` (the validated manifest) holds their
    ``audio_file`` and ``measured_duration_s`` in the same order, ``labels`` their work
    classes; ``longest_s`` is the longest training chunk (the other-work noise is cut that
    long, times the top speed). With every audio probability 0 no audio is read."""
    if not p.train.tricks:
        return BatchMaker(ds, p.train.seed)
    a, f = p.augment, p.features
    features = FeatureAugment(a, p.train.pitch_roll_bins)
    if max(a.speed_prob, a.noise_prob, a.volume_prob) == 0:
        return BatchMaker(ds, p.train.seed, features=features)
    chunks = AudioChunks(dict(zip(keys, df["audio_file"])), f.sample_rate, f.hop_length)
    other = OtherWorkAudio(chunks, keys, labels, df["measured_duration_s"].astype(float).tolist(),
                           longest_s * a.speed_rate[1])
    return BatchMaker(ds, p.train.seed, audio=AudioAugment.from_params(a, f.sample_rate, other),
                      chunks=chunks, front=CQTFrontEnd(f), other=other, features=features,
                      device=resolve_device(p.train.device))


def _continue_shorter(work_dir: Path, steps: int) -> None:
    """Seed a new run's folder with the checkpoint of the longest shorter run of its recipe."""
    if (work_dir / CHECKPOINT).exists():
        return
    prefix = work_dir.name.rsplit("-", 1)[0] + "-"          # <name>-<recipe>-, then the length
    shorter = []
    for d in WORK.glob(prefix + "*"):
        n = d.name[len(prefix):]
        if n.isdigit() and int(n) < steps and (d / CHECKPOINT).exists():
            shorter.append((int(n), d))
    shorter.sort()
    if shorter:
        n, source = shorter[-1]
        write_atomic(work_dir / CHECKPOINT, lambda tmp: shutil.copyfile(source / CHECKPOINT, tmp))
        log.info("continuing the %d-step run in %s up to %d steps", n, source, steps)


# long on purpose: coarse and fine share this path; their branches differ only in the data
def run(params_path: str | Path = PARAMS, name: str = "coarse", progress: bool = True) -> dict:
    """Train the coarse or the fine model; returns a summary (or why nothing was trained)."""
    if name not in SECTIONS:
        raise ValueError(f"unknown model {name!r}: choose coarse or fine")
    p, raw = load(params_path)
    used = {s: raw[s] for s in SECTIONS[name]}
    outputs = MODELS / name, REPORTS / "train" / name   # replaced whole, and only on success
    if name == "fine" and not p.fine.enabled:
        skipped = {"skipped": True, "reason": "fine.enabled is false"}
        with replacing(*outputs) as (model_dir, report_dir):
            write_json(model_dir / SKIPPED, skipped)
            write_json(report_dir / SKIPPED, skipped)
        return skipped
    df = validated_manifest()
    df = df[df["split"] == p.data.train_split].sort_values("recording_id")
    index = read_index(FEATURES)
    # the features' own bytes key the run too: new front-end code with the same params is a new run
    digests = index.set_index("recording_id").loc[df["recording_id"], ["audio_sha1", "feature_sha1"]]
    shas = [f"{a}:{f}" for a, f in digests.itertuples(index=False)]
    ids = df["recording_id"].tolist()
    if name == "coarse":
        works = sorted(df["work_id"].unique())
        ds, sampler, counts = _coarse_data(p, df, works, load_features(FEATURES, ids, index))
        steps, extra, keys, longest = p.train.max_steps, [], list(range(len(ids))), p.train.chunk_s
        if p.train.init == "pretrained":   # the starting weights shape the run too
            extra.append(file_sha1(pretrained_checkpoint(p.train.pretrained)))
    else:
        alignments = pd.read_parquet(ALIGN / "alignments.parquet")
        works = sorted(alignments["work_id"].unique())
        feats = dict(zip(ids, load_features(FEATURES, ids, index)))
        ds, sampler, counts = _fine_data(p, alignments, works, feats)
        steps, keys, longest = p.fine.max_steps, ids, p.fine.max_s
        extra = [pd.util.hash_pandas_object(alignments, index=False).sum().item()]
        if p.fine.init == "coarse":   # the starting weights shape the run too
            extra.append(file_sha1(MODELS / "coarse" / "model.pt"))
    recordings = list(zip(df["recording_id"], df["work_id"], shas))
    trained = _training_params(used)
    key = fingerprint(trained, recordings, *extra)
    length = "fine" if name == "fine" else "train"   # the section whose max_steps sets the length
    recipe = fingerprint({**trained, length: {k: v for k, v in trained[length].items() if k != "max_steps"}},
                         recordings, *extra)
    work_dir = WORK / f"{name}-{recipe}-{steps}"
    distributed.init_from_env(resolve_device(p.train.device).type == "cuda")
    if distributed.is_main():
        _continue_shorter(work_dir, steps)
    distributed.barrier()                  # every process sees the seeded checkpoint, or none
    seed_everything(p.train.seed)
    model = CoverHunterNet(p.features.n_bins, p.model, len(works))
    if name == "fine" and p.fine.init == "coarse":
        start_from(model, MODELS / "coarse" / "model.pt")
    if name == "coarse" and p.train.init == "pretrained":
        start_from(model, pretrained_checkpoint(p.train.pretrained))
    loss = CoverHunterLoss(p.loss, counts, p.model.embedding_dim)
    label_of = {w: i for i, w in enumerate(works)}
    make = batch_maker(p, ds, keys, df, [label_of.get(w, -1) for w in df["work_id"]], longest)
    schedule = dataclasses.replace(p.train, max_steps=steps)
    if not distributed.is_main():        # a helper process: trains its share, writes nothing
        result = train(model, loss, ds, sampler, schedule, work_dir, progress=False, make=make)
        return {"rank": distributed.rank(), "steps": result.steps}

    tracking.configure(Path.cwd())
    with tracking.stage_run(f"train_{name}", tracking.pipeline_key(raw), used,
                            tags={"model": name, "work_dir": str(work_dir),
                                  "processes": str(distributed.world_size())}), \
            replacing(*outputs) as (model_dir, report_dir):
        result = train(model, loss, ds, sampler, schedule, work_dir,
                       callback=tracking.step_logger(p.train.log_every), progress=progress,
                       make=make)
        history = pd.DataFrame(result.history)
        history.insert(0, "step", np.arange(1, len(history) + 1))
        csv = report_dir / "loss.csv"
        history.to_csv(csv, index=False)
        png = plot_loss(result.history, report_dir / "loss.png", f"{name} model: training loss")
        state, share = load_checkpoint(result.checkpoint), pretrained_share(p, name)
        if share > 0:                    # the model as trained is kept beside the blend, for its own row
            save_model(state, model_dir / AS_TRAINED, works=works, fingerprint=key)
            state = interpolate_from(state, pretrained_checkpoint(p.train.pretrained), share)
        out = save_model(state, model_dir / "model.pt", works=works, fingerprint=key, pretrained_share=share)
        summary = {"model": str(outputs[0] / out.name), "steps": result.steps, "works": len(works),
                   "recordings": len(df), "items": len(ds), "processes": distributed.world_size(),
                   "final_loss": float(history["total"].tail(20).mean())}
        tracking.log({"train_items": len(ds), "final_loss": summary["final_loss"]}, [csv, png])
    return summary
