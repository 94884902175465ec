"""Evaluation, test-time augmentation, ensembles, prediction and cross-validation folds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient
from hydra.utils import instantiate
from omegaconf import OmegaConf

from boneage.config.errors import ConfigError, DataError
from boneage.datamodules.images import NOT_AN_IMAGE, read_grayscale
from boneage.datamodules.splits import SubjectSplit
from boneage.datamodules.transforms import build_pipeline, preprocessing
from boneage.evaluate import evaluate
from boneage.evaluation.ensemble import load_members
from boneage.evaluation.inference import load_run
from boneage.evaluation.trust import fit_value_trust
from boneage.evaluation.tta import tta_views
from boneage.export import export
from boneage.predict import predict
from boneage.report import aggregate_folds, build_table
from boneage.serve import build_app
from boneage.tasks import AgeHead
from boneage.tasks.clinical import clinical_figures
from boneage.tasks.metrics import interval_figures, regression_metrics
from tests.helpers import TINY, compose_app, run_cli
from tests.test_splits import longitudinal_table


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, data_dir):
    """Two short demo runs on the same split (data.split.seed) with other seeds and preprocessing."""
    root = tmp_path_factory.mktemp("runs")
    runs = []
    for seed, settings in ((1, []), (2, ["model.image_size=40", "data.clahe=true"])):
        run = root / f"seed{seed}"
        args = [
            *TINY,
            "trainer.max_epochs=2",
            f"seed={seed}",
            "data.split.seed=7",
            f"hydra.run.dir={run}",
            *settings,
        ]
        result = run_cli(args, root, data_dir)
        assert result.returncode == 0, result.stderr[-2000:]
        runs.append(run)
    return runs


def copy_test_images(run: Path, folder: Path, count: int) -> Path:
    """The first `count` test images of `run`, copied into `folder` as new images to predict."""
    folder.mkdir()
    for path in load_run(run).test_rows["image"].head(count):
        shutil.copy(path, folder)
    return folder


def test_metrics_match_hand_computed_values():
    true, predicted = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.5, 2.0, 2.0, 5.0])
    figures = regression_metrics(true, predicted, limits=[0.5, 1])
    assert figures["mae"] == pytest.approx(0.625)
    assert figures["rmse"] == pytest.approx(0.75)
    assert figures["median_ae"] == pytest.approx(0.75)
    assert figures["bias"] == pytest.approx(0.125)
    assert figures["r2"] == pytest.approx(1 - 2.25 / 5)
    assert figures["pearson_r"] == pytest.approx(np.corrcoef(true, predicted)[0, 1])
    assert figures["spearman_rho"] == pytest.approx(0.9486833)  # ranks 1,2.5,2.5,4 vs 1,2,3,4
    assert (figures["within_0.5"], figures["within_1"]) == (0.5, 1.0)


def test_subject_level_bins_sex_and_interval():
    ages = pd.DataFrame(
        {"subject": ["a", "a", "b", "b"], "sex": ["F", "F", "M", "M"],
         "true": [1.0, 2.0, 3.0, 4.0], "predicted": [1.5, 2.0, 2.0, 5.0]}
    )  # fmt: skip
    result = clinical_figures(ages, limits=[1], bin_width=2, resamples=500, seed=0)
    assert result["subject"]["mae"] == pytest.approx((0.25 + 0.0) / 2)  # means: a 1.5 vs 1.75, b 3.5 vs 3.5
    assert result["mae_per_age_bin"] == {"[0, 2)": {"mae": 0.5, "n": 1}, "[2, 4)": {"mae": 0.5, "n": 2},
                                         "[4, 6)": {"mae": 1.0, "n": 1}}  # fmt: skip
    assert result["mae_per_sex"] == {"F": {"mae": 0.25, "n": 2}, "M": {"mae": 1.0, "n": 2}}
    low, high = result["image"]["mae_ci95"]
    assert 0 <= low <= 0.625 <= high <= 1.0


@pytest.mark.slow
def test_evaluating_a_run_reproduces_the_test_mae_of_training(two_runs, tmp_path):
    run = two_runs[0]
    out = evaluate(compose_app("evaluate", [f"run={run}", f"output_dir={tmp_path / 'eval'}"]))
    metrics = json.loads((out / "metrics.json").read_text())
    logged = json.loads((run / "run.json").read_text())["metrics"]["test/mae"]
    assert metrics["image"]["mae"] == pytest.approx(logged, abs=1e-4)
    predictions = pd.read_csv(out / "predictions.csv")
    assert len(predictions) == metrics["image"]["n"] and set(predictions) >= {"subject", "age", "predicted", "error"}
    for name in ("report.md", "predicted_vs_true.png", "bland_altman.png", "mae_per_age_bin.png", "heatmaps.png"):
        assert (out / name).is_file(), name
    assert "per subject" in (out / "report.md").read_text()


@pytest.mark.slow
def test_evaluating_on_a_table_uses_all_its_rows(two_runs, tmp_path, data_dir):
    (labels,) = data_dir.glob("synthetic/hands2_n60_*/labels.csv")
    overrides = [
        f"run={two_runs[0]}", "data=table",
        f"data.source.path={labels}", f"data.source.image_dir={labels.parent}/images",
        "data.source.columns.age=age_years", "data.source.columns.subject=subject", "data.source.columns.sex=sex",
        f"output_dir={tmp_path / 'table'}",
    ]  # fmt: skip
    metrics = json.loads((evaluate(compose_app("evaluate", overrides)) / "metrics.json").read_text())
    assert metrics["image"]["n"] == len(pd.read_csv(labels)) and metrics["evaluated_on"].endswith("labels.csv")


@pytest.mark.slow
def test_an_ensemble_is_no_worse_than_its_members_on_average(two_runs, tmp_path):
    """The members differ in image size and CLAHE: each predicts with its own preprocessing."""
    overrides = [f"ensemble=[{two_runs[0]},{two_runs[1]}]", f"output_dir={tmp_path / 'ens'}"]
    metrics = json.loads((evaluate(compose_app("evaluate", overrides)) / "metrics.json").read_text())
    members = [figures["mae"] for figures in metrics["members"].values()]
    assert len(members) == 2 and metrics["image"]["mae"] <= np.mean(members) + 1e-9
    assert "Ensemble against its members" in (tmp_path / "ens" / "report.md").read_text()

    top = evaluate(
        compose_app("evaluate", ["ensemble=top2", f"sweep={two_runs[0].parent}", f"output_dir={tmp_path / 't'}"])
    )
    assert json.loads((top / "metrics.json").read_text())["image"]["mae"] == pytest.approx(metrics["image"]["mae"])


@pytest.mark.slow
def test_zoom_tta_averages_the_training_affine_at_fixed_scales_and_evaluate_compares_it(two_runs, tmp_path):
    run = load_run(two_runs[0])
    rows = run.test_rows.head(4)
    views = [[], [A.Affine(scale=(0.95, 0.95), p=1.0)], [A.Affine(scale=(1.05, 1.05), p=1.0)]]
    with torch.inference_mode():
        per_view = [
            run.module(
                torch.stack(
                    [build_pipeline(run.preprocess, view)(image=read_grayscale(p))["image"] for p in rows["image"]]
                )
            )
            for view in views
        ]
    assert np.allclose(run.predict(rows, "zoom"), torch.stack(per_view).mean(0).numpy(), atol=1e-5)
    assert not np.allclose(run.predict(rows, "zoom"), per_view[0].numpy(), atol=1e-5)

    out = evaluate(compose_app("evaluate", [f"run={two_runs[0]}", "tta=[zoom,shift]", f"output_dir={tmp_path / 'e'}"]))
    metrics = json.loads((out / "metrics.json").read_text())
    logged = json.loads((two_runs[0] / "run.json").read_text())["metrics"]["test/mae"]
    assert metrics["tta_against_none"]["without"]["mae"] == pytest.approx(logged, abs=1e-4)  # the same images
    assert metrics["tta_against_none"]["with TTA"]["mae"] == pytest.approx(metrics["image"]["mae"])
    assert "predicted_without_tta" in pd.read_csv(out / "predictions.csv")
    assert "Test-time augmentation (['zoom', 'shift']) against none" in (out / "report.md").read_text()
    with pytest.raises(ConfigError, match="not trained with horizontal flips"):
        run.predict(rows, "hflip")


def test_tta_views_come_from_the_training_augmentation():
    augment = OmegaConf.to_container(compose_app("train", []).data.augment)  # Affine: scale 0.9-1.1, shift 5%
    views = tta_views(["zoom", "shift", "none"], augment)
    assert list(views) == ["plain", "zoom0.95", "zoom1.05", "shift-1", "shift1"]
    assert views["shift1"][0].translate_percent["x"] == (0.025, 0.025)
    image = np.full((32, 32), 200, np.uint8)
    for view in views.values():  # every view keeps the training canvas
        assert build_pipeline(preprocessing(32), view)(image=image)["image"].shape == (1, 32, 32)
    flipping = augment | {"flip": {"_target_": "albumentations.HorizontalFlip", "p": 0.5}}
    assert list(tta_views("hflip", flipping)) == ["plain", "hflip"]
    with pytest.raises(ConfigError, match="not trained with horizontal flips"):
        tta_views("hflip", augment)


@pytest.mark.slow
def test_predict_on_a_folder_writes_one_row_per_image(two_runs, tmp_path):
    folder = copy_test_images(two_runs[0], tmp_path / "new", 5)
    readable = sorted(p.name for p in folder.iterdir())
    (folder / "notes.png").write_text("not an image")
    (folder / "cut.png").write_bytes((folder / readable[0]).read_bytes()[:600])  # a truncated copy
    output = tmp_path / "ages.csv"
    predict(
        compose_app(
            "predict", [f"run={two_runs[0]}", f"input={folder}", f"output={output}", "chunk_size=2", "explain=true"]
        )
    )
    assert sorted(p.name for p in (tmp_path / "ages_heatmaps").iterdir()) == readable  # one Grad-CAM overlay each
    table = pd.read_csv(output)
    assert len(table) == 5 and table["predicted_age"].between(0, 30).all()
    assert (table["lower_90"] < table["predicted_age"]).all() and (table["predicted_age"] < table["upper_90"]).all()
    assert sorted(table["image"].map(lambda p: p.rsplit("/", 1)[-1])) == readable
    unreadable = pd.read_csv(tmp_path / "ages_unreadable.csv")
    assert sorted(unreadable["image"].map(lambda p: p.rsplit("/", 1)[-1])) == ["cut.png", "notes.png"]
    assert (unreadable["reason"] == NOT_AN_IMAGE).all()

    with pytest.raises(DataError, match=r"cut.png: .*\(2 unreadable image\(s\) in all\)"):
        predict(
            compose_app("predict", [f"run={two_runs[0]}", f"input={folder}", f"output={output}", "on_unreadable=stop"])
        )


@pytest.mark.slow
def test_predict_from_a_table_keeps_its_columns_and_matches_the_run(two_runs, tmp_path):
    run = load_run(two_runs[0])
    rows = run.test_rows.head(6)
    table = pd.DataFrame({"file": [Path(p).name for p in rows["image"]], "patient": rows["subject"].tolist()})
    table.to_csv(tmp_path / "new.csv", index=False)
    output = tmp_path / "ages.csv"
    overrides = [f"run={two_runs[0]}", f"input={tmp_path / 'new.csv'}", "image_column=file",
                 f"image_dir={Path(rows['image'].iloc[0]).parent}", f"output={output}"]  # fmt: skip
    predict(compose_app("predict", overrides))
    written = pd.read_csv(output)
    assert written["patient"].tolist() == table["patient"].tolist()  # the table's own columns, in its order
    np.testing.assert_allclose(written["predicted_age"], run.predict(rows), atol=1e-4)


@pytest.mark.slow
def test_ensemble_weights_weigh_each_members_prediction(two_runs, tmp_path):
    members = [load_run(run) for run in two_runs]
    rows = members[0].test_rows
    expected = 0.8 * members[0].predict(rows) + 0.2 * members[1].predict(rows)
    overrides = [f"ensemble=[{two_runs[0]},{two_runs[1]}]", "weights=[0.8,0.2]", f"output_dir={tmp_path / 'w'}"]
    predictions = pd.read_csv(evaluate(compose_app("evaluate", overrides)) / "predictions.csv")
    np.testing.assert_allclose(predictions["predicted"], expected, atol=1e-4)


def test_folds_partition_the_non_test_subjects():
    table = longitudinal_table(n_subjects=500)
    assignments = [SubjectSplit(folds=5, fold=fold).assign(table, AgeHead()) for fold in range(5)]
    tests = {frozenset(table["subject"][a == "test"]) for a in assignments}
    assert len(tests) == 1  # the test set is the same in every fold
    vals = [set(table["subject"][a == "val"]) for a in assignments]
    assert all(not (vals[i] & vals[j]) for i in range(5) for j in range(i + 1, 5))
    assert set().union(*vals) == set(table["subject"]) - next(iter(tests))
    assert max(map(len, vals)) - min(map(len, vals)) <= 1


def test_data_folds_and_fold_select_the_validation_fold(compose_train):
    cfg = compose_train([*TINY, "data.folds=5", "data.fold=3"])
    datamodule = instantiate(cfg.data, task=instantiate(cfg.task))
    assert (datamodule.split.folds, datamodule.split.fold) == (5, 3)
    datamodule.setup()
    val_subjects = datamodule.summary()["split"]["sets"]["val"]["subjects"]
    non_test = sum(datamodule.summary()["split"]["sets"][name]["subjects"] for name in ("train", "val"))
    assert abs(val_subjects - non_test / 5) <= 1


def test_report_aggregates_metrics_over_folds(tmp_path):
    for fold, mae in enumerate([1.0, 2.0, 3.0]):
        record = {
            "status": "finished",
            "metrics": {"val/mae": mae, "test/mae": mae + 1},
            "config": {"model": {"name": "resnet50"}, "data": {"folds": 3, "fold": fold}},
        }
        (tmp_path / "cv" / str(fold)).mkdir(parents=True)
        (tmp_path / "cv" / str(fold) / "run.json").write_text(json.dumps(record))
    folds = aggregate_folds(build_table([tmp_path / "cv"]))
    assert folds.loc[0, ["val_mae_mean", "val_mae_std", "test_mae_mean", "folds"]].tolist() == [2.0, 1.0, 3.0, 3]


@pytest.mark.slow
def test_onnx_export_of_an_ensemble_reproduces_it_and_predict_and_serve_run_from_it(two_runs, tmp_path):
    """The members differ in image size and CLAHE: the sidecar carries each one's preprocessing."""
    out = export(
        compose_app(
            "export", [f"ensemble=[{two_runs[0]},{two_runs[1]}]", "weights=[3,1]", f"output_dir={tmp_path / 'x'}"]
        )
    )
    sidecar = json.loads((out / "boneage_export.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["boneage_export.json", "gate.npz", "member0.onnx", "member1.onnx"]
    assert [m["weight"] for m in sidecar["members"]] == [0.75, 0.25]
    assert sidecar["check"]["max_abs_difference"] <= 1e-3 and sidecar["check"]["images"] > 0
    assert [m["settings"]["image_size"] for m in sidecar["members"]] == [32, 40]
    age = sidecar["heads"]["age"]
    assert age["kind"] == "regression" and age["unit"] == "years" and age["calibration"] is None
    assert age["conformal"] == {"kind": "interval", "calibrated_on": len(sidecar["trust"]["heads"]["age"]["residuals"]),
                                "grouped_by": None, "scaled_by": None}  # fmt: skip

    folder = copy_test_images(two_runs[0], tmp_path / "new", 6)
    from_runs, from_export = tmp_path / "runs.csv", tmp_path / "export.csv"
    predict(
        compose_app(
            "predict",
            [f"ensemble=[{two_runs[0]},{two_runs[1]}]", "weights=[3,1]", f"input={folder}", f"output={from_runs}"],
        )
    )
    predict(compose_app("predict", [f"run={out}", f"input={folder}", f"output={from_export}"]))
    np.testing.assert_allclose(
        pd.read_csv(from_export)["predicted_age"], pd.read_csv(from_runs)["predicted_age"], atol=1e-3
    )

    expected = pd.read_csv(from_runs).iloc[0]
    with TestClient(build_app(compose_app("serve", [f"run={out}"]))) as client:
        first = sorted(folder.iterdir())[0]
        served = client.post("/predict", files={"file": (first.name, first.read_bytes())}).json()
        assert served["model"]["checkpoints"] == ["member0.onnx", "member1.onnx"]
        assert served["predicted_age"] == pytest.approx(expected["predicted_age"], abs=1e-3)
        assert served["interval"]["level"] == 0.9  # the interval table travels in the sidecar
        assert served["interval"]["lower"] == pytest.approx(expected["lower_90"], abs=1e-3)

    earlier = json.loads((out / "boneage_export.json").read_text())  # as boneage wrote it before exports had a task
    for member in earlier["members"]:
        del member["task"]
    (out / "boneage_export.json").write_text(json.dumps(earlier))
    with pytest.raises(ConfigError, match=r"an export of an earlier boneage.*Export its run again: python -m boneage"):
        load_members(str(out), None, None)


@pytest.mark.slow
def test_torchscript_export_reproduces_the_run(two_runs, tmp_path):
    out = export(compose_app("export", [f"run={two_runs[0]}", "format=torchscript", f"output_dir={tmp_path / 'ts'}"]))
    assert json.loads((out / "boneage_export.json").read_text())["check"]["max_abs_difference"] <= 1e-3
    rows = load_run(two_runs[0]).test_rows.head(4)
    (member,) = load_members(str(out), None, None)
    np.testing.assert_allclose(member.predict(rows), load_run(two_runs[0]).predict(rows), atol=1e-4)


def test_conformal_intervals_cover_their_level_and_linear_calibration_undoes_a_compressed_scale():
    rng = np.random.default_rng(0)
    true = rng.uniform(1, 18, 4000)
    predicted = 2.0 + 0.8 * true + rng.normal(0, 0.8, 4000)  # regression to the mean, plus noise
    rows = pd.DataFrame({"sex": rng.choice(["F", "M"], 4000), "age": true})
    val, test = slice(0, 2000), slice(2000, None)
    trust = fit_value_trust(true[val], predicted[val], rows[val], "linear", "sex", 2.0, head=AgeHead())
    assert trust.slope == pytest.approx(1 / 0.8, rel=0.03)  # corrected = (predicted - 2) / 0.8
    assert trust.intercept == pytest.approx(-2 / 0.8, abs=0.2)
    calibrated = trust.calibrated(predicted[test])
    bins = np.floor(true[test] / 2)
    for edge in (bins.min(), bins.max()):  # the youngest and the oldest: the bias shrinks
        at = bins == edge
        assert np.abs(calibrated[at] - true[test][at]).mean() < np.abs(predicted[test][at] - true[test][at]).mean()
    for level in (0.8, 0.9, 0.95):
        lower, upper = trust.bounds(AgeHead(), calibrated, rows[test], level)
        figures = interval_figures(true[test], lower, upper, {"sex": rows["sex"][test]})
        assert figures["coverage"] == pytest.approx(level, abs=0.025)
        assert all(group["coverage"] == pytest.approx(level, abs=0.04) for group in figures["per_sex"].values())


@pytest.mark.slow
def test_evaluate_reports_interval_coverage_and_calibration_before_and_after(two_runs, tmp_path):
    out = evaluate(compose_app("evaluate", [f"run={two_runs[0]}", "calibrate=linear", f"output_dir={tmp_path / 'c'}"]))
    metrics = json.loads((out / "metrics.json").read_text())
    predictions = pd.read_csv(out / "predictions.csv")
    calibration = metrics["calibration"]
    np.testing.assert_allclose(
        predictions["predicted"],
        # never a negative age: the age head's range starts at 0
        np.clip(calibration["slope"] * predictions["predicted_uncalibrated"] + calibration["intercept"], 0, None),
        atol=1e-5,  # the model's ages are float32, whose steps are 1e-6 to 2e-6 between 8 and 32 years
    )
    assert {"mae_before", "mae_after", "bias_before", "bias_after"} <= set(
        next(iter(calibration["per_age_bin"].values()))
    )
    assert metrics["intervals"]["calibrated_on"].endswith("validation images")
    for level in ("80", "90", "95"):
        inside = predictions["age"].between(predictions[f"lower_{level}"], predictions[f"upper_{level}"])
        assert metrics["intervals"][f"{level}%"]["coverage"] == pytest.approx(inside.mean())
    assert metrics["intervals"]["80%"]["mean_width"] < metrics["intervals"]["95%"]["mean_width"]
    report = (out / "report.md").read_text()
    assert "Prediction intervals (split-conformal" in report and "Linear calibration" in report


@pytest.mark.slow
def test_predict_and_evaluate_flag_an_image_unlike_the_hands(two_runs, tmp_path):
    folder = copy_test_images(two_runs[0], tmp_path / "new", 8)
    checkerboard = np.kron((np.indices((8, 8)).sum(0) % 2) * 255, np.ones((8, 8))).astype(np.uint8)
    cv2.imwrite(str(folder / "zz_checkerboard.png"), checkerboard)
    output = tmp_path / "ages.csv"
    predict(compose_app("predict", [f"run={two_runs[0]}", f"input={folder}", f"output={output}"]))
    table = pd.read_csv(output)
    strange = table["image"].str.endswith("zz_checkerboard.png")
    assert (
        not table.loc[strange, "assessed"].any() and "unlike the images" in table.loc[strange, "not_assessed"].iloc[0]
    )
    assert table.loc[strange, "ood_score"].iloc[0] > table.loc[~strange, "ood_score"].max()

    metrics = json.loads(
        (
            evaluate(compose_app("evaluate", [f"run={two_runs[0]}", f"output_dir={tmp_path / 'e'}"])) / "metrics.json"
        ).read_text()
    )
    checked = metrics["self_validation"]
    assert checked["quantile"] == 0.995 and checked["refused"] == round(checked["share"] * metrics["image"]["n"])
    assert "assessed" in pd.read_csv(tmp_path / "e" / "predictions.csv")


def test_intervals_scaled_by_the_models_spread_keep_their_coverage_where_it_is_unsure():
    rng = np.random.default_rng(1)
    true = rng.uniform(1, 18, 6000)
    spread = rng.uniform(0.2, 2.0, 6000)  # the model's own spread, and the real error's scale
    predicted = true + rng.normal(0, 1, 6000) * spread
    rows = pd.DataFrame({"age": true})
    val, test = slice(0, 3000), slice(3000, None)
    unsure = spread[test] > 1.1
    for scale, spreads in ((None, None), ("tta", spread[val])):
        trust = fit_value_trust(true[val], predicted[val], rows[val], "none", None, 2.0, scale, spreads, AgeHead())
        lower, upper = trust.bounds(
            AgeHead(), predicted[test], rows[test], 0.9, None if scale is None else spread[test]
        )
        covered = (true[test] >= lower) & (true[test] <= upper)
        assert covered.mean() == pytest.approx(0.9, abs=0.02) and lower.min() >= 0  # no negative ages
        if scale is None:
            assert covered[unsure].mean() < 0.85  # one width for all: the unsure images are under-covered
        else:
            assert covered[unsure].mean() == pytest.approx(0.9, abs=0.03)  # scaled: covered where unsure too
            assert (upper - lower)[unsure].mean() > 1.5 * (upper - lower)[~unsure].mean()


@pytest.mark.slow
def test_intervals_scale_with_ensemble_disagreement_and_tta_spread(two_runs, tmp_path):
    ensemble = f"ensemble=[{two_runs[0]},{two_runs[1]}]"
    out = evaluate(
        compose_app(
            "evaluate", [ensemble, "intervals_scale=ensemble", "heatmaps=false", f"output_dir={tmp_path / 'e'}"]
        )
    )
    metrics, predictions = json.loads((out / "metrics.json").read_text()), pd.read_csv(out / "predictions.csv")
    assert metrics["intervals"]["scaled_by"] == "ensemble"
    assert (predictions["upper_90"] - predictions["lower_90"]).std() > 0  # each image its own width
    folder = copy_test_images(two_runs[0], tmp_path / "new", 4)
    output = tmp_path / "ages.csv"
    predict(
        compose_app(
            "predict", [f"run={two_runs[0]}", "tta=zoom", "intervals_scale=tta", f"input={folder}", f"output={output}"]
        )
    )
    written = pd.read_csv(output)
    assert (written["lower_90"] < written["predicted_age"]).all() and (
        written["upper_90"] - written["lower_90"]
    ).std() > 0
    with pytest.raises(ConfigError, match="needs a model trained with loss=mean_variance"):
        evaluate(
            compose_app(
                "evaluate", [f"run={two_runs[0]}", "intervals_scale=distribution", f"output_dir={tmp_path / 'd'}"]
            )
        )
