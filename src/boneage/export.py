"""`python -m boneage.export run=<run> format=onnx`: a run or ensemble as portable files.

Each network is written with torch.onnx (or TorchScript); the sidecar boneage_export.json
holds what the files alone do not: how each reads an image (size, CLAHE), its training
augmentation (for the same TTA views), its table inputs, its task (each head's kind, classes in
order, unit and output columns), the calibration and interval or set tables fitted on the
validation subjects, the ensemble weights and where it came from. The export is checked before
it is kept: on the run's own test images it must reproduce the PyTorch predictions within
`tolerance`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from boneage.runtime.startup import collector_paused

with collector_paused():  # torch and its libraries: a fifth quicker to start
    import numpy as np
    import torch
    from omegaconf import DictConfig, OmegaConf

    from boneage import __version__
    from boneage.config.cli import hydra_command
    from boneage.config.errors import ConfigError, ExportError
    from boneage.config.resolvers import unique_dir
    from boneage.evaluation.ensemble import load_members, plain, predict_members, shared_test_rows
    from boneage.evaluation.exported import FEATURES_OUTPUT, SIDECAR, load_export
    from boneage.evaluation.inference import TrainedRun
    from boneage.evaluation.trust import trust_for
    from boneage.modules.pixels import INPUT_FORMAT
    from boneage.runs.records import now
    from boneage.selfcheck.fitting import evidence_of, fit_gate
    from boneage.selfcheck.gate import Gate

SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}


def export(cfg: DictConfig) -> Path:
    """Writes and checks the export of `cfg`'s run or ensemble; returns its folder."""
    if cfg.format not in SUFFIX:
        raise ConfigError(f"format={cfg.format!r} is not one of {list(SUFFIX)}.")
    members = load_members(cfg.run, plain(cfg.ensemble), cfg.sweep)
    if not all(isinstance(member, TrainedRun) for member in members):
        raise ConfigError("export reads trained runs (their checkpoints), not an export folder.")
    if cfg.intervals_scale not in (None, "ensemble"):
        raise ConfigError(
            "an export stores intervals unscaled or scaled by ensemble disagreement (intervals_scale=ensemble)."
        )
    weights = np.asarray(plain(cfg.weights) or [1.0] * len(members), float)
    weights = (weights / weights.sum()).tolist()
    stamp = now()[:19].replace(":", "-")
    out = Path(cfg.output_dir or unique_dir(str(members[0].run_dir / "export" / f"{cfg.format}-{stamp}")))
    out.mkdir(parents=True, exist_ok=True)
    try:
        sidecar = _write_all(members, weights, out, cfg.format)
        trust = trust_for(members, cfg, "none", weights, intervals=True)
        sidecar["trust"] = trust.as_dict()
        gate = fit_gate(members, "none", weights, cfg.ood_method, cfg.ood_quantile)
        sidecar["gate"] = gate.save(out)
        for name, fitted in trust.by_head().items():
            sidecar["heads"][name] |= fitted
        (out / SIDECAR).write_text(json.dumps(sidecar, indent=2))  # the check loads the export as a user would
        sidecar["check"] = _check(members, weights, gate, out, cfg.check_images, cfg.tolerance)
    except BaseException:
        shutil.rmtree(out)  # a half-written export, or one that does not reproduce its run, is not left to be used
        raise
    (out / SIDECAR).write_text(json.dumps(sidecar, indent=2))
    check = sidecar["check"]
    print(f"exported {len(members)} network(s) as {cfg.format} to {out}; on {check['images']} test images the "
          f"largest difference from PyTorch is {check['max_abs_difference']:.2e} {check['unit'] or ''}")  # fmt: skip
    return out


def _write_all(members: list[TrainedRun], weights: list[float], out: Path, fmt: str) -> dict[str, Any]:
    """Every network, and the sidecar that describes them."""
    files = [out / f"member{index}{SUFFIX[fmt]}" for index in range(len(members))]
    entries = [
        _write(member, file, fmt) | {"weight": weight}
        for member, file, weight in zip(members, files, weights, strict=True)
    ]
    task = members[0].task
    heads = {name: head.description() | {"unit": head.unit} for name, head in task.heads.items()}
    return {"boneage_version": __version__, "created_at": now(), "format": fmt, "heads": heads, "members": entries}


