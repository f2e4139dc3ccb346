"""rso_lib: a reproduction kit for RSO (Reinforced Strategy Optimization, arXiv 2509.26093).

One-way flow, each module importing only from those to its left::

    data -> llm -> experts -> dialogue -> train -> eval -> plots/tables

See README.md ("Architecture") for where each paper equation lives.
"""

__version__ = "0.1.0"
