"""Tasks beyond age: classes, scores and several heads, from the table to the ranked report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient
from hydra.utils import instantiate

from boneage.config.build import build_data_and_module
from boneage.config.errors import ConfigError, DataError
from boneage.datamodules import ImageDataModule, SubjectSplit, TableSource
from boneage.evaluate import evaluate
from boneage.evaluation.ensemble import load_members, predict_members
from boneage.evaluation.exported import SIDECAR
from boneage.evaluation.heatmaps import write_heat_maps
from boneage.evaluation.inference import load_run
from boneage.evaluation.temperature import TEMPERATURE_RANGE
from boneage.evaluation.trust import TaskTrust, fit_value_trust
from boneage.export import export
from boneage.modules.mixup import mix_batch
from boneage.predict import predict
from boneage.report import main as report_main
from boneage.runs.summary import format_summary
from boneage.serve import build_app
from boneage.tasks import AgeHead, ClassifyTask, MultiTask, RegressionHead, ScoreTask
from boneage.tasks.classification import ClassificationHead
from boneage.tasks.losses import ClassificationLoss, FocalLoss, LogitAdjustedLoss, class_weights
from boneage.tasks.ordinal import OrdinalHead
from boneage.train import train
from tests.helpers import TINY, compose_app, run_cli, write_run

EXPERIMENTS = ("imbalanced_v1", "imbalanced_v2", "imbalanced_v3", "iqa_lr_sweep", "tongue_multitask")


def write_table(folder: Path, rows: list[tuple], columns: list[str]) -> TableSource:
    """A label table whose images are small noise squares (one per row), and its source."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for row in rows:
        cv2.imwrite(str(images / row[0]), rng.integers(0, 255, (24, 24), dtype=np.uint8))
    pd.DataFrame(rows, columns=columns).to_csv(folder / "labels.csv", index=False)
    mapping = {"image": "image", "subject": "subject"} | {c: c for c in columns if c not in ("image", "subject")}
    return TableSource(str(folder / "labels.csv"), str(images), mapping)


def classes_table(folder: Path, counts: dict, extra: list[tuple] = ()) -> TableSource:
    rows = [(f"{label}_{i}.png", f"s_{label}_{i}", label) for label, n in counts.items() for i in range(n)]
    return write_table(folder, [*rows, *extra], ["image", "subject", "label"])


def datamodule(source: TableSource, task, tmp_path: Path, **kwargs) -> ImageDataModule:
    split = SubjectSplit(**({"test_fraction": 0.2, "val_fraction": 0.2, "seed": 0} | kwargs))
    return ImageDataModule(source, split, 16, 4, num_workers=0, output_dir=str(tmp_path / "run"), task=task)


# --- losses -------------------------------------------------------------------------------------
def test_class_weights_favour_rare_classes_and_focal_and_logit_adjustment_do_what_they_claim():
    counts = torch.tensor([1000.0, 10.0])
    inverse, effective = class_weights(counts, "inverse"), class_weights(counts, "effective", beta=0.999)
    assert inverse[1] / inverse[0] == pytest.approx(100) and 1 < effective[1] / effective[0] < 100
    logits, targets = torch.randn(8, 2), torch.eye(2)[torch.randint(0, 2, (8,))]
    plain = ClassificationLoss()
    plain.fit_counts(counts)
    torch.testing.assert_close(
        plain(logits, targets), torch.nn.functional.cross_entropy(logits, targets.argmax(1), reduction="none")
    )
    focal = FocalLoss(gamma=0.0)
    focal.fit_counts(counts)
    torch.testing.assert_close(focal(logits, targets), plain(logits, targets))
    sure = torch.tensor([[4.0, -4.0]])
    hard = FocalLoss(gamma=2.0)
    hard.fit_counts(counts)
    assert hard(sure, torch.tensor([[1.0, 0.0]])) < 0.01 * plain(sure, torch.tensor([[1.0, 0.0]]))  # easy: counts less
    adjusted = LogitAdjustedLoss(tau=1.0)
    adjusted.fit_counts(counts)
    even = torch.zeros(1, 2)  # the plain loss is indifferent; the adjusted one punishes the rare class's miss more
    assert adjusted(even, torch.tensor([[0.0, 1.0]])) > adjusted(even, torch.tensor([[1.0, 0.0]]))
    smoothed = ClassificationLoss(label_smoothing=0.2)
    smoothed.fit_counts(counts)
    assert smoothed(sure, torch.tensor([[1.0, 0.0]])) > plain(sure, torch.tensor([[1.0, 0.0]]))


