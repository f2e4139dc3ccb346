"""Resumable training checkpoints, written atomically.

A checkpoint is one directory ``<root>/step-00000042/`` holding everything needed to continue a
run so that it ends with exactly (bitwise) the weights of an uninterrupted run:

* ``model/``: the Planner (``model.safetensors`` + ``planner.json`` + tokenizer), via
  :meth:`Planner.save` -- safetensors, never pickle;
* ``optimizer.pt`` / ``scheduler.pt``: their ``state_dict()`` (tensors, numbers, strings only);
* ``rng.pt``: python ``random``, numpy global and torch (CPU, and CUDA when present) RNG states,
  plus the state of any named ``torch.Generator`` the trainer owns (e.g. the Planner's sampling
  generator in RL) -- all stored as tensors/ints;
* ``state.json``: step, epoch, position inside the epoch's data order, config, metric history.

The ``.pt`` files are read with ``torch.load(weights_only=True)``, which refuses arbitrary
objects. Writing goes to a hidden temporary directory that is renamed into place with
:func:`os.replace` once complete, and the ``LATEST`` pointer is replaced the same way, so a run
killed at any instant (even SIGKILL) leaves either the previous or the new checkpoint, never half
of one. The data order itself is not stored: trainers derive it from ``(seed, epoch)``, so the
position is enough to reproduce it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rso_lib.threads import configure_torch_threads

configure_torch_threads()  # before any torch work: a thread count that changes mid-run changes results

LATEST = "LATEST"
_PREFIX = "step-"


def step_dir_name(step: int) -> str:
    return f"{_PREFIX}{int(step):08d}"


# ---------------------------------------------------------------- RNG states
def capture_rng_state(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """All RNG states as tensors/ints (loadable with ``weights_only=True``)."""
    py_version, py_state, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python_version": int(py_version),
        "python_state": torch.tensor(py_state, dtype=torch.int64),  # 625 ints
        "python_gauss": py_gauss,  # None or float
        "numpy_kind": str(np_kind),
        "numpy_keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),  # 624 uint32 as int64
        "numpy_pos": int(np_pos),
        "numpy_has_gauss": int(np_has_gauss),
        "numpy_gauss": float(np_gauss),
        "torch": torch.get_rng_state(),
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator] | None = None) -> None:
    """Inverse of :func:`capture_rng_state`. A generator named at save time must be given back."""
    random.setstate(
        (state["python_version"], tuple(int(x) for x in state["python_state"].tolist()), state["python_gauss"])
    )
    np.random.set_state(
        (
            state["numpy_kind"],
            state["numpy_keys"].numpy().astype(np.uint32),
            state["numpy_pos"],
            state["numpy_has_gauss"],
            state["numpy_gauss"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    saved = state.get("generators", {})
    for name, g in (generators or {}).items():
        if name not in saved:
            raise KeyError(f"checkpoint holds no state for generator {name!r} (has {sorted(saved)})")
        g.set_state(saved[name])


# ---------------------------------------------------------------- save / load
def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _free_bytes(path: Path) -> int:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return -1


def save_checkpoint(
    root: str | os.PathLike,
    step: int,
    *,
    model,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    state: dict[str, Any] | None = None,
    generators: dict[str, torch.Generator] | None = None,
    keep_last: int = 2,
) -> Path:
    """Write checkpoint ``step`` under ``root`` atomically and point ``root/LATEST`` at it.

    ``model`` needs a ``save(dir)`` method (the Planner). ``state`` must be JSON-serialisable
    (step, epoch, position, config, history...). Keeps the ``keep_last`` newest checkpoints
    (0 = keep all). Returns the checkpoint directory."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    tmp = root / f".tmp-{step_dir_name(step)}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        model.save(tmp / "model")
        if optimizer is not None:
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        if scheduler is not None:
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(capture_rng_state(generators), tmp / "rng.pt")
        # state.json last: its presence marks a complete directory (belt and braces with the rename)
        (tmp / "state.json").write_text(
            json.dumps({"step": int(step), **(state or {})}, indent=1, sort_keys=True) + "\n"
        )
    except (OSError, RuntimeError) as e:
        # torch.save on a full disk says only "basic_ios::clear: iostream error": name the
        # directory and the free space, and remove the partial copy so it frees what it took.
        shutil.rmtree(tmp, ignore_errors=True)
        raise OSError(
            f"could not write checkpoint step {step} under {root} ({type(e).__name__}: {e}); "
            f"{_free_bytes(root) / 2**20:.0f} MiB free on that filesystem"
        ) from e
    if final.exists():  # same step written again (e.g. a rerun): swap, never leave a gap
        trash = root / f".old-{final.name}-{os.getpid()}"
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _write_text_atomic(root / LATEST, final.name + "\n")
    if keep_last > 0:
        for old in list_checkpoints(root)[:-keep_last]:
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(
        p for p in root.iterdir() if p.is_dir() and p.name.startswith(_PREFIX) and (p / "state.json").is_file()
    )


