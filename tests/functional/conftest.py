"""Functional tests use the shared fixtures of tests/conftest.py (project, cli, prefect_harness)."""
