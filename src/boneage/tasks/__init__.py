"""Prediction targets: the age task (the default), scores, classes, and several heads at once."""

from boneage.tasks.age import AgeHead, AgeTask
from boneage.tasks.base import Task
from boneage.tasks.classification import ClassificationHead
from boneage.tasks.classify import ClassifyTask
from boneage.tasks.multitask import MultiTask
from boneage.tasks.regression import RegressionHead
from boneage.tasks.score import ScoreTask

__all__ = [
    "AgeHead", "AgeTask", "ClassificationHead", "ClassifyTask", "MultiTask", "RegressionHead", "ScoreTask", "Task",
]  # fmt: skip
