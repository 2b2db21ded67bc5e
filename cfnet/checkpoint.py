"""CFNet checkpoints: one self-describing file per training state.

A checkpoint is a ``torch.save``-d dict readable with ``torch.load(..., weights_only=True)`` (tensors
and plain containers only — no pickled classes, so loading a file cannot run code)::

    format      "cfnet-checkpoint"          tells a CFNet file from any other .pt file
    version     1                            bumped when the layout changes
    config      Config.to_dict()             the resolved config that builds the architecture
    categories  [{id, name, isthing, color}] the category records the model was trained with
    model       state_dict (DDP unwrapped)
    optimizer / scheduler / scaler           state dicts, or None (``model_final.pt`` has none)
    iteration   completed training iterations
    rng         torch CPU/CUDA, numpy and python ``random`` states as tensors / ints
    extra       free-form dict (the trainer keeps its sampler position and timings there)

Writes are atomic: the file is written to a temporary name in the same folder, fsync-ed and then
``os.replace``-d over the target, so a crash mid-write never leaves a truncated ``last.pt``.

``load_checkpoint`` rebuilds the model from the stored config and checks the stored weights against
that architecture key by key before loading, so an edited file or one from other code fails with the
missing / unexpected keys and shape mismatches listed, naming the file.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cfnet.config import Config, ConfigError, validate

FORMAT = "cfnet-checkpoint"
VERSION = 1
DEFAULT_CHECKPOINT = Path(__file__).parent / "weights" / "shapes-tiny.pt"
_REQUIRED = ("config", "categories", "model")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, not a CFNet checkpoint, or does not fit its config."""


# ----------------------------------------------------------------------------------------------
# RNG states as weights_only-safe values


def get_rng_state() -> dict[str, Any]:
    """The global RNG states (torch CPU/CUDA, numpy, python) as tensors and plain values."""
    py_version, py_internal, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        # MT19937's 624 words + position, all < 2**32: an int64 tensor holds them exactly.
        "python": {
            "version": int(py_version),
            "internal": torch.tensor(py_internal, dtype=torch.int64),
            "gauss_next": py_gauss,
        },
    }
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned (CUDA states only where the devices exist)."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss_next"]))


