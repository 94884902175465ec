"""Training end to end on the demo data: it runs, it learns, it resumes, it records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from boneage.config.errors import ConfigError
from boneage.evaluation.inference import load_run
from boneage.train import train
from tests.helpers import TINY, record_of, run_cli


@pytest.mark.slow
def test_short_training_learns_and_beats_the_mean_predictor(compose_train, tmp_path, capsys):
    overrides = [
        "experiment=demo",
        "data.source.n_subjects=150",
        "data.split.stratum_width=4",
        "model.image_size=48",
        "trainer.max_epochs=8",
        "callbacks.progress_bar.refresh_rate=0",
    ]
    metrics = train(compose_train(overrides)).metrics
    record = record_of(tmp_path / "run")
    val_mae = [row["val/mae"] for row in record["history"]]
    baseline = record["data"]["mean_predictor_mae"]
    assert val_mae[-1] < val_mae[0]
    assert metrics["val/mae"] < 0.75 * baseline["val"]
    assert metrics["test/mae"] < 0.75 * baseline["test"]
    assert "mean-predictor MAE" in capsys.readouterr().out


@pytest.mark.slow
def test_run_directory_holds_record_split_checkpoints_curves_and_trackers(compose_train, tmp_path):
    metrics = train(
        compose_train([*TINY, "trainer.max_epochs=2", "model.dropout=0.3", "logger=[tensorboard,mlflow,wandb]"])
    ).metrics
    run_dir = tmp_path / "run"
    record = record_of(run_dir)
    assert record["status"] == "finished" and record["error"] is None
    assert record["environment"]["packages"]["torch"] == torch.__version__.split("+")[0]
    assert record["training"]["effective_batch_size"] == 16 and record["training"]["world_size"] == 1
    sets = record["data"]["split"]["sets"]
    assert sum(s["subjects"] for s in sets.values()) == record["data"]["subjects"] == 60
    assert [row["epoch"] for row in record["history"]] == [0, 1]
    assert record["metrics"]["test/mae"] == pytest.approx(metrics["test/mae"])
    assert record["config"]["model"]["name"] == "test_resnet"

    best = Path(record["best_checkpoint"])
    assert best.parent == run_dir / "checkpoints" and best.name.startswith("epoch")
    assert best.name == f"epoch{record['best']['epoch']:03d}-val_mae{record['best']['val/mae']:.4f}.ckpt"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    for name in ("splits.csv", "history.csv", "training_curves.png"):
        assert (run_dir / name).is_file(), name

    assert_tensorboard_reads_well(run_dir, metrics)
    assert_mlflow_holds_the_run(tmp_path / "mlflow.db", run_dir, metrics)
    assert list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))  # W&B offline: `wandb sync` uploads it


def assert_tensorboard_reads_well(run_dir: Path, metrics: dict) -> None:
    """HParams: the settings that matter, the overridden ones, no instantiation keys; Images: the
    augmented inputs and the test's predicted-vs-true plot."""
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0}).Reload()
    assert "val/mae" in events.Tags()["scalars"]
    assert events.Scalars("hp/val_mae")[-1].value == pytest.approx(metrics["val/mae"])
    start = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    shown = set(plugin_data_pb2.HParamsPluginData.FromString(start).session_start_info.hparams)
    assert {
        "model.name",
        "optimizer.lr",
        "optimizer.weight_decay",
        "model.dropout",
        "loss",
        "data.batch_size",
        "data.image_size",
        "data.clahe",
    } <= shown
    assert {"trainer.max_epochs", "data.source.n_subjects"} <= shown  # overridden for this run
    assert not [name for name in shown if "_target_" in name or "_convert_" in name]
    assert len(shown) < 30
    assert set(events.Tags()["images"]) == {"inputs/augmented_training_batch", "test/predicted_vs_true"}


def assert_mlflow_holds_the_run(store: Path, run_dir: Path, metrics: dict) -> None:
    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    (run,) = client.search_runs([client.get_experiment_by_name("demo").experiment_id])  # named by task_name
    assert run.data.params["model.name"] == "test_resnet" and run.data.params["model.dropout"] == "0.3"
    assert run.data.metrics["hp/val_mae"] == pytest.approx(metrics["val/mae"])
    assert run.data.tags["run_dir"] == str(run_dir)