def test_an_ordinal_head_costs_a_distant_class_more_than_a_neighbouring_one_of_the_same_cross_entropy():
    truth = torch.tensor([0, 0])
    neighbour, distant = [0.0, 2.0, -20.0, -20.0], [0.0, -20.0, -20.0, 2.0]  # the same p(true class)
    outputs = torch.tensor([neighbour, distant])
    losses, _ = OrdinalHead(["a", "b", "c", "d"]).losses(outputs, truth)
    assert losses[0] < losses[1]
    plain, _ = OrdinalHead(["a", "b", "c", "d"], distance_weight=0.0).losses(outputs, truth)
    assert plain[0] == pytest.approx(plain[1])
    with pytest.raises(ConfigError, match=r"needs its classes in their order: task.classes="):
        OrdinalHead([])


def test_a_loss_of_the_other_kind_than_its_head_is_refused_by_name():
    with pytest.raises(ConfigError, match=r"classification head's loss must be a classification loss.*not L1Loss"):
        ClassifyTask(loss=torch.nn.L1Loss(reduction="none"))
    with pytest.raises(ConfigError, match=r"regression head's loss must be a regression loss.*not ClassificationLoss"):
        ScoreTask(loss=ClassificationLoss())


def test_losses_named_by_their_former_path_in_an_earlier_runs_config_still_load():
    loss = instantiate({"_target_": "boneage.modules.losses.FocalLoss", "gamma": 1.5})
    assert isinstance(loss, FocalLoss) and loss.gamma == 1.5


def test_mixup_blends_classes_into_soft_targets_that_the_loss_and_metrics_take():
    task = ClassifyTask(classes=["a", "b", "c"])
    batch = {"image": torch.rand(2, 3, 8, 8), "label": torch.tensor([0, 2])}
    mixed = mix_batch(batch, 0.7, torch.tensor([1, 0]), task)
    torch.testing.assert_close(mixed["label"], torch.tensor([[0.7, 0.0, 0.3], [0.3, 0.0, 0.7]]))
    losses, present = task.heads["label"].losses(torch.zeros(2, 3), mixed["label"])
    assert present.all() and torch.isfinite(losses).all()


# --- the table, the split and bad input ------------------------------------------------------------
def test_classes_are_kept_as_written_and_the_split_is_stratified_by_class(tmp_path):
    counts = {0: 40, 3: 10, 12: 10}
    dm = datamodule(classes_table(tmp_path, counts), ClassifyTask(), tmp_path)
    dm.setup()
    assert dm.task.heads["label"].classes == [0, 3, 12]  # integers stay integers, in their order
    table = dm.table
    assert table.groupby("subject")["set"].nunique().max() == 1
    for label, n in counts.items():
        shares = table[table["label"] == label]["set"].value_counts()
        assert shares["test"] == round(0.2 * n) and shares["val"] == round(0.2 * n)
    splits = pd.read_csv(tmp_path / "run" / "splits.csv")
    assert set(splits["label"]) == {0, 3, 12}
    assert dm.summary()["trivial_predictor"]["label"]["test"]["majority_class"] == 0
    words = datamodule(classes_table(tmp_path / "words", {"benign": 5, "Malignant": 5}), ClassifyTask(), tmp_path)
    words.setup()
    assert words.task.heads["label"].classes == ["Malignant", "benign"]  # strings as written


