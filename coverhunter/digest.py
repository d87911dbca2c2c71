"""Content hashes that key the pipeline's caches and run folders."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def file_sha1(path: str | Path) -> str:
    """sha1 of a file's bytes."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha1").hexdigest()


def json_sha1(obj: Any, length: int = 12) -> str:
    """Short sha1 of ``obj`` as sorted JSON (values JSON cannot hold as their ``str``)."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]
