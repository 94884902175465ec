"""`python -m boneage.gpu_check` (`make gpu-check`): does boneage work on this machine's GPUs?

Each check is a real `boneage.train` command on the demo data, a few steps long
(`debug=limit`): every model config under each mixed precision, channels_last and compile,
DDP over every visible GPU, and a batch too large for the GPU, whose error must name a
smaller batch. Then boneage.bench's model comparison gives train and inference images/s
per model config on the GPU. Without a GPU it is a dry run: it prints what it would run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from boneage.bench import compare_models
from boneage.config.cli import hydra_command

OOM_MESSAGE = "GPU out of memory with data.batch_size="


@dataclass
class Check:
    name: str
    overrides: list[str]
    expect_failure: str | None = None  # the text the error must hold, for a check that must fail
    result: dict[str, Any] = field(default_factory=dict)


def plan(cfg: DictConfig, gpus: int) -> list[Check]:
    """The checks, each a boneage.train command line."""
    common, one_gpu = list(cfg.common), ["trainer=gpu"]
    feature = [*common, f"model={cfg.feature_model}", *one_gpu]
    checks = [
        Check(f"{model} {precision}", [*common, f"model={model}", *one_gpu, f"trainer.precision={precision}"])
        for model in cfg.models
        for precision in cfg.precisions
    ]
    checks += [
        Check("channels_last", [*feature, "training.channels_last=true"]),
        Check("compile", [*feature, "training.compile=true"]),
        Check(f"DDP on {gpus} GPUs", [*common, f"model={cfg.feature_model}", "trainer=ddp", f"trainer.devices={gpus}"]),
        Check(
            "out-of-memory message",
            [*common, f"model={cfg.oom_model}", *one_gpu, f"model.batch_size={cfg.oom_batch}"],
            expect_failure=OOM_MESSAGE,
        ),
    ]
    return checks


def gpu_check(cfg: DictConfig) -> list[Check]:
    gpus = torch.cuda.device_count()
    checks = plan(cfg, max(gpus, 1))
    if not gpus:
        print("No GPU visible here: a dry run. On a GPU machine, `make gpu-check` runs these checks:")
        for check in checks:
            print(f"  {check.name:<28} python -m boneage.train {' '.join(check.overrides)}")
        print(f"then measures train and inference images/s of: {', '.join(cfg.models)}.")
        return checks
    output = Path(cfg.paths.output_dir)
    for number, check in enumerate(checks):
        check.result = _run(check, output / f"{number:02d}", cfg.timeout_s)
        print(f"{check.name:<28} {check.result['outcome']:<8} {check.result['seconds']:>7.1f} s", flush=True)
    speed = compare_models(list(cfg.models), cfg.speed)
    report = {"gpus": [torch.cuda.get_device_name(i) for i in range(gpus)], "checks": [asdict(c) for c in checks]}
    (output / "gpu_check.json").write_text(json.dumps(report | {"speed": speed}, indent=2))
    failed = [check.name for check in checks if check.result["outcome"] != "ok"]
    print(f"\n{len(checks) - len(failed)} of {len(checks)} checks passed" + (f"; failed: {failed}" if failed else ""))
    if failed:
        raise SystemExit(1)
    return checks


def _run(check: Check, run_dir: Path, timeout_s: float) -> dict[str, Any]:
    command = [sys.executable, "-m", "boneage.train", *check.overrides, f"hydra.run.dir={run_dir}"]
    started = time.monotonic()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"outcome": "hung", "seconds": timeout_s, "error": f"no end within {timeout_s} s"}
    seconds = round(time.monotonic() - started, 1)
    last_lines = done.stderr.strip().splitlines()[-3:]
    failed_as_expected = check.expect_failure and done.returncode != 0 and check.expect_failure in done.stderr
    ok = failed_as_expected or (not check.expect_failure and done.returncode == 0)
    return {"outcome": "ok" if ok else "FAILED", "seconds": seconds, "error": None if ok else last_lines}


@hydra_command("gpu_check")
def main(cfg: DictConfig) -> None:
    gpu_check(cfg)


if __name__ == "__main__":
    main()
