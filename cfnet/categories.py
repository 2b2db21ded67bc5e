"""Category bookkeeping: the one place that maps dataset category ids to contiguous ids.

Convention used everywhere in the project (model, losses, data, evaluation, demo):

* **Contiguous ids** put the *things* first, then the *stuff*, each group sorted by dataset id.
  With ``T`` thing and ``S`` stuff categories, things are ``0 .. T-1`` and stuff ``T .. T+S-1``.
* The semantic branch predicts logits over all ``T + S`` contiguous ids (``sem_seg`` targets use
  them, ``255`` = ignore: void and crowd pixels).
* The instance branch predicts the ``T`` thing classes only; a thing's instance label equals its
  contiguous id.
* Everything that leaves the model (``segments_info``, COCO-format predictions) uses the
  dataset's own ``category_id``.

Records are COCO panoptic category dicts: ``{"id", "name", "isthing", "color"[, "supercategory"]}``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

IGNORE_INDEX = 255
_SHIPPED = Path(__file__).parent / "presets" / "categories"


def shipped_category_sets() -> list[str]:
    """Names of the category sets shipped with the package (``coco``, ``shapes``, ...)."""
    return sorted(p.stem for p in _SHIPPED.glob("*.json"))


def load_category_records(spec: str | Path | Sequence[dict]) -> list[dict]:
    """Category records from a shipped set name, a JSON file, or a list of dicts.

    A JSON file may hold a bare list of records or a COCO panoptic JSON with a ``categories`` key.
    """
    if not isinstance(spec, (str, Path)):
        return [dict(r) for r in spec]
    path = _SHIPPED / f"{spec}.json" if str(spec) in shipped_category_sets() else Path(spec)
    if not path.is_file():
        raise FileNotFoundError(
            f"category set {str(spec)!r}: not a shipped set ({', '.join(shipped_category_sets())}) "
            f"and no such file"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    records = data["categories"] if isinstance(data, dict) else data
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a list of category records or a 'categories' key")
    return records


class Categories:
    """Contiguous <-> dataset id mapping for one category set (see the module docstring)."""

    def __init__(self, records: Sequence[dict]):
        seen: set[int] = set()
        for i, r in enumerate(records):
            for key in ("id", "name", "isthing"):
                if key not in r:
                    raise ValueError(f"category record #{i} ({r!r}) has no {key!r} field")
            if int(r["id"]) in seen:
                raise ValueError(f"category id {r['id']} appears twice")
            seen.add(int(r["id"]))
        recs = [dict(r, id=int(r["id"]), isthing=int(bool(r["isthing"]))) for r in records]
        self.things = sorted((r for r in recs if r["isthing"]), key=lambda r: r["id"])
        self.stuff = sorted((r for r in recs if not r["isthing"]), key=lambda r: r["id"])
        self.records = self.things + self.stuff
        self._to_contiguous = {r["id"]: i for i, r in enumerate(self.records)}

    @classmethod
    def from_spec(cls, spec: str | Path | Sequence[dict]) -> Categories:
        return cls(load_category_records(spec))

    @property
    def num_things(self) -> int:
        return len(self.things)

    @property
    def num_stuff(self) -> int:
        return len(self.stuff)

    @property
    def num_classes(self) -> int:
        return len(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def __contains__(self, category_id: int) -> bool:
        return int(category_id) in self._to_contiguous

    def contiguous(self, category_id: int) -> int:
        """Contiguous id of a dataset category id; a clear error for an unknown id."""
        try:
            return self._to_contiguous[int(category_id)]
        except KeyError:
            raise KeyError(f"unknown category id {category_id}") from None

    def category_id(self, contiguous: int) -> int:
        return self.records[int(contiguous)]["id"]

    def is_thing(self, contiguous: int) -> bool:
        return int(contiguous) < self.num_things

    def name(self, contiguous: int) -> str:
        return self.records[int(contiguous)]["name"]

    def color(self, contiguous: int) -> tuple[int, int, int]:
        c = self.records[int(contiguous)].get("color")
        if c is None:  # deterministic fallback colour for sets without one
            i = int(contiguous) + 1
            return ((i * 67) % 256, (i * 139) % 256, (i * 211) % 256)
        return tuple(int(v) for v in c)  # type: ignore[return-value]

    def to_json(self) -> list[dict]:
        return [dict(r) for r in self.records]
