"""Batch evaluation: configs (config.py), tasks (tasks.py), executors and the runner, BD-rate
reports and plots (report.py), the regression gate (gate.py)."""
