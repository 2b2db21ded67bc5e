"""The demo's checkpoints: which ones the chooser offers, and what each was trained on."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from app.errors import DemoError

DEFAULT_CHECKPOINT_NAME = "shapes-tiny (shipped)"
# Category sets of the synthetic data set. A model trained on them knows only shapes and stripe
# bands, so on a photo it still answers "circle" or "stripes-top" — with no sign that it is guessing.
SYNTHETIC_CATEGORY_SETS = ("shapes", "shapes-hard")
COCO_CHECKPOINT_HINT = "cfnet demo --checkpoint-dir DIR"


def discover_checkpoints(
    checkpoint: str | Path | None = "default", checkpoint_dir: str | Path | None = None
) -> dict[str, str]:
    """The chooser's entries: ``{display name: path or "default"}``.

    ``checkpoint`` (``"default"`` = the shipped shapes-tiny model, or a path) comes first; every
    ``*.pt`` in ``checkpoint_dir`` follows, named by file name.
    """
    found: dict[str, str] = {}
    if checkpoint is not None:
        if str(checkpoint) == "default":
            found[DEFAULT_CHECKPOINT_NAME] = "default"
        else:
            found[Path(checkpoint).name] = str(checkpoint)
    if checkpoint_dir is not None:
        folder = Path(checkpoint_dir)
        if not folder.is_dir():
            raise DemoError(f"--checkpoint-dir {folder}: not a folder.")
        for path in sorted(folder.glob("*.pt")):
            name = path.name
            if name in found and found[name] != str(path):
                name = str(path)
            found.setdefault(name, str(path))
    return found


class TrainingData(NamedTuple):
    """What a checkpoint was trained on, for the note beside the chooser."""

    categories: str  # the category spec of its config ("shapes", "coco", a JSON path, …)
    synthetic: bool  # one of SYNTHETIC_CATEGORY_SETS: the model cannot describe real photos
    markdown: str


def checkpoint_card(checkpoint: str) -> dict:
    """The card ``cfnet export`` writes beside a checkpoint (``X.pt`` → ``X.json``), or ``{}``."""
    import json

    from cfnet.checkpoint import DEFAULT_CHECKPOINT

    path = DEFAULT_CHECKPOINT if checkpoint == "default" else Path(checkpoint)
    card = path.with_suffix(".json")
    try:
        data = json.loads(card.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
