"""Data layer: typed records, loaders for INSPIRED / ReDial / personas, the knowledge base, fetch.

Modules: :mod:`~rso_lib.data.records` (dataclasses), :mod:`~rso_lib.data.kb` (catalogue),
:mod:`~rso_lib.data.inspired`, :mod:`~rso_lib.data.redial`, :mod:`~rso_lib.data.personas`,
:mod:`~rso_lib.data.targets` (simulation targets), :mod:`~rso_lib.data.sft` (Planner SFT
examples), :mod:`~rso_lib.data.stats` (Table II, strategy distribution), :mod:`~rso_lib.data.fetch`
(downloads). Every loader returns ``(records, issues)``; the fatal vs. non-fatal policy is written
once in :mod:`rso_lib.data._io`.
"""

from rso_lib.data.records import (  # noqa: F401
    RECOMMENDER,
    SEEKER,
    DataError,
    Dialogue,
    Issue,
    Item,
    Persona,
    SimTarget,
    Turn,
)
