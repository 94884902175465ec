"""instantiate(), with boneage's own errors surfacing as themselves, not wrapped by Hydra."""

from __future__ import annotations

from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from boneage.errors import BoneageError


def build(node: DictConfig, **kwargs: Any) -> Any:
    """The object a config node describes (`_target_`), built with `kwargs` added."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        if isinstance(error.__cause__, BoneageError):
            raise error.__cause__ from None
        raise
