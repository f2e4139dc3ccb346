"""rso_lib: a reproduction kit for RSO (Reinforced Strategy Optimization, arXiv 2509.26093).

One-way flow, each module importing only from those to its left::

    data -> llm -> experts -> train -> baselines -> dialogue -> eval -> experiments -> plots

(``strategies``, ``paths``, ``threads``, ``results`` and ``notebook`` are shared; ``tests/unit/test_architecture.py``
checks the flow). See README.md ("What RSO is", "Layout") for where each paper equation lives.
"""

__version__ = "0.1.0"