@pytest.mark.parametrize(
    ("counts", "extra", "task", "error", "message"),
    [
        ({"a": 10, "b": 10}, [("odd.png", "s_odd", "c")], ClassifyTask(classes=["a", "b"]), DataError,
         r"(?s)1 bad row.*label 'c' is not one of the declared classes \['a', 'b'\]: 1 row\(s\): 22 \(odd.png\)"),
        ({"a": 10, "b": 10}, [("gap.png", "s_gap", None)], ClassifyTask(), DataError,
         r"label missing \(an empty cell or NaN\): 1 row\(s\): 22 \(gap.png\)"),
        ({"a": 10, "b": 2}, [], ClassifyTask(), ConfigError,
         r"fewer than 3 subjects.*label 'b': 2.*min_subjects_per_bin"),
        ({"a": 12}, [], ClassifyTask(), DataError, r"label column holds 1 class\(es\) \(\['a'\]\)"),
    ],
    ids=["label outside the declared classes", "NaN class", "too few to stratify", "one value"],
)  # fmt: skip
def test_bad_class_columns_are_named_with_rows_and_counts(tmp_path, counts, extra, task, error, message):
    with pytest.raises(error, match=message):
        datamodule(classes_table(tmp_path, counts, extra), task, tmp_path).setup()


def test_rare_classes_kept_for_training_reach_val_where_they_can_and_are_named_missing_from_test(tmp_path, caplog):
    counts = {"a": 10, "b": 10, "pair": 2, "single": 1}
    refused = datamodule(classes_table(tmp_path / "refused", counts), ClassifyTask(), tmp_path)
    with pytest.raises(ConfigError, match=r"'pair': 2, label 'single': 1.*data.split.thin_strata=keep"):
        refused.setup()

    kept = datamodule(classes_table(tmp_path / "kept", counts), ClassifyTask(), tmp_path, thin_strata="keep")
    kept.setup()
    sets = kept.table.groupby("label")["set"].agg(lambda values: sorted(set(values)))
    assert sets["pair"] == ["train", "val"] and sets["single"] == ["train"]
    assert sets["a"] == sets["b"] == ["test", "train", "val"]  # the others are shared out as before
    assert "kept for training" in caplog.text and "'pair': 2" in caplog.text
    coverage = kept.summary()["trivial_predictor"]["label"]["test"]
    assert coverage["classes_present"] == 2 and coverage["classes_missing"] == ["pair", "single"]


def test_on_bad_rows_drop_lists_the_rows_dropped_and_trains_on_the_rest(tmp_path):
    extra = [("gap.png", "s_gap", None), ("odd.png", "s_odd", "c")]
    dm = datamodule(classes_table(tmp_path, {"a": 10, "b": 10}, extra), ClassifyTask(classes=["a", "b"]), tmp_path)
    dm.on_bad_rows = "drop"
    dm.setup()
    dropped = pd.read_csv(tmp_path / "run" / "dropped_rows.csv")
    assert sorted(dropped["file"]) == ["gap.png", "odd.png"] and len(dm.table) == 20


def test_a_class_seen_only_in_val_or_test_is_refused(tmp_path):
    dm = datamodule(classes_table(tmp_path, {"a": 10, "b": 10, "rare": 1}), ClassifyTask(), tmp_path,
                    min_subjects_per_bin=1, test_fraction=0.6)  # fmt: skip
    with pytest.raises(DataError, match=r"class\(es\) in the val/test sets but not in train \('rare': 1 image"):
        dm.setup()


def test_a_missing_target_column_and_a_constant_score_are_named(tmp_path):
    source = classes_table(tmp_path, {"a": 10, "b": 10})
    source.columns = {"image": "image", "subject": "subject", "score": "mos"}
    with pytest.raises(
        DataError, match=r"Column 'mos' \(data.source.columns.score\) is not in .*labels.csv. Its columns"
    ):
        datamodule(source, ScoreTask(), tmp_path).setup()
    rows = [(f"{i}.png", f"s{i}", 3.0) for i in range(20)]
    flat = write_table(tmp_path / "flat", rows, ["image", "subject", "score"])
    with pytest.raises(DataError, match=r"score column has 1 distinct value"):
        datamodule(flat, ScoreTask(), tmp_path).setup()


