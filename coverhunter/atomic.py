"""Writing outputs so that a failed or killed run never leaves a half-written one: a file
is written beside its target and renamed over it; a folder is filled beside its target
and swapped in whole."""
from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path


def write_atomic(path: str | Path, write: Callable[[Path], object] | str) -> Path:
    """``write(tmp)`` (or the text ``write``) to a temporary name beside ``path``, then
    rename it over ``path`` (the temporary name keeps the suffix, for writers that read it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp{path.suffix}")
    if isinstance(write, str):
        tmp.write_text(write)
    else:
        write(tmp)
    os.replace(tmp, path)
    return path


@contextlib.contextmanager
def replacing(*folders: str | Path) -> Iterator[list[Path]]:
    """Fresh, empty stand-ins for ``folders`` (``<name>.new`` beside each): when the block
    succeeds they replace the folders, and when it fails or is killed the folders keep
    what they held (a failed run never costs the previous model, index or report)."""
    folders = [Path(f) for f in folders]
    staged = [f.with_name(f.name + ".new") for f in folders]
    for folder in staged:
        shutil.rmtree(folder, ignore_errors=True)       # a killed run's leftovers
        folder.mkdir(parents=True)
    try:
        yield staged
    except BaseException:
        for folder in staged:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    for new, folder in zip(staged, folders):
        old = folder.with_name(folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            os.replace(folder, old)
        os.replace(new, folder)
        shutil.rmtree(old, ignore_errors=True)
