"""The Dagster layer: thin assets, resources and the IO manager that wire the domain code.

Asset modules here avoid `from __future__ import annotations`: Dagster reads the
annotations (the context type, `DeltaInput` and `pl.LazyFrame` inputs) at definition time.
"""