def test_a_row_missing_one_label_trains_the_other_head_only(tmp_path):
    rows = [(f"{i}.png", f"s{i}", ["x", "y"][i % 2], None if i % 3 == 0 else float(i)) for i in range(30)]
    source = write_table(tmp_path, rows, ["image", "subject", "grade", "score"])
    heads = {"grade": ClassificationHead(required=True), "score": RegressionHead(required=False)}
    task = MultiTask(heads, monitor="val/grade/acc", mode="max")
    dm = datamodule(source, task, tmp_path)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert torch.isnan(batch["score"]).any() and (batch["grade"] >= 0).all()
    outputs = torch.zeros(len(batch["image"]), task.outputs, requires_grad=True)
    losses, present = task.heads["score"].losses(task.split(outputs)["score"], batch["score"])
    assert present.tolist() == (~torch.isnan(batch["score"])).tolist()
    from boneage.modules.model import ImageModel

    ImageModel._mean_loss(losses, None, present).backward()
    gradient = outputs.grad[:, task.outputs - 1]  # the score's output
    assert (gradient[~present] == 0).all() and (gradient[present] != 0).all()


# --- configs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("task", "monitor", "mode", "filename"), [
    ("age", "val/mae", "min", "val_mae{val/mae:.4f}"),
    ("classify", "val/acc", "max", "val_acc{val/acc:.4f}"),
    ("score", "val/srcc", "max", "val_srcc{val/srcc:.4f}"),
])  # fmt: skip
def test_monitor_early_stopping_plateau_and_sweeps_follow_the_task(task, monitor, mode, filename):
    cfg = compose_app("train", [f"task={task}", "scheduler=plateau", "hparams_search=optuna"], with_hydra=True)
    checkpoint, stopping = cfg.callbacks.model_checkpoint, cfg.callbacks.early_stopping
    assert (checkpoint.monitor, checkpoint.mode, stopping.monitor, stopping.mode) == (monitor, mode, monitor, mode)
    assert (cfg.scheduler.monitor, cfg.scheduler.scheduler.mode, cfg.optimized_metric) == (monitor, mode, monitor)
    assert checkpoint.filename.endswith(filename)
    assert cfg.hydra.sweeper.direction == {"min": "minimize", "max": "maximize"}[mode]  # Optuna's direction


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_the_users_plans_compose_as_their_notes_describe(experiment):
    cfg = compose_app("train", [f"experiment={experiment}"])
    expected = {
        "imbalanced_v1": ("efficientnet_b0", "val/acc", "sampler"),
        "imbalanced_v2": ("convnext_base", "val/acc", None),
        "imbalanced_v3": ("tf_efficientnetv2_b2", "val/macro_f1", None),
        "iqa_lr_sweep": ("swin_base_patch4_window7_224", "val/srcc", None),
        "tongue_multitask": ("convnext_base", "val/loss", None),
    }[experiment]
    assert (cfg.model.name, cfg.task.monitor, cfg.data.balance.method) == expected
    if experiment == "iqa_lr_sweep":
        assert cfg.callbacks.early_stopping.patience == 3
    if experiment == "tongue_multitask":
        assert sorted(cfg.task.heads) == ["coat", "shape", "spots"] and cfg.training.freeze_backbone_epochs == 10


# --- end to end ---------------------------------------------------------------------------------------
def tongue_table(folder: Path, data_dir: Path) -> list[str]:
    """Demo hands relabelled as the tongue guide's heads, some labels missing: the data overrides."""
    (labels,) = data_dir.glob("synthetic/hands2_n60_*/labels.csv")
    table = pd.read_csv(labels)
    rng = np.random.default_rng(0)
    table["coat"] = table["stage"]
    table["shape"] = np.where(table["age_years"] > 9, "long", "round")
    table["spots"] = np.where(rng.random(len(table)) < 0.3, None, table["sex"])
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / "tongue.csv", index=False)
    return [
        f"data.source.path={folder / 'tongue.csv'}", f"data.source.image_dir={labels.parent / 'images'}",
        "data.source.columns.subject=subject",
    ]  # fmt: skip


