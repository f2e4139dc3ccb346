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


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs from ``/proc/stat`` (None where there is none)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(fields) < 5:
        return None
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return total - idle, total


def busy_cpus(interval: float = 0.5) -> float | None:
    """How many CPUs other processes keep busy right now: ``/proc/stat`` sampled ``interval``
    seconds apart (None where it cannot be read).

    Why not the load average: it is a one-minute mean, so a notebook started right after the
    previous one (the papermill chain) saw that finished kernel as a busy core for a minute and
    took one thread of two on an idle machine (measured: the Actor 1.6x slower)."""
    import time

    a = _cpu_times()
    if a is None:
        return None
    time.sleep(interval)
    b = _cpu_times()
    if b is None or b[1] <= a[1]:
        return None
    return (b[0] - a[0]) / (b[1] - a[1]) * (os.cpu_count() or 1)


def choose_threads() -> dict:
    """``{"threads": n, "cpus": usable CPUs, "busy": CPUs others use now, "load": 1-min load
    average, "source": why}``: the idle usable CPUs, at least 1."""
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
    busy = busy_cpus()
    if busy is None:  # no /proc/stat: the load average is all there is
        busy, source = load, "idle cores (load average)"
    else:
        source = "idle cores"
    idle = int(cpus - busy + 0.5)  # cores nobody else is using right now
    return {
        "threads": max(1, min(cpus, idle)),
        "cpus": cpus,
        "busy": round(busy, 2),
        "load": round(load, 2),
        "source": source,
    }


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
