"""The pipeline's stages as plain functions: what each asset computes, without Dagster.

One module per stage, in graph order: `snapshot` (warehouse -> raw_snapshot), `validation`
(the flights contract -> validated_flights + quarantine), `features`, `dataset`, `training`,
`evaluation`, `registration`. Each takes plain inputs (lake tables as read, the experiment
config, the lake, the warehouse's models, MLflow) and a `step.Step` (the run it is part of,
and where its log lines and metadata go), and returns what the asset hands the IO manager.
`defs/` wires each to one asset; tests and the CLI call them directly.
"""