@pytest.mark.slow
def test_the_users_plans_run_with_fast_dev_run(tmp_path, data_dir, compose_train):
    """One process for the five (their networks are large; each run is one batch of each stage)."""
    compose_train(TINY)
    build_data_and_module(compose_train(TINY))  # generates the small demo set the tongue table is made of
    for experiment in EXPERIMENTS:
        data = tongue_table(tmp_path / "tongue", data_dir) if experiment == "tongue_multitask" else []
        demo = [] if data else ["data.source.n_subjects=60", "data.source.image_size=64"]
        small = [] if experiment == "iqa_lr_sweep" else ["model.image_size=32"]  # Swin's windows want 224
        overrides = [
            f"experiment={experiment}", "model.pretrained=false", "trainer=cpu", "+trainer.fast_dev_run=true",
            "model.batch_size=2", "data.num_workers=1", *demo, *small, *data,
        ]  # fmt: skip
        run = tmp_path / experiment
        train(compose_train(overrides, output_dir=run))
        assert json.loads((run / "run.json").read_text())["status"] == "finished", experiment
        shutil.rmtree(run)  # a large network's checkpoints take up to 1 GB: keep one plan's on disk at a time


@pytest.mark.slow
@pytest.mark.parametrize(("experiment", "metric"), [
    ("demo_classify", "val/acc"), ("demo_score", "val/srcc"), ("demo_multitask", "val/stage/acc"),
    ("demo task=ordinal task.classes=[infant,child,adolescent,mature]", "val/acc"),  # README's added task
])  # fmt: skip
def test_each_task_trains_then_evaluates_predicts_exports_serves_and_ranks(tmp_path, data_dir, experiment, metric):
    sweep = tmp_path / "sweep"
    run = sweep / "run"
    args = [*TINY, *f"experiment={experiment}".split(), "trainer.max_epochs=2", "data.split.min_subjects_per_bin=2",
            f"hydra.run.dir={run}"]  # fmt: skip
    result = run_cli(args, tmp_path, data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((run / "run.json").read_text())
    losses = [row["train/loss"] for row in record["history"]]
    assert losses[-1] < losses[0]  # it learns
    assert metric in record["metrics"] and record["best"][metric] == max(row[metric] for row in record["history"])
    assert "trivial_predictor" in record["data"] and "predictor always answers the training set's" in result.stdout
    if experiment == "demo_classify":  # a resumed classifier continues with its classes and its history
        resumed = run_cli([str(run), "trainer.max_epochs=3"], tmp_path, data_dir, app="boneage.resume")
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        record = json.loads((run / "run.json").read_text())
        assert [row["epoch"] for row in record["history"]] == [0, 1, 2] and record["status"] == "finished"

    task = load_run(run).task
    tempered = any(head.answers_classes for head in task.heads.values())
    calibrated = f"calibrate={'temperature' if tempered else 'none'}"  # a score run has no class head to temper
    out = evaluate(compose_app("evaluate", [f"run={run}", f"output_dir={tmp_path / 'eval'}", calibrated]))
    metrics = json.loads((out / "metrics.json").read_text())
    evaluated = pd.read_csv(out / "predictions.csv")
    for name, figures in per_head(metrics, task).items():
        if "per_class" in figures:
            assert (out / f"confusion_{name}.csv").is_file() and (out / f"confusion_{name}.png").is_file()
            confusion = pd.read_csv(out / f"confusion_{name}.csv", index_col=0)
            assert confusion.to_numpy().sum() == figures["n"] == evaluated[name].notna().sum()
            assert np.trace(confusion.to_numpy()) / figures["n"] == pytest.approx(figures["acc"])
            assert figures["prediction_sets"]["90%"]["mean_size"] >= 1
            temperature = figures["calibration"]
            assert TEMPERATURE_RANGE[0] <= temperature["temperature"] <= TEMPERATURE_RANGE[1]
            assert 0 <= temperature["ece_after"] <= 1 and 0 <= temperature["adaptive_ece_before"] <= 1
            assert (out / f"reliability_{name}.png").is_file() and "ECE" in (out / "report.md").read_text()
        elif name == "age":  # a multi-task age head: the clinical figures of a bone-age run
            assert {"image", "subject", "mae_per_age_bin", "intervals"} <= set(figures)
        else:
            assert {"srcc", "plcc", "krcc", "mean_predictor_mae"} <= set(figures)
    if "ordinal" in experiment:  # the added head's own figure, beside the classification's
        assert 0 <= metrics["mae_steps"] <= 3
    if experiment == "demo_classify":  # the tempered probabilities written are still distributions
        np.testing.assert_allclose(evaluated.filter(regex=r"^p_").sum(axis=1), 1, atol=1e-6)

    images = tmp_path / "new"
    images.mkdir()
    for path in evaluated["image"].head(4):
        (images / Path(path).name).write_bytes(Path(path).read_bytes())
    output = tmp_path / "predictions.csv"
    predict(compose_app("predict", [f"run={run}", f"input={images}", f"output={output}", calibrated]))
    predicted = pd.read_csv(output)
    assert len(predicted) == 4
    probabilities = predicted.filter(regex=r"^p_")
    if len(probabilities.columns):
        np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-4)
    exported_and_served_as_the_run_predicts(run, images, predicted, calibrated, tmp_path)

    report_main([str(sweep)])
    report = pd.read_csv(sweep / "report.csv")
    column = metric.replace("/", "_")
    assert report.loc[0, column] == pytest.approx(record["metrics"][metric])
    assert f"Runs ranked by val {column.removeprefix('val_')}" in (sweep / "report.md").read_text()