class WithFeatures(torch.nn.Module):
    """The network as exported: its answers, and the pooled features self-validation compares."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, image: torch.Tensor, inputs: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.module.answers_and_features(image, inputs)


def _write(member: TrainedRun, file: Path, fmt: str) -> dict[str, Any]:
    """One network to `file`, with batch size free; its sidecar entry."""
    size = member.settings["image_size"]
    arguments = [torch.zeros(2, 1, size, size, dtype=torch.uint8)]
    if member.inputs:
        arguments.append(torch.zeros(2, len(member.inputs)))
    network = WithFeatures(member.module).eval()
    with torch.no_grad():
        if fmt == "onnx":
            batch = torch.export.Dim("batch")
            torch.onnx.export(
                network, tuple(arguments), str(file), dynamo=True, verbose=False, external_data=False,
                input_names=["image", "inputs"][: len(arguments)],
                output_names=[_output_name(member.task.names), FEATURES_OUTPUT],
                dynamic_shapes=tuple({0: batch} for _ in arguments),
            )  # fmt: skip
        else:  # Lightning's tracing (it keeps the module's trainer out of the trace), of both outputs
            member.module.forward = member.module.answers_and_features
            try:
                member.module.to_torchscript(str(file), method="trace", example_inputs=tuple(arguments))
            finally:
                del member.module.forward
    return {
        "file": file.name,
        "name": member.name,
        "unit": member.unit,
        "image_input": INPUT_FORMAT,
        "pixel_stats": member.module.hparams["pixel_stats"],  # what the network normalises its input with
        "task": {"config": OmegaConf.to_container(member.config.task, resolve=True), "state": member.task.state()},
        "settings": member.settings,
        "metrics": member.metrics,
        "config_hash": member.identity()["config_hash"],
        "source": {"run_dir": str(member.run_dir), "checkpoint": str(member.checkpoint)},
    }


def _output_name(heads: list[str]) -> str:
    """The network's output: its head's name (an age network answers `age`), or `answers` for
    several heads side by side (their columns are in the sidecar)."""
    return heads[0] if len(heads) == 1 else "answers"


def _check(
    members: list[TrainedRun], weights: list[float], gate: Gate, out: Path, images: int, tolerance: float
) -> dict[str, Any]:  # fmt: skip
    """The exported files against PyTorch on the runs' own test images: their answers, and the
    self-validation's verdicts."""
    rows = shared_test_rows(members).head(images)
    expected = predict_members(members, rows, "none", weights)
    exported_members = load_export(out)
    exported = predict_members(exported_members, rows, "none")
    difference = float(np.abs(expected.combined - exported.combined).max())
    unit = members[0].unit
    if not difference <= tolerance:
        raise ExportError(
            f"the export differs from PyTorch by up to {difference:.2e} {unit or ''} on {len(rows)} test images "
            f"(tolerance {tolerance:g}); it was not kept. Try format=torchscript, or report the model."
        )
    verdicts = gate.verdicts(evidence_of(members, expected))
    exported_verdicts = exported_members[0].gate.verdicts(evidence_of(exported_members, exported))
    if not np.array_equal(verdicts.refused, exported_verdicts.refused):
        raise ExportError(
            f"the export's self-validation refuses other test images than the run's ({verdicts.refused.sum()} against "
            f"{exported_verdicts.refused.sum()} of {len(rows)}); it was not kept. Try format=torchscript."
        )
    return {"images": len(rows), "max_abs_difference": difference, "tolerance": tolerance, "unit": unit,
            "refused_alike": int(verdicts.refused.sum())}  # fmt: skip


@hydra_command("export")
def main(cfg: DictConfig) -> None:
    export(cfg)


if __name__ == "__main__":
    main()
