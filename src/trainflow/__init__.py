"""trainflow: a Dagster asset-graph training pipeline (README.md)."""

from trainflow import quiet_warnings

# Before any other trainflow module: every entry point (the CLI, the code location, a step
# process, a pyfunc load) imports this package first.
quiet_warnings.install()
