"""The `coverhunter` command and its output when not on a terminal."""
import logging
import subprocess
import sys

import yaml
from conftest import ROOT

from coverhunter import progress

COMMANDS = ("demo", "validate", "extract", "train", "align", "evaluate", "report", "score",
            "pretrain", "ablation", "retrain", "pipeline")


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "coverhunter", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_help_lists_every_command_and_works_from_any_folder(tmp_path):
    out = cli("--help", cwd=tmp_path)
    assert out.returncode == 0
    assert all(f"    {c} " in out.stdout for c in COMMANDS), out.stdout
    score = cli("score", "--help", cwd=tmp_path)
    assert score.returncode == 0 and "--manifest" in score.stdout


def test_a_bad_value_stops_with_one_line_naming_the_key(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"]["lr"] = "abc"
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(raw))
    out = cli("--repo", str(tmp_path), "validate", cwd=tmp_path)
    assert out.returncode == 1
    assert "train.lr" in out.stderr and str(bad) in out.stderr
    assert "Traceback" not in out.stderr


def test_a_missing_project_folder_is_named(tmp_path):
    out = cli("--repo", str(tmp_path / "nope"), "report", cwd=tmp_path)
    assert out.returncode == 1 and "nope is not a folder" in out.stderr


def test_progress_off_a_terminal_is_log_lines_without_carriage_returns(caplog, monkeypatch):
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)     # a line per update
    with caplog.at_level(logging.INFO, logger="coverhunter"):
        seen = list(progress.track(range(3), 3, "extract", "rec"))
    assert seen == [0, 1, 2]
    lines = [r.getMessage() for r in caplog.records]
    assert lines[-1].startswith("extract: 3/3 rec in") and len(lines) == 4   # 3 updates + the end
    assert not any("\r" in line for line in lines)


def test_stage_entry_points_are_the_command(tmp_path):
    out = subprocess.run([sys.executable, "-m", "stages.train", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "coarse" in out.stdout and "fine" in out.stdout
