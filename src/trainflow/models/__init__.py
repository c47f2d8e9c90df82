"""Model families: train, predict, serialise. No Dagster, no MLflow: plain functions."""