@pytest.mark.slow
def test_resume_from_last_checkpoint_continues_the_epoch_count(compose_train, tmp_path):
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    train(compose_train([*TINY, "trainer.max_epochs=2"], output_dir=first_dir))
    last = first_dir / "checkpoints" / "last.ckpt"
    train(compose_train([*TINY, "trainer.max_epochs=4", f"ckpt_path={last}"], output_dir=second_dir))

    history = record_of(second_dir)["history"]
    assert [row["epoch"] for row in history] == [0, 1, 2, 3]  # the first run's epochs came along
    steps = [row["step"] for row in history]
    assert steps == sorted(steps) and len(set(steps)) == 4
    resumed = torch.load(second_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["epoch"] == 3


def test_a_failing_run_is_recorded_as_failed_with_its_error(compose_train, tmp_path):
    with pytest.raises(ConfigError):
        train(compose_train([*TINY, "data.source.n_subjects=2"]))
    record = record_of(tmp_path / "run")
    assert record["status"] == "failed"
    assert record["error"].startswith("ConfigError: ") and "data.split." in record["error"]


@pytest.mark.slow
def test_ddp_runs_two_ranks_in_one_folder_and_scores_each_image_once_as_one_device_does(tmp_path, data_dir):
    """Two ranks on sets of odd size: no image is repeated to even the ranks out. Neither leaves its
    loader workers' files in the temporary directory."""
    run_dir, temporary = tmp_path / "outputs" / "ddp", tmp_path / "tmp"
    temporary.mkdir()
    result = run_cli([*TINY, "trainer=ddp_sim", f"hydra.run.dir={run_dir}"], tmp_path, data_dir, TMPDIR=str(temporary))
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(temporary.glob("boneage-worker-stacks/*")) == []
    record = record_of(run_dir)  # both ranks in one run directory
    assert record["training"]["world_size"] == 2 and record["training"]["strategy"] == "DDPStrategy"
    assert record["training"]["effective_batch_size"] == 2 * 16
    assert (run_dir / "train.log").is_file() and (run_dir / "train_ddp_process_1.log").is_file()
    assert [p.name for p in (tmp_path / "outputs").iterdir()] == ["ddp"]  # no second run folder
    splits = pd.read_csv(run_dir / "splits.csv")
    sizes = splits["set"].value_counts()
    assert sizes["val"] % 2 == 1 and sizes["test"] % 2 == 1  # padding would have repeated one image
    run, metrics = load_run(run_dir), record_of(run_dir)["metrics"]
    for name in ("val", "test"):
        rows = splits[splits["set"] == name]
        single_device_mae = float(np.abs(run.predict(rows) - rows["age"].to_numpy()).mean())
        assert metrics[f"{name}/mae"] == pytest.approx(single_device_mae, abs=1e-4), name


@pytest.mark.slow
def test_plateau_schedule_lowers_the_lr_when_val_mae_stops_improving(compose_train, tmp_path):
    # A relative threshold of 10 counts no epoch as an improvement: with patience 0 the lr halves each epoch.
    plateau = ["scheduler=plateau", "scheduler.scheduler.patience=0", "+scheduler.scheduler.threshold=10"]
    train(compose_train([*TINY, *plateau, "trainer.max_epochs=3"]))
    record = record_of(tmp_path / "run")
    assert record["training"]["lr_scheduler"] == "ReduceLROnPlateau"
    lrs = [row["lr"] for row in record["history"]]
    assert lrs == pytest.approx([3e-3, 1.5e-3, 0.75e-3])


@pytest.mark.slow
def test_a_bf16_mixed_precision_step_runs_on_cpu(compose_train, tmp_path):
    metrics = train(compose_train([*TINY, "trainer.precision=bf16-mixed", "debug=fdr"])).metrics
    assert np.isfinite(metrics["val/mae"])
    assert record_of(tmp_path / "run")["training"]["precision"] == "bf16-mixed"
