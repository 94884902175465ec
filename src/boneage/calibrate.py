"""`python -m boneage.calibrate run=<run | export> input=<site table | DICOM folder>`: a model
fitted to a site, on the site's own labelled images (a table's ages, or a DICOM folder's
bone-age reports: datamodules/readings.py).

The model's age answers on the site's own labelled images are corrected by one line per sex
(evaluation/site.py), and the correction is written into a new export, which predict and serve
use like any other. The site's bias per sex before and after (cross-fitted) is printed, with
bootstrap 95% intervals and the number of images, and stored in the export's sidecar.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from boneage.runtime.startup import collector_paused

with collector_paused():  # torch and its libraries: a fifth quicker to start
    import numpy as np
    import pandas as pd
    from omegaconf import DictConfig, OmegaConf

    from boneage.config.cli import hydra_command
    from boneage.config.errors import ConfigError, DataError
    from boneage.config.resolvers import unique_dir
    from boneage.datamodules.dicom_header import patient_fields
    from boneage.datamodules.images import ImageLimits
    from boneage.datamodules.intake import images_in_folder, set_aside_unreadable
    from boneage.datamodules.readings import BONE_AGE_LOINC, sop_instance_uid, split_readings
    from boneage.datamodules.sex import read_sex
    from boneage.evaluation.answers import Answers
    from boneage.evaluation.exported import SIDECAR, is_export, load_export
    from boneage.evaluation.site import ALL, bias_figures, cross_fitted, fit_site_correction
    from boneage.evaluation.trust import TaskTrust
    from boneage.export import export
    from boneage.predict import images_to_predict
    from boneage.runs.records import now
    from boneage.selfcheck.fitting import gate_of
    from boneage.tasks.clinical import PER_YEAR


def calibrate(cfg: DictConfig) -> Path:
    """Writes the export of `cfg.run` fitted to the site of `cfg.input`; returns its folder."""
    if cfg.run is None:
        raise ConfigError(
            "calibrate fits one model: give run=<run dir or export folder> (an ensemble: export it first)."
        )
    rows = site_rows(cfg)  # the site's table checked before anything is written
    source = Path(cfg.run).expanduser().resolve()
    out = Path(cfg.output_dir or unique_dir(str(source / f"site-{now()[:19].replace(':', '-')}")))
    if is_export(source):
        shutil.copytree(source, out)
    else:
        export(OmegaConf.merge(cfg, {"output_dir": str(out)}))
    try:
        figures = _fit_into(cfg, out, rows)
    except BaseException:
        shutil.rmtree(out)  # an export half-fitted to the site is not left to be used
        raise
    _print(figures, out)
    return out


def _fit_into(cfg: DictConfig, out: Path, rows: pd.DataFrame) -> dict[str, Any]:
    """Fits the correction on the site's images (`rows`) with the export at `out`, and stores it there."""
    members = load_export(out)
    task = members[0].task
    head = next((name for name, h in task.heads.items() if "linear" in h.calibrations), None)
    if head is None:
        raise ConfigError(f"calibrate corrects an age head; this {type(task).__name__} model has none.")
    gate = gate_of(members, "none", None, cfg.ood_method, cfg.ood_quantile)
    trust = TaskTrust.from_dict(members[0].trust, task)
    trust.site = None  # an export already fitted to a site is fitted again from its model's own answers
    answers = Answers(members, trust, gate=gate)
    predicted, answered = answers.predict(rows)
    refused = np.zeros(len(rows), bool) if gate is None else answers.verdicts(predicted).refused
    kept = rows[~refused].reset_index(drop=True)
    if "truth_years" in kept:  # a DICOM folder's readings, in years: in the model's unit
        kept = kept.assign(truth=kept["truth_years"] * PER_YEAR[task.heads[head].unit])
    age, truth, sexes = answered[head][~refused, 0], kept["truth"].to_numpy(float), kept["sex"]
    correction = fit_site_correction(head, age, truth, sexes)
    after = cross_fitted(head, age, truth, sexes, cfg.seed)
    figures = {"input": str(cfg.input), "images": len(kept), "not_assessed": int(refused.sum()),
               "unit": task.heads[head].unit, "before": bias_figures(age, truth, sexes, cfg.bootstrap, cfg.seed),
               "after": bias_figures(after, truth, sexes, cfg.bootstrap, cfg.seed)}  # fmt: skip
    sidecar = json.loads((out / SIDECAR).read_text())
    sidecar["trust"]["site"] = correction.as_dict()
    sidecar["site"] = figures
    (out / SIDECAR).write_text(json.dumps(sidecar, indent=2))
    return figures


