"""`make gpu-check` without a GPU: a dry run naming checks that are real, composable commands."""

from __future__ import annotations

import torch

from boneage.gpu_check import gpu_check, plan
from tests.helpers import compose_app


def test_without_a_gpu_it_prints_every_check_and_runs_nothing(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    cfg = compose_app("gpu_check", [])
    checks = gpu_check(cfg)
    printed = capsys.readouterr().out
    assert printed.startswith("No GPU visible here: a dry run.")
    assert all(check.name in printed and not check.result for check in checks)
    names = {check.name for check in checks}
    assert {"resnet50 16-mixed", "vit_base bf16-mixed", "channels_last", "compile", "out-of-memory message"} <= names


def test_every_check_is_a_train_command_that_composes(compose_train):
    for check in plan(compose_app("gpu_check", []), gpus=4):
        cfg = compose_train(check.overrides)
        assert cfg.trainer.accelerator == "gpu", check.name
        if check.name.startswith("DDP"):
            assert cfg.trainer.devices == 4 and cfg.trainer.strategy.timeout_min > 0