def exported_and_served_as_the_run_predicts(
    run: Path, images: Path, predicted: pd.DataFrame, calibrated: str, tmp_path: Path
) -> None:
    """The run's ONNX export describes every head, predicts what the run predicted (tempered
    probabilities, prediction sets, intervals), and serves each head's answer."""
    exported = export(compose_app("export", [f"run={run}", f"output_dir={tmp_path / 'export'}", calibrated]))
    sidecar = json.loads((exported / SIDECAR).read_text())
    task = load_run(run).task
    assert {name: head["kind"] for name, head in sidecar["heads"].items()} == {
        name: head.kind for name, head in task.heads.items()
    }
    for name, head in task.heads.items():
        assert sidecar["heads"][name].get("classes") == getattr(head, "classes", None)
        assert sidecar["heads"][name]["unit"] == head.unit  # a multi-task age head: years; its quality: points
        described, classes = sidecar["heads"][name], head.answers_classes
        assert described["conformal"]["kind"] == ("set" if classes else "interval")
        assert described["conformal"]["calibrated_on"] > 0
        assert (described["calibration"] or {}).get("kind") == ("temperature" if classes else None)
    from_export = tmp_path / "from_export.csv"
    predict(compose_app("predict", [f"run={exported}", f"input={images}", f"output={from_export}"]))
    pd.testing.assert_frame_equal(pd.read_csv(from_export), predicted, check_exact=False, atol=1e-4)  # flags too
    image = Path(predicted["image"][0])
    with TestClient(build_app(compose_app("serve", [f"run={exported}"]))) as client:
        answer = client.post("/predict", files={"file": (image.name, image.read_bytes())}).json()
    row = predicted.iloc[0]
    for name, head in per_head(answer, task).items():
        prefix = task.column_prefix(name)
        if task.heads[name].answers_classes:
            assert str(head["class"]) == str(row[f"predicted_{name}"])
            assert sum(head["probabilities"].values()) == pytest.approx(1, abs=1e-4)
            assert head["probability"] == pytest.approx(row[f"{name}_probability"], abs=1e-4)
            assert "|".join(map(str, head["set"]["classes"])) == str(row[f"{prefix}set_90"]).replace("nan", "")
        else:
            assert head[f"predicted_{name}"] == pytest.approx(row[f"predicted_{name}"], abs=1e-4)
            assert head["interval"]["lower"] == pytest.approx(row[f"{prefix}lower_90"], abs=1e-4)
            assert head["interval"]["upper"] == pytest.approx(row[f"{prefix}upper_90"], abs=1e-4)


def per_head(answer: dict, task) -> dict:
    """Each head's part of a metrics.json or a served answer: under its name where a task has
    several heads, the whole where it has one."""
    return answer["heads"] if len(task.heads) > 1 else {task.names[0]: answer}