def site_rows(cfg: DictConfig) -> pd.DataFrame:
    """The site's readable images with their true age and sex: a table's `truth` (in the
    model's unit), or a DICOM folder's readings (`truth_years`, its reports' bone ages)."""
    if Path(cfg.input).expanduser().is_dir():
        found = _read_folder(Path(cfg.input).expanduser())
    else:
        found, _ = images_to_predict(cfg.input, cfg.image_column, cfg.image_dir)
        for role, column in (("age_column", cfg.age_column), ("sex_column", cfg.sex_column)):
            if column is not None and column not in found:
                raise DataError(f"input={cfg.input} has no column {column!r} ({role}); it has {list(found.columns)}.")
        found = found.assign(truth=pd.to_numeric(found[cfg.age_column], errors="coerce"))
        if cfg.sex_column is not None:
            found = found.assign(sex=read_sex(found[cfg.sex_column]))
        found = found[found["truth"].notna()]
    rows, unreadable = set_aside_unreadable(found, ImageLimits(cfg.max_pixels, cfg.multi_frame))
    if len(unreadable):
        print(f"{len(unreadable)} image(s) of the site left out, unreadable (first: {unreadable.iloc[0].tolist()})")
    if "sex" not in rows:
        rows = rows.assign(sex=None)
    return rows.reset_index(drop=True)


def _read_folder(folder: Path) -> pd.DataFrame:
    """A DICOM folder's images that a structured report of the folder reads (the mean where
    several do), with PatientSex: column truth_years."""
    files, _ = images_in_folder(folder)
    images, readings = split_readings(files)
    if readings.empty:
        raise DataError(
            f"input={folder}: no bone-age readings in this folder. calibrate takes its ages from structured reports "
            f"that hold a NUM XR Bone age (LOINC {BONE_AGE_LOINC}) referring to an image of the folder, or from a "
            "table: input=<table> age_column=<its column of true ages>."
        )
    found = pd.DataFrame({"image": [str(image) for image in images],
                          "sop_instance_uid": [sop_instance_uid(image) for image in images],
                          "sex": [patient_fields(image)["sex"] for image in images]})  # fmt: skip
    truth = readings.groupby("sop_instance_uid")["reading_years"].mean().rename("truth_years")
    read = found.join(truth, on="sop_instance_uid", how="inner")
    print(f"{len(readings)} bone-age reading(s) in {folder}, of {len(read)} of its {len(found)} image(s)")
    return read.drop(columns="sop_instance_uid")


def _print(figures: dict[str, Any], out: Path) -> None:
    unit = figures["unit"] or ""
    print(f"fitted to the site on {figures['images']} image(s) ({figures['not_assessed']} not assessed by "
          f"self-validation, left out); bias = predicted - true, {unit}, 95% bootstrap interval:")  # fmt: skip
    for group in ("F", "M", ALL):
        if group not in figures["before"]:
            continue
        before, after = figures["before"][group], figures["after"][group]
        print(f"  {group:>3} ({before['images']} images): bias {_bias(before)} -> {_bias(after)} (cross-fitted); "
              f"MAE {before['mae']:.3f} -> {after['mae']:.3f}")  # fmt: skip
    print(f"the export fitted to the site: {out}")


def _bias(figures: dict[str, Any]) -> str:
    low, high = figures["bias_95"]
    return f"{figures['bias']:+.3f} [{low:+.3f}, {high:+.3f}]"


@hydra_command("calibrate")
def main(cfg: DictConfig) -> None:
    calibrate(cfg)


if __name__ == "__main__":
    main()