class CheckpointError(RuntimeError):
    """No readable checkpoint to resume from (the unreadable ones were named and moved aside)."""


def unreadable_reason(path: Path) -> str | None:
    """Why a checkpoint directory cannot be loaded (a truncated or garbled file), or None if every
    file opens: ``state.json`` parses, the safetensors header and sizes are whole, and each ``.pt``
    zip archive passes its CRC check."""
    import zipfile

    from safetensors import safe_open

    try:
        json.loads((path / "state.json").read_text())
        with safe_open(str(path / "model" / "model.safetensors"), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 -- a safetensors handle, not a dict: it is not iterable
                f.get_slice(name)  # touches each tensor's offsets: a truncated file fails here
        for pt in sorted(path.glob("*.pt")):
            with zipfile.ZipFile(pt) as z:
                bad = z.testzip()
                if bad is not None:
                    return f"{pt.name}: corrupt member {bad}"
    except Exception as e:  # noqa: BLE001 -- any failure to open means "not loadable", reported
        return f"{type(e).__name__}: {e}"
    return None


def latest_checkpoint(root: str | os.PathLike, verify: bool = True) -> Path | None:
    """The checkpoint ``LATEST`` points at, else the newest complete one, else None.

    With ``verify`` (default) an unreadable checkpoint is named on stderr, moved aside
    (``corrupt-<name>``) and the previous one is tried; when checkpoints exist but none is
    readable, :class:`CheckpointError` says so rather than silently starting over."""
    root = Path(root)
    ptr = root / LATEST
    cands = list_checkpoints(root)
    if ptr.is_file():
        first = root / ptr.read_text().strip()
        if first in cands:
            cands = [c for c in cands if c != first] + [first]
    if not verify:
        return cands[-1] if cands else None
    bad = []
    for cand in reversed(cands):
        why = unreadable_reason(cand)
        if why is None:
            return cand
        aside = cand.with_name(f"corrupt-{cand.name}")
        os.replace(cand, aside)
        bad.append(f"{cand} ({why})")
        print(
            f"[rso] checkpoint {cand} is unreadable ({why}); moved aside to {aside.name}, trying the previous one",
            file=sys.stderr,
            flush=True,
        )
    if bad:
        raise CheckpointError(
            f"no readable checkpoint under {root}: "
            + "; ".join(bad)
            + ". Delete the run directory (or set RESUME = False) to start over."
        )
    return None


def load_checkpoint(
    path: str | os.PathLike,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    generators: dict[str, torch.Generator] | None = None,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Load a checkpoint into existing objects (in place) and return its ``state.json`` dict.

    Weights via safetensors; optimizer, scheduler and RNG states via ``torch.load(...,
    weights_only=True)``."""
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / "state.json").is_file():
        raise FileNotFoundError(f"{path} is not a complete checkpoint (no state.json)")
    weights = load_file(str(path / "model" / "model.safetensors"))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    params = dict(model.named_parameters())
    missing = [k for k in missing if k in params]
    if missing or unexpected:
        raise ValueError(
            f"{path}: checkpoint does not match the model: missing {missing[:5]}, unexpected {list(unexpected)[:5]}"
        )
    if optimizer is not None:
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    if scheduler is not None:
        scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    if restore_rng:
        restore_rng_state(torch.load(path / "rng.pt", weights_only=True), generators)
    return json.loads((path / "state.json").read_text())


def weights_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 over a model's state dict (names, dtypes, shapes, bytes): identifies the weights a
    run started from, so that a resume from a checkpoint of another starting point is refused."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def check_resumable(
    saved: dict[str, Any], current: dict[str, Any], path: str | os.PathLike, ignore: tuple[str, ...] = ()
) -> None:
    """Raise if a checkpoint's recorded run identity differs from the current run's (keys in
    ``ignore`` -- logging / checkpoint cadence -- may differ)."""
    diff = sorted(k for k in set(saved) | set(current) if k not in ignore and saved.get(k) != current.get(k))
    if diff:
        details = "; ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {current.get(k)!r}" for k in diff[:4])
        raise ValueError(
            f"{path}: checkpoint is from a different run ({details}); delete the checkpoint directory "
            f"or pass resume=False"
        )


def save_planner_atomic(planner, target: Path) -> None:
    """Write ``planner.save`` into ``target`` so that a reader never sees a half-written directory:
    save to a temporary sibling, then swap it in with ``os.replace``."""
    tmp = target.with_name(f".tmp-{target.name}-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    planner.save(tmp)
    if target.exists():
        old = target.with_name(f".old-{target.name}-{os.getpid()}")
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)