def test_a_classifier_ensemble_averages_probabilities_over_members_and_tta_views(tmp_path, data_dir):
    runs = [
        write_run(tmp_path / f"seed{seed}", ["experiment=demo_classify", f"seed={seed}", "data.split.seed=7"])
        for seed in (1, 2)
    ]
    members = load_members(None, [str(run) for run in runs], None)
    rows = members[0].rows_of("test").head(6)
    ensemble = predict_members(members, rows, ["zoom"]).combined
    each = [member.predict(rows, ["zoom"]) for member in members]
    np.testing.assert_allclose(ensemble, np.mean(each, axis=0), atol=1e-6)
    np.testing.assert_allclose(ensemble.sum(axis=1), 1, atol=1e-5)  # an average of probabilities
    views = members[0].predict_views(rows, ["zoom"])
    assert len(views) > 1 and np.allclose(each[0], views.mean(axis=0))
    out = evaluate(
        compose_app("evaluate", [f"ensemble=[{runs[0]},{runs[1]}]", "tta=[zoom]", f"output_dir={tmp_path / 'eval'}"])
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["runs"]) == 2 and metrics["tta"] == ["zoom"] and metrics["n"] > 0
    exported = export(compose_app("export", [f"ensemble=[{runs[0]},{runs[1]}]", "format=torchscript",
                                             f"output_dir={tmp_path / 'ts'}"]))  # fmt: skip
    from_export = predict_members(load_members(str(exported), None, None), rows, ["zoom"]).combined
    np.testing.assert_allclose(from_export, ensemble, atol=1e-5)
    write_heat_maps(members[0], rows.head(2), tmp_path / "maps")  # Grad-CAM of the predicted class
    assert [cv2.imread(str(path)).shape[:2] for path in sorted((tmp_path / "maps").iterdir())] == [(32, 32)] * 2


def test_a_class_missing_from_val_or_test_is_named_and_the_class_averages_say_over_how_many():
    task = ClassifyTask(classes=["a", "b", "rare"])
    head = task.heads["label"]
    train = pd.Series(["a", "a", "b", "rare"])
    trivial = {"label": {"val": head.trivial(train, pd.Series(["a", "b", "rare"])),
                         "test": head.trivial(train, pd.Series(["a", "b", "b"]))}}  # fmt: skip
    assert trivial["label"]["val"]["classes_missing"] == [] and trivial["label"]["val"]["classes_present"] == 3
    assert trivial["label"]["test"]["classes_missing"] == ["rare"] and trivial["label"]["test"]["classes_present"] == 2
    (table,) = task.summary(trivial)
    assert table.notes[1:] == [
        "test has no image of label class(es) 'rare': its balanced_acc and macro_f1 are means over the 2 of 3 "
        "classes it holds"
    ]
    summary = format_summary({"val/acc": 0.9, "test/acc": 0.8}, [table._replace(columns=[("acc", "acc")])], None, "run")
    assert summary.splitlines()[3].split()[-1] == "2"  # the test set's classes present, as a count


def test_the_multi_task_summary_prints_one_table_per_head_each_under_its_name():
    classes = ["infant", "child", "adolescent", "mature"]
    heads = {"stage": ClassificationHead(classes=classes), "quality": RegressionHead(), "age": AgeHead()}
    task = MultiTask(heads, monitor="val/stage/acc", mode="max")
    train = {"stage": pd.Series(classes * 3), "quality": pd.Series([10.0, 50.0, 90.0]), "age": pd.Series([2.0, 9.0])}
    trivial = {name: {stage: head.trivial(train[name], train[name]) for stage in ("val", "test")}
               for name, head in heads.items()}  # fmt: skip
    metrics = {f"{stage}/{name}/{metric}": 0.5 for stage in ("val", "test") for name, head in heads.items()
               for metric in head.metric_names}  # fmt: skip
    lines = format_summary(metrics, task.summary(trivial), None, "run").splitlines()
    for name in heads:
        header = lines.index(name) + 1
        assert lines[header + 1].startswith("val") and lines[header + 2].startswith("test")
    assert max(len(line) for line in lines) <= 120
    assert "(errors in years; the mean predictor always answers the training set's mean age)" in lines


