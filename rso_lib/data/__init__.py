"""Data layer: typed records, loaders for INSPIRED / ReDial / personas, the knowledge base, fetch."""

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
