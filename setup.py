"""Package list for setuptools (everything else is in pyproject.toml).

grammar/ lives at the top of the repository, as the design lays out, and is mapped into the
wheel as the package `mlrobust.grammar`; find_packages cannot see it there, so it is added here.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["mlrobust", "mlrobust.*"]), "mlrobust.grammar"],
    package_dir={"mlrobust.grammar": "grammar"},
)