@pytest.mark.slow
def test_a_multi_task_age_head_gets_the_calibration_intervals_and_clinical_report_of_an_age_run(tmp_path, data_dir):
    """The multi-task demo (make train-multitask, three epochs): its age head is evaluated,
    predicted, exported and served as a bone-age run's age is."""
    run = tmp_path / "run"
    result = run_cli(["experiment=demo_multitask", "trainer.max_epochs=3", f"hydra.run.dir={run}"], tmp_path, data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    out = evaluate(compose_app("evaluate", [f"run={run}", "calibrate=[linear,temperature]", "intervals_by=sex",
                                            "heatmaps=false", f"output_dir={tmp_path / 'eval'}"]))  # fmt: skip
    age = json.loads((out / "metrics.json").read_text())["heads"]["age"]
    assert {"image", "subject", "mae_per_age_bin", "mae_per_sex"} <= set(age) and age["unit"] == "years"
    assert age["calibration"]["method"] == "linear" and len(age["calibration"]["per_age_bin"]) >= 8
    assert age["intervals"]["by"] == "sex" and set(age["intervals"]["90%"]["per_sex"]) == {"F", "M"}
    report = (out / "report.md").read_text()
    assert "## age" in report and "### MAE per age bin" in report and "### Linear calibration" in report
    assert (out / "bland_altman_age.png").is_file() and (out / "mae_per_age_bin_age.png").is_file()
    assert age["intervals"]["90%"]["coverage"] == pytest.approx(0.9, abs=0.04)  # on the test subjects' images

    table = pd.read_csv(run / "splits.csv").query("set == 'test'").head(8)
    table.assign(chronological=table["age"] + 1.0)[["image", "sex", "chronological"]].to_csv(tmp_path / "t.csv")
    keys = ["calibrate=linear", "intervals_by=age_bin"]
    output = tmp_path / "predicted.csv"
    predict(compose_app("predict", [f"run={run}", f"input={tmp_path / 't.csv'}", "image_dir=/", *keys,
                                    "chronological_age_column=chronological", f"output={output}"]))  # fmt: skip
    predicted = pd.read_csv(output)
    assert (predicted["age_unit"] == "years").all() and (predicted["quality_unit"] == "points").all()
    assert predicted["age_development_90"].isin(["advanced", "within", "delayed"]).all()
    assert predicted["quality_lower_90"].min() >= 0 and predicted["quality_upper_90"].max() <= 100  # its range
    exported = export(compose_app("export", [f"run={run}", *keys, f"output_dir={tmp_path / 'export'}"]))
    described = json.loads((exported / SIDECAR).read_text())["heads"]["age"]
    assert described["calibration"]["kind"] == "linear" and described["conformal"]["grouped_by"] == "age_bin"
    image = Path(table["image"].iloc[0])
    with TestClient(build_app(compose_app("serve", [f"run={exported}"]))) as client:
        answer = client.post("/predict", files={"file": (image.name, image.read_bytes())}).json()["heads"]["age"]
    first = predicted.iloc[0]
    assert answer["unit"] == "years"
    assert answer["predicted_age"] == pytest.approx(first["predicted_age"], abs=1e-3)
    assert answer["interval"]["lower"] == pytest.approx(first["age_lower_90"], abs=1e-3)


def test_a_regression_head_with_a_declared_range_clips_its_answers_and_intervals_to_it():
    head = RegressionHead(name="quality", range=[0, 100])
    rng = np.random.default_rng(0)
    true = rng.uniform(0, 100, 1000)
    predicted = true + rng.normal(0, 15, 1000)
    rows = pd.DataFrame(index=range(3))
    trust = fit_value_trust(true, predicted, pd.DataFrame(index=range(1000)), "none", None, 1.0, head=head)
    answers = TaskTrust({"quality": trust}).applied(
        ScoreTask(target="quality", range=[0, 100]), np.array([105.0, -3, 50]), rows
    )
    np.testing.assert_allclose(answers["quality"][:, 0], [100, 0, 50])
    lower, upper = trust.bounds(head, answers["quality"][:, 0], rows, 0.9)
    assert lower.min() >= 0 and upper.max() <= 100 and upper[2] - lower[2] > 30  # only the ends are cut
    with pytest.raises(ConfigError, match=r"quality head's range must be \[low, high\] with low < high"):
        RegressionHead(name="quality", range=[100, 0])
