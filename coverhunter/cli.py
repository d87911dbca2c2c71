"""The coverhunter command: every pipeline step, scoring, pretraining, the ablation and
scheduled retraining, from any folder (--repo names the project folder, --params its
params file).

dvc repro runs the same steps through `python -m stages.NAME`, which calls main() with
the stage's name."""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

log = logging.getLogger("coverhunter")


def _user_errors() -> tuple[type[BaseException], ...]:
    from coverhunter.features.audio import AudioDecodeError
    from coverhunter.features.extract import ExtractionError, FeatureFileError
    from coverhunter.model.checkpoint import CheckpointError
    return (ValueError, FileNotFoundError, KeyError, AudioDecodeError, ExtractionError,
            FeatureFileError, CheckpointError)


def _show(result) -> None:
    print(json.dumps(result, indent=1, default=str) if isinstance(result, dict) else result)


def _demo(a):
    from coverhunter.pipeline.demo import run
    _show(run(a.params))


def _validate(a):
    from coverhunter.pipeline.validate import run
    _show(run(a.params, progress=a.progress))


def _extract(a):
    from coverhunter.pipeline.extract import run
    _show(run(a.params, progress=a.progress))


def _train(a):
    if a.nproc > 1 and "WORLD_SIZE" not in os.environ:   # data-parallel: torchrun runs this command N times
        flags = ["-v"] * a.verbose + ["-q"] * a.quiet
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={a.nproc}", "-m", "coverhunter", "--repo", str(Path.cwd()),
               "--params", str(a.params), *flags, "train", a.model]
        log.info("%s", " ".join(cmd))
        sys.exit(subprocess.call(cmd))
    from coverhunter.pipeline.train import run
    _show(run(a.params, a.model, progress=a.progress))


def _align(a):
    from coverhunter.pipeline.align import run
    _show(run(a.params, progress=a.progress))


def _evaluate(a):
    from coverhunter.pipeline.evaluate import run
    from coverhunter.reporting.tables import metrics_table
    out = run(a.params, promote=not a.no_promote)
    _show(metrics_table(out["metrics"]))
    _show(out.get("registered"))


def _report(a):
    from coverhunter.pipeline.report import summary
    _show(summary())


def _score(a):
    from coverhunter.pipeline.score import run
    from coverhunter.reporting.tables import metrics_table
    out = a.out or Path("reports", "score")
    _show(metrics_table(run(a.manifest, a.model, out, a.params, progress=a.progress)))


def _pretrain(a):
    from coverhunter.pipeline.pretrain import export, setup
    _show(setup(a.params) if a.step == "setup" else export(a.params, score_demo=not a.no_demo)["metrics"])


def _index(a):
    from coverhunter.pipeline import index
    if a.action == "build":
        _show(index.run(a.params))
    elif a.action == "add":
        _show(index.change(a.params, add=a.targets[0] if a.targets else sys.exit("index add MANIFEST")))
    else:
        _show(index.change(a.params, remove=a.targets or sys.exit("index remove RECORDING_ID...")))


def _mmss(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes:02d}:{rest:02d}"


def _searcher(a):
    """The pipeline's final model and its index, or the ones ``--model`` and ``--index`` name."""
    from coverhunter.params import load_params
    from coverhunter.pipeline.index import INDEX, final_model
    from coverhunter.retrieval.search import Searcher
    p = load_params(a.params)
    return Searcher.load(a.index or INDEX, a.model or final_model(p), p)


def _identify(a):
    searcher = _searcher(a)
    results = {shown: [m.as_dict() for m in searcher.identify(q, a.top)] for shown, q in zip(a.shown, a.queries)}
    if a.json:
        print(json.dumps(results, indent=1))
        return
    for query, matches in results.items():
        threshold = "uncalibrated" if searcher.threshold is None else f"threshold {searcher.threshold:.3f}"
        print(f"{query}  ({threshold})")
        print(f"  {'#':>2}  {'work':<16} {'recording':<20} {'score':>6}  {'decision':<9} {'ranked':>6}  "
              "query ↔ reference")
        for n, m in enumerate(matches, 1):
            q, r = m["query_s"], m["reference_s"]
            print(f"  {n:>2}  {m['work_id']:<16} {m['recording_id']:<20} {m['score']:6.3f}  "
                  f"{m['decision']:<9} {m['rank_score']:6.3f}  "
                  f"{_mmss(q[0])}–{_mmss(q[1])} ↔ {_mmss(r[0])}–{_mmss(r[1])}")
        if not any(m["decision"] == "cover" for m in matches):
            print("  no match: no catalogue work reaches the threshold")


def _serve(a):
    from coverhunter.retrieval.service import serve
    searcher = _searcher(a)
    s = dataclasses.replace(searcher.p.serve,
                            **{k: v for k, v in (("host", a.host), ("port", a.port)) if v is not None})
    serve(searcher, s)


def _ablation(a):
    from coverhunter.mlops.ablation import main as ablation
    ablation([a.action, *(["--rows", a.rows] if a.rows else []), *sum((["-S", s] for s in a.S), [])])


def _flow(module: str):
    """Prefect flows live in the project's ``flows/`` folder: run one there, in this interpreter."""
    def go(a):
        if not Path("flows", f"{module}.py").is_file():
            sys.exit(f"{Path.cwd()} has no flows/{module}.py: pass --repo with the project folder")
        sys.exit(subprocess.call([sys.executable, "-m", f"flows.{module}", "--params", str(a.params),
                                  *a.flow_args]))
    return go


