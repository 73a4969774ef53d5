"""The package list, which pyproject.toml cannot map: the Hydra configs live in configs/ beside
the package (the repository's layout) and ship inside it as ``taco_plus.configs``."""

from setuptools import find_namespace_packages, setup

configs = ["taco_plus.configs", *(f"taco_plus.configs.{name}" for name in find_namespace_packages("configs"))]
setup(packages=[*find_namespace_packages(include=["taco_plus*"]), *configs], package_dir={"taco_plus.configs": "configs"})
