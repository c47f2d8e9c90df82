"""Metrics, slices, plots and the evaluation report. Plain functions over arrays and frames."""