def _globals(ap: argparse.ArgumentParser, default=argparse.SUPPRESS) -> None:
    """Options every command takes, before or after its name."""
    ap.add_argument("--repo", type=Path, default=default if default is argparse.SUPPRESS else Path.cwd(),
                    help="the project folder (params.yaml, dvc.yaml, artifacts/); default: here")
    ap.add_argument("--params", type=Path, default=default if default is argparse.SUPPRESS else Path("params.yaml"),
                    help="params file, relative to --repo unless absolute (default: params.yaml)")
    ap.add_argument("-v", "--verbose", "--debug", action="store_true",
                    default=default if default is argparse.SUPPRESS else False,
                    help="debug log lines, and the traceback of an error")
    ap.add_argument("-q", "--quiet", action="store_true", default=default if default is argparse.SUPPRESS else False,
                    help="warnings only")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="coverhunter", description=__doc__.split("\n\n")[0])
    _globals(ap, default=None)
    common = argparse.ArgumentParser(add_help=False)
    _globals(common)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, fn, help, **kw):
        p = sub.add_parser(name, help=help, description=help, parents=[common], **kw)
        p.set_defaults(fn=fn)
        return p

    add("demo", _demo, "build the embedded demo catalogue (data/demo: manifest and audio)")
    add("validate", _validate, "check the manifest and its audio (Great Expectations); stop on bad rows")
    add("extract", _extract, "log-CQT features of every validated recording (incremental)")
    s = add("train", _train, "train the coarse or the fine model [II-D]")
    s.add_argument("model", nargs="?", default="coarse", choices=["coarse", "fine"])
    s.add_argument("--nproc", type=int, default=1,
                   help="data-parallel processes on this machine (torchrun; gloo on CPU, nccl on GPUs)")
    add("align", _align, "align the training versions' chunks with the coarse model [II-D]")
    add("evaluate", _evaluate, "score every model on the test sets; register the final one").add_argument(
        "--no-promote", action="store_true", help="register, but leave the champion alias alone")
    add("report", _report, "print the metrics table and how to open MLflow")
    s = add("score", _score, "score a trained or registered model on any manifest")
    s.add_argument("--manifest", required=True, help="CSV: recording_id, work_id, audio_path, split")
    s.add_argument("--model", default="champion",
                   help="'champion' (default), a models:/ URI, or a checkpoint path")
    s.add_argument("--out", type=Path, help="folder for metrics and reports (default: <repo>/reports/score)")
    s = add("pretrain", _pretrain, "set up the large-catalogue workspace, or export its model")
    s.add_argument("step", choices=["setup", "export"])
    s.add_argument("--no-demo", action="store_true", help="export: do not score the demo sets")
    s = add("index", _index, "the catalogue index: build it (the DVC stage), add a manifest, remove ids")
    s.add_argument("action", choices=["build", "add", "remove"])
    s.add_argument("targets", nargs="*", help="add: a manifest CSV; remove: recording ids")
    s = add("identify", _identify, "which catalogue works is each recording a version of, and where")
    s.add_argument("queries", nargs="+", type=Path, help="audio files (wav, flac, ogg, mp3)")
    s.add_argument("--top", type=int, help="works per query (default: index.top)")
    s.add_argument("--json", action="store_true", help="JSON instead of a table")
    s.add_argument("--index", type=Path, help="index folder (default: artifacts/index)")
    s.add_argument("--model", type=Path, help="model checkpoint (default: the pipeline's final model)")
    s = add("serve", _serve, "identification over HTTP: POST /identify (audio body), GET /health")
    s.add_argument("--host", help="default: serve.host")
    s.add_argument("--port", type=int, help="default: serve.port")
    s.add_argument("--index", type=Path, help="index folder (default: artifacts/index)")
    s.add_argument("--model", type=Path, help="model checkpoint (default: the pipeline's final model)")
    s = add("ablation", _ablation, "Table II: one DVC experiment per row, then the table")
    s.add_argument("action", choices=["run", "report"])
    s.add_argument("--rows", default="", help="comma-separated row names (default: all)")
    s.add_argument("-S", action="append", default=[], help="an extra override for every row")
    for name, help in (("retrain", "retrain when the catalogue or params changed (Prefect flow); "
                        "--serve or --deploy POOL for the schedule"),
                       ("pipeline", "every stage as one Prefect flow run")):
        p = add(name, _flow(name), help)
        p.add_argument("flow_args", nargs=argparse.REMAINDER, help="passed to the flow")
    return ap


def main(argv: list[str] | None = None) -> None:
    a = parser().parse_args(argv)
    level = logging.DEBUG if a.verbose else logging.WARNING if a.quiet else logging.INFO
    # our lines at the chosen level; other libraries' only when they warn
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%Y-%m-%d %H:%M:%S")
    log.setLevel(level)
    a.params = a.params if a.params.is_absolute() else (a.repo / a.params).resolve()
    a.progress = True      # a bar on a terminal, log lines otherwise (coverhunter.progress)
    if getattr(a, "queries", None):        # shown as typed, read from where they are
        a.shown, a.queries = [str(q) for q in a.queries], [q.resolve() for q in a.queries]
    if getattr(a, "action", None) == "add" and getattr(a, "targets", None):
        a.targets = [str(Path(a.targets[0]).resolve())]
    for name in ("manifest", "out", "model", "index"):   # paths the user typed are relative to here
        value = getattr(a, name, None)
        if value and Path(value).exists():
            setattr(a, name, str(Path(value).resolve()))
        elif name == "out" and value:
            setattr(a, name, Path(value).resolve())
    if not a.repo.is_dir():
        sys.exit(f"coverhunter: --repo {a.repo} is not a folder")
    os.chdir(a.repo)
    try:
        a.fn(a)
    except _user_errors() as err:   # bad params, data or paths: the message names them and the fix
        log.debug("traceback", exc_info=True)
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        sys.exit(f"coverhunter {a.command}: {message}")


if __name__ == "__main__":
    main()
