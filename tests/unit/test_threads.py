"""Thread counts that fit the machine (issue: two threads per process on a busy 2-core machine ran
5-20x slower than one)."""

import os

import pytest

from rso_lib import threads


def test_explicit_setting_wins(monkeypatch):
    monkeypatch.setenv("RSO_THREADS", "3")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.choose_threads()["threads"] == 3 and threads.choose_threads()["source"] == "RSO_THREADS"
    monkeypatch.delenv("RSO_THREADS")
    assert threads.choose_threads()["threads"] == 1
    monkeypatch.setenv("RSO_THREADS", "zero")
    with pytest.raises(ValueError, match="RSO_THREADS='zero'"):
        threads.choose_threads()


def test_busy_cores_are_left_alone(monkeypatch):
    monkeypatch.delenv("RSO_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(os, "getloadavg", lambda: (3.0, 0, 0))
    monkeypatch.setattr(threads, "busy_cpus", lambda: 3.2)
    assert threads.choose_threads() == {"threads": 1, "cpus": 4, "busy": 3.2, "load": 3.0, "source": "idle cores"}
    monkeypatch.setattr(threads, "busy_cpus", lambda: 0.4)  # a finished job still in the load average
    assert threads.choose_threads()["threads"] == 4
    monkeypatch.setattr(threads, "busy_cpus", lambda: 9.0)
    assert threads.choose_threads()["threads"] == 1  # never 0
    monkeypatch.setattr(threads, "busy_cpus", lambda: None)  # no /proc/stat: the load average
    assert threads.choose_threads()["threads"] == 1 and "load average" in threads.choose_threads()["source"]


def test_busy_cpus_sees_a_spinning_process():
    import multiprocessing as mp

    if threads.busy_cpus(0.2) is None:
        pytest.skip("no /proc/stat")
    stop = mp.Event()
    p = mp.Process(target=_spin, args=(stop,))
    p.start()
    try:
        busy = threads.busy_cpus(1.0)
    finally:
        stop.set()
        p.join()
    assert busy >= 0.7  # one process spinning is about one busy CPU (more if others are busy too)


def _spin(stop):
    while not stop.is_set():
        pass


def test_results_record_the_choice():
    from rso_lib.results import provenance

    t = provenance(0)["threads"]
    assert t["threads"] >= 1 and t["cpus"] >= 1 and t["source"]
