"""Publishing a benchmark's or an experiment's table: printed, and written as Markdown and JSON.

Layer: cosim.sim (used by the thin entry points in ``scripts/``).
"""

from __future__ import annotations

import json
from pathlib import Path


def publish(out_dir: str | Path, stem: str, text: str, data) -> Path:
    """Print ``text`` and write ``out_dir/stem.md`` (the text) and ``out_dir/stem.json``
    (``data``, JSON-able); returns the folder."""
    out = Path(out_dir)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.md").write_text(text + "\n")
    (out / f"{stem}.json").write_text(json.dumps(data, indent=2, default=_plain))
    return out


def _plain(obj):
    """numpy scalars and arrays as Python numbers and lists; anything else as its text."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)
