"""How many CPU threads torch may use: chosen from the CPUs this process may actually run on and
how busy they are, never as if the kit owned the machine.

On a shared 2-core machine two torch threads per process measured 5-20x slower than one while
other jobs ran (OpenMP threads spin against each other), so the default leaves busy cores alone.
An explicit ``RSO_THREADS`` (or ``OMP_NUM_THREADS``) always wins. :func:`configure_torch_threads`
applies the choice once per process; every results file records it (``rso_lib.results``).
"""

from __future__ import annotations

import os

_CHOSEN: dict | None = None


def choose_threads() -> dict:
    """``{"threads": n, "cpus": usable CPUs, "load": 1-min load average, "source": why}``."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    for var in ("RSO_THREADS", "OMP_NUM_THREADS"):
        raw = os.environ.get(var, "").strip()
        if raw:
            try:
                n = int(raw)
            except ValueError:
                raise ValueError(f"{var}={raw!r}: expected a positive integer") from None
            if n < 1:
                raise ValueError(f"{var}={raw!r}: expected a positive integer")
            return {"threads": n, "cpus": cpus, "load": round(load, 2), "source": var}
    idle = int(cpus - load + 0.5)  # cores nobody else is using right now
    return {"threads": max(1, min(cpus, idle)), "cpus": cpus, "load": round(load, 2), "source": "idle cores"}


def configure_torch_threads() -> dict:
    """Apply :func:`choose_threads` to torch once per process (later calls return the first
    choice: changing the OpenMP pool mid-run would only add noise to timings)."""
    global _CHOSEN
    if _CHOSEN is None:
        import torch

        _CHOSEN = choose_threads()
        torch.set_num_threads(_CHOSEN["threads"])
    return dict(_CHOSEN)


def chosen_threads() -> dict | None:
    """What :func:`configure_torch_threads` chose in this process (None before it ran)."""
    return dict(_CHOSEN) if _CHOSEN is not None else None