# ----------------------------------------------------------------------------------------------
# saving


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The bare model inside DistributedDataParallel / DataParallel wrappers."""
    while isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
        model = model.module
    return model


def save_checkpoint(
    path: str | Path,
    *,
    model: torch.nn.Module,
    cfg: Config,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: Any = None,
    iteration: int = 0,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (temp file in the same folder, fsync, ``os.replace``).

    Categories come from ``model.categories`` (the set the model was built with).
    """
    path = Path(path)
    bare = unwrap_model(model)
    categories = getattr(bare, "categories", None)
    records = categories.to_json() if categories is not None else []
    state = {
        "format": FORMAT,
        "version": VERSION,
        "config": cfg.to_dict(),
        "categories": records,
        # clone-free: torch.save copies the storages; detach drops autograd history.
        "model": {k: v.detach() for k, v in bare.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "iteration": int(iteration),
        "rng": get_rng_state(),
        "extra": dict(extra or {}),
    }
    return atomic_save(state, path)


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temp file in the same folder, fsync, then ``os.replace``: never a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates the file 0600; give the checkpoint the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        cause = _os_error_in_chain(e)
        if cause is None:
            raise
        # torch's zip writer answers a failed write (disk full, quota) with a second error of its
        # own ("unexpected pos"); the OSError underneath is the one that says what happened.
        reason = cause.strerror or str(cause) or type(cause).__name__
        raise OSError(
            f"cannot write {path}: {reason} (the previous {path.name}, if any, is unchanged)"
        ) from None
    _fsync_dir(path.parent)
    return path


def _os_error_in_chain(e: BaseException) -> OSError | None:
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete the ``.NAME.pt.*.tmp`` files that :func:`atomic_save` leaves when a write is killed."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.glob(".*.pt.*.tmp"):
        try:
            p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every platform/filesystem, hence best effort.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------------------------
# reading


def resolve_checkpoint_path(path: str | Path) -> Path:
    """``"default"`` -> the shipped ``cfnet/weights/shapes-tiny.pt``; otherwise the path itself."""
    if str(path) == "default":
        if not DEFAULT_CHECKPOINT.is_file():
            raise CheckpointError(
                f"the default checkpoint {DEFAULT_CHECKPOINT} is not there yet: train one with "
                "`cfnet train --preset shapes-tiny ...` and pass its path, or install a release that ships it"
            )
        return DEFAULT_CHECKPOINT
    return Path(path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict, validated (format tag, version, required keys); never unpickles code."""
    path = resolve_checkpoint_path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path}: is a folder, expected a .pt file")
    try:
        with warnings.catch_warnings():  # e.g. "pickle protocol 4" on a plain pickle: the error says more
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message suggests loading with weights_only=False; never do that, never repeat it.
        text = str(e)
        m = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL)\s+(\S+)", text)
        if m or re.search(r"\bglobal\b|\breduce\b|\bbuild\b", _unpickler_reason(text), re.IGNORECASE):
            what = f" ({m.group(1)})" if m else f" ({_unpickler_reason(text)})"
            raise CheckpointError(
                f"checkpoint {path}: refused for safety — not a CFNet checkpoint: it holds code or "
                f"objects that are not plain weights{what}, and loading it could run that code"
            ) from None
        raise CheckpointError(
            f"checkpoint {path}: cannot be read — not a torch checkpoint file, or one holding content "
            f"the safe loader refuses ({_unpickler_reason(text)})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(
            f"checkpoint {path}: cannot be read — the file is corrupted or truncated, or not a torch file "
            f"({_first_line(e)})"
        ) from e
    except Exception as e:  # noqa: BLE001 - torch.load raises a zoo of types on garbage input
        raise CheckpointError(
            f"checkpoint {path}: cannot be read ({type(e).__name__}: {_first_line(e)})"
        ) from e
    if not isinstance(data, dict):
        raise CheckpointError(
            f"checkpoint {path}: not a CFNet checkpoint (holds a {type(data).__name__}, expected a dict "
            f"with format {FORMAT!r})"
        )
    fmt = data.get("format")
    if fmt != FORMAT:
        keys = ", ".join(map(str, list(data)[:6])) + (", ..." if len(data) > 6 else "")
        looks_like = (
            " — it looks like a bare state_dict; CFNet checkpoints also carry the config"
            if data and all(isinstance(v, torch.Tensor) for v in data.values())
            else ""
        )
        raise CheckpointError(
            f"checkpoint {path}: not a CFNet checkpoint (format tag {fmt!r}, expected {FORMAT!r}; "
            f"top-level keys: {keys}){looks_like}"
        )
    version = data.get("version")
    if not isinstance(version, int) or version < 1 or version > VERSION:
        raise CheckpointError(
            f"checkpoint {path}: format version {version!r} is not supported by this cfnet "
            f"(supports 1..{VERSION}); upgrade cfnet to read it"
        )
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise CheckpointError(f"checkpoint {path}: incomplete, missing {', '.join(missing)}")
    weights = data["model"]
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(f"checkpoint {path}: 'model' is not a state_dict of tensors")
    if not isinstance(data["config"], dict):
        raise CheckpointError(f"checkpoint {path}: 'config' is not a mapping")
    return data


_TORCH_HINTS = (
    "weights_only",
    "weights only load failed",
    "trusted source",
    "safe_globals",
    "file an issue",
    "check the documentation",
    "will likely succeed",
)


def _unpickler_reason(text: str) -> str:
    """The unpickler's own reason in torch's weights-only error, without torch's advice."""
    m = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n|$)", text)
    if m:
        return m.group(1)[:300]
    for line in text.splitlines():
        line = line.strip()
        if line and not any(h in line.lower() for h in _TORCH_HINTS):
            return line[:300]
    return "unsupported pickle content"


def _first_line(e: BaseException) -> str:
    # (skipping torch's advice to load with weights_only=False, should a message carry it)
    text = [ln for ln in str(e).strip().splitlines() if not any(h in ln.lower() for h in _TORCH_HINTS)]
    return text[0][:300] if text and text[0].strip() else type(e).__name__


def config_from_checkpoint(data: dict[str, Any], path: str | Path = "<checkpoint>") -> Config:
    try:
        return validate(Config.from_dict(data["config"]))
    except ConfigError as e:
        raise CheckpointError(f"checkpoint {path}: its config is invalid for this cfnet ({e})") from e


def check_state_dict(
    expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], path: str | Path
) -> None:
    """Raise a CheckpointError summarising missing / unexpected keys and shape mismatches."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(found[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in found and tuple(found[k].shape) != tuple(v.shape)
    ]
    if not (missing or unexpected or shapes):
        return
    parts = []
    groups = (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes))
    for label, items in groups:
        if items:
            shown = "; ".join(items[:5]) + (f"; ... ({len(items) - 5} more)" if len(items) > 5 else "")
            parts.append(f"{len(items)} {label} ({shown})")
    raise CheckpointError(
        f"checkpoint {path}: its weights do not match the architecture its config builds — "
        + ", ".join(parts)
        + ". The file was edited, or written by other code or another cfnet version."
    )


def check_finite_weights(weights: dict[str, torch.Tensor], path: str | Path) -> None:
    """Raise a CheckpointError naming the first floating-point tensor with NaN or infinite values."""
    for name, t in weights.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            nan, inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
            raise CheckpointError(
                f"checkpoint {path}: its weights are not finite — tensor {name!r} holds {nan} NaN and "
                f"{inf} infinite values (the first such tensor); the training diverged or the file was "
                "damaged, and such a model predicts nothing"
            )


def build_model_from_checkpoint(data: dict[str, Any], path: str | Path = "<checkpoint>"):
    """Build the architecture described by a validated checkpoint dict (weights not loaded yet)."""
    from cfnet.model import build_model

    cfg = config_from_checkpoint(data, path)
    records = data.get("categories") or None
    try:
        model = build_model(cfg, categories=records) if records else build_model(cfg)
    except (ConfigError, ValueError, KeyError, FileNotFoundError) as e:
        raise CheckpointError(f"checkpoint {path}: cannot build the model its config describes ({e})") from e
    return model, cfg


def load_checkpoint(path: str | Path = "default", device: str | torch.device = "cpu"):
    """``(model, cfg, meta)``: the model (eval mode, on ``device``), its Config, and everything else.

    ``path="default"`` is the shipped ``cfnet/weights/shapes-tiny.pt``. ``meta`` holds ``iteration``,
    ``categories``, ``optimizer``/``scheduler``/``scaler`` states, ``rng``, ``extra``, ``path``.
    """
    resolved = resolve_checkpoint_path(path)
    data = read_checkpoint(resolved)
    model, cfg = build_model_from_checkpoint(data, resolved)
    check_state_dict(model.state_dict(), data["model"], resolved)
    check_finite_weights(data["model"], resolved)
    try:
        model.load_state_dict(data["model"], strict=True)
    except RuntimeError as e:  # dtype trouble etc. that the key/shape check cannot see
        raise CheckpointError(f"checkpoint {resolved}: weights do not load ({_first_line(e)})") from e
    model.to(device).eval()
    meta = {k: v for k, v in data.items() if k not in ("model", "config")}
    meta["path"] = str(resolved)
    return model, cfg, meta
