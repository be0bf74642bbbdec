"""mlrobust tests (a package, so test modules can share tests/helpers.py)."""
