"""The package list: boneage from src/, and its config groups from the top-level conf/.

pyproject.toml holds everything else; only the config folders need code, because each
group folder (conf/model, conf/data, ...) is a data-only package of its own.
"""

from setuptools import find_namespace_packages, find_packages, setup

CONFIG_GROUPS = find_namespace_packages("conf", exclude=["__pycache__", "*.__pycache__"])

# hydra_plugins is a namespace package that Hydra scans for plugins (the Optuna sweeper).
PLUGINS = find_namespace_packages("src", include=["hydra_plugins.*"])

setup(packages=[*find_packages("src"), *PLUGINS, "boneage.conf", *(f"boneage.conf.{group}" for group in CONFIG_GROUPS)])
