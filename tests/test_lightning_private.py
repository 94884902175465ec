"""The private parts of Lightning boneage uses: present in the installed version, or a loud error."""

from __future__ import annotations

import pytest
from pytorch_lightning.callbacks import WeightAveraging

from boneage.runtime import lightning_private


def test_the_installed_lightning_has_every_private_part_boneage_uses():
    lightning_private.check()


def test_a_lightning_without_one_of_them_fails_naming_it_and_the_pin(monkeypatch):
    monkeypatch.delattr(WeightAveraging, "_swap_models")
    with pytest.raises(RuntimeError, match=r"WeightAveraging\._swap_models is missing.*pytorch-lightning>=2\.6,<2\.7"):
        lightning_private.check()


def test_a_changed_signature_is_caught_too(monkeypatch):
    monkeypatch.setattr(lightning_private.subprocess_script, "_hydra_subprocess_cmd", lambda rank, extra: None)
    with pytest.raises(RuntimeError, match=r"_hydra_subprocess_cmd no longer takes \('local_rank',\)"):
        lightning_private.check()
