"""Benchmark: how long loading the data takes, per loader, first (cold: imports, OS file cache as
it is) vs. second call in the same process, with the rows loaded per second.

    RSO_DATA_DIR=../shared/data .venv/bin/python bench/data_load.py [--repeat 3]

Last line: ``data_load_all_s=<seconds of the best full load_all()>``.
"""

from __future__ import annotations

import argparse
import time

from _record import add_out_argument, recorded  # bench/_record.py: --out writes a provenance file

from rso_lib.paths import data_dir


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="")
    ap.add_argument("--repeat", type=int, default=3, help="warm repetitions (best is reported)")
    add_out_argument(ap)
    a = ap.parse_args()
    with recorded(a.out):
        run_bench(a)


def run_bench(a: argparse.Namespace) -> None:
    """The bench itself; what it prints is the measurement (``main`` records it with ``--out``)."""
    d = data_dir(a.data_dir)

    from rso_lib.data.inspired import load_dialog_split, load_strategy_split
    from rso_lib.data.kb import load_kb
    from rso_lib.data.personas import load_pccrs_personas, load_seeker_personas
    from rso_lib.data.redial import load_redial_split, load_redial_test_txt
    from rso_lib.data.sft import build_sft_examples
    from rso_lib.data.stats import load_all
    from rso_lib.data.targets import load_sim_targets_with_issues

    def n_turns(res):
        return sum(len(x.turns) for x in res[0])

    loaders = {
        "inspired_strategy_train": (lambda: load_strategy_split(d, "train"), n_turns, "utterances"),
        "inspired_tsv_dev": (lambda: load_dialog_split(d, "valid"), n_turns, "utterances"),
        "redial_valid_raw": (lambda: load_redial_split(d, "valid"), n_turns, "messages"),
        "redial_test_txt": (lambda: load_redial_test_txt(d), n_turns, "utterances"),
        "kb_id2info": (lambda: load_kb(d), len, "items"),
        "seeker_personas": (lambda: load_seeker_personas(d), lambda r: len(r[0]), "personas"),
        "pccrs_personas": (lambda: load_pccrs_personas(d), lambda r: len(r[0]), "personas"),
        "sim_targets_redial": (lambda: load_sim_targets_with_issues(d, "redial"), lambda r: len(r[0]), "targets"),
        "sft_build_train": (lambda: build_sft_examples(load_strategy_split(d, "train")[0]), len, "examples"),
    }
    print(
        f"{'loader':26s} {'rows':>7s} {'unit':10s} {'cold_s':>8s} {'warm_s':>8s} {'cold/warm':>9s} {'rows/s warm':>12s}"
    )
    for name, (fn, count, unit) in loaders.items():
        cold, res = _timed(fn)
        warm = min(_timed(fn)[0] for _ in range(a.repeat))
        n = count(res)
        print(f"{name:26s} {n:7d} {unit:10s} {cold:8.3f} {warm:8.3f} {cold / warm:9.2f} {n / warm:12.0f}")
    cold, _ = _timed(lambda: load_all(d))
    warm = min(_timed(lambda: load_all(d))[0] for _ in range(a.repeat))
    print(f"{'load_all (both datasets)':26s} {'':7s} {'':10s} {cold:8.3f} {warm:8.3f} {cold / warm:9.2f}")
    print(f"data_load_all_s={warm:.3f}")


if __name__ == "__main__":
    main()
