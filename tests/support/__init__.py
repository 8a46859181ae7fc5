"""Helpers shared by the test suites (tests/lambdas, tests/workflow), importable as `support.*`.

pyproject.toml puts tests/ on sys.path (`[tool.pytest.ini_options] pythonpath`), so this package is found
whichever suites run; the offline stack itself is facetrain_offline, the production path of `facetrain run`.
"""
