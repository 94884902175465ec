"""Experiment batches as multiruns: expansion, parallel jobs, failures, Optuna, the report."""

from __future__ import annotations

import json
import multiprocessing
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from boneage.report import build_table
from boneage.report import main as report_main
from boneage.search.storage import open_storage
from tests.helpers import CONF_DIR, TINY, ran_at_once, run_cli
from tests.pruners import PRUNE_TRIAL_ZERO
from tests.slot_claim import claim_a_slot

EXPECTED_JOBS = {
    "baseline": 1, "demo": 1, "features": 4, "dropout": 5, "weight_decay": 3,
    "lr": 3, "loss": 3, "batch_size": 3, "architectures": 6,
    "demo_classify": 1, "demo_score": 1, "demo_multitask": 1,
    "imbalanced_v1": 1, "imbalanced_v2": 1, "imbalanced_v3": 1, "iqa_lr_sweep": 4, "tongue_multitask": 1,
}  # fmt: skip


def sweep_jobs(params) -> list[list[str]]:
    """Hydra's own expansion of hydra.sweeper.params into the jobs' override lists."""
    overrides = OverridesParser.create().parse_overrides([f"{key}={value}" for key, value in params.items()])
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def records(sweep_dir: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(sweep_dir.glob("*/run.json"))]


def test_every_experiment_has_a_test_here():
    assert set(EXPECTED_JOBS) == {path.stem for path in (CONF_DIR / "experiment").glob("*.yaml")}


@pytest.mark.parametrize(("experiment", "n_jobs"), EXPECTED_JOBS.items())
def test_experiment_expands_into_its_jobs_and_each_job_composes(compose_train, experiment, n_jobs):
    compose_train([f"experiment={experiment}"])
    jobs = sweep_jobs(HydraConfig.get().sweeper.params or {})
    assert len(jobs) == n_jobs
    for job in jobs:
        job_cfg = compose_train([f"experiment={experiment}", *job])
        OmegaConf.to_container(job_cfg, resolve=True)


def test_architecture_batch_keeps_each_models_native_size_and_batch(compose_train):
    job = compose_train(["experiment=architectures", "model=efficientnet_b2"])
    assert (job.data.image_size, job.data.batch_size, job.model.dropout) == (260, 64, 0.3)
    assert job.data.clahe is True and job.optimizer.weight_decay == 1e-5


def test_a_later_batch_takes_an_earlier_winner_by_override(compose_train):
    job = compose_train(["experiment=weight_decay", "model.dropout=0.3"])
    assert job.model.dropout == 0.3 and job.optimizer.lr == 1e-4


@pytest.mark.slow
def test_device_slots_give_concurrent_workers_disjoint_gpus(tmp_path):
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=claim_a_slot, args=(str(tmp_path), barrier, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert sorted(results.get(timeout=1) for _ in workers) == ["0,1", "2,3"]


TWO_JOBS = [*TINY, "trainer.max_epochs=2", "model.dropout=0.0,0.5"]


@pytest.fixture(scope="module")
def parallel_sweep(tmp_path_factory, data_dir) -> Path:
    """A 2-job sweep run by launcher=parallel (2 jobs at once on the CPU)."""
    root = tmp_path_factory.mktemp("parallel")
    sweep_dir = root / "multirun" / "dropout"
    args = ["-m", *TWO_JOBS, "launcher=parallel", "launcher.cpu_jobs=2", f"hydra.sweep.dir={sweep_dir}"]
    result = run_cli(args, root, data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return sweep_dir


@pytest.mark.slow
def test_parallel_sweep_runs_jobs_at_once_and_the_report_ranks_them(parallel_sweep, capsys):
    sweep_dir = parallel_sweep
    first, second = records(sweep_dir)
    assert first["status"] == second["status"] == "finished"
    start = [datetime.fromisoformat(r["started_at"]) for r in (first, second)]
    end = [datetime.fromisoformat(r["ended_at"]) for r in (first, second)]
    assert start[0] < end[1] and start[1] < end[0], "the two jobs did not overlap in time"

    report_main([str(sweep_dir), "--baseline", "dropout/0"])
    table = pd.read_csv(sweep_dir / "report.csv")
    assert table["val_mae"].is_monotonic_increasing and len(table) == 2
    assert set(table["dropout"]) == {0.0, 0.5}
    assert (sweep_dir / "report.md").is_file() and (sweep_dir / "mae_vs_dropout.png").is_file()
    baseline_row = table[table["run"] == "dropout/0"].iloc[0]
    assert baseline_row["val_mae_change"] == 0
    assert "dropout/1" in capsys.readouterr().out
    for job in ("0", "1"):  # TensorBoard on the sweep folder: every job with its hparams and final metrics
        events = EventAccumulator(str(sweep_dir / job / "tensorboard")).Reload()
        assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
        assert events.Scalars("hp/val_mae")[-1].value == pytest.approx(
            table.set_index("run").loc[f"dropout/{job}", "val_mae"]
        )


@pytest.mark.slow
def test_submitit_launcher_runs_a_sweep_whose_records_and_report_match_a_parallel_one(
    tmp_path, data_dir, parallel_sweep
):
    """The SLURM path end to end: Hydra's submitit plugin and submitit, with the local executor."""
    sweeps = {"slurm_local": tmp_path / "slurm_local", "parallel": parallel_sweep}
    args = ["-m", *TWO_JOBS, "launcher=slurm_local", f"hydra.sweep.dir={sweeps['slurm_local']}"]
    result = run_cli(args, tmp_path, data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    submitted, parallel = (records(sweeps[name]) for name in ("slurm_local", "parallel"))
    assert [r["status"] for r in submitted] == ["finished", "finished"]
    assert [r["config"]["model"]["dropout"] for r in submitted] == [0.0, 0.5]
    assert list((sweeps["slurm_local"] / ".submitit").iterdir())  # submitit ran them, leaving its job folders
    for one, other in zip(submitted, parallel, strict=True):  # same seed, same data: the same runs
        assert one["metrics"] == pytest.approx(other["metrics"], abs=1e-4)
    tables = []
    for sweep in sweeps.values():
        report_main([str(sweep)])
        tables.append(pd.read_csv(sweep / "report.csv"))
    assert tables[0][["status", "dropout"]].equals(tables[1][["status", "dropout"]])


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [[], ["launcher=parallel"]], ids=["sequential", "parallel"])
def test_a_failing_job_does_not_stop_the_others_and_is_reported_as_itself(tmp_path, data_dir, capsys, launcher):
    sweep_dir = tmp_path / "multirun" / "models"
    args = [*TINY, *launcher, "model.name=not_a_timm_model,test_resnet", f"hydra.sweep.dir={sweep_dir}"]
    result = run_cli(["-m", *args], tmp_path, data_dir)
    assert result.returncode != 0  # the sweep reports its failure...
    assert "model.name='not_a_timm_model' is not a timm model" in result.stderr  # as itself, a message
    assert "Traceback" not in result.stderr
    failed, finished = records(sweep_dir)  # ...after running every job
    assert failed["status"] == "failed" and "not a timm model" in failed["error"]
    assert finished["status"] == "finished"

    report_main([str(sweep_dir)])
    printed = capsys.readouterr().out
    assert "not finished: models/0: failed: ConfigError: model.name='not_a_timm_model'" in printed
    assert pd.read_csv(sweep_dir / "report.csv")["status"].tolist() == ["finished", "failed"]


@pytest.mark.slow
def test_a_pruned_trials_slot_starts_the_next_trial_before_its_sibling_ends_and_a_rerun_resumes(tmp_path, data_dir):
    """Two slots under launcher=parallel, each job reporting every epoch to the study's journal from
    its own process. Trial 0 is pruned at its first epoch: it stops there with its checkpoints and
    history, and its slot starts trial 2 while trial 1 still trains. A second command continues
    the same study."""
    args = [*TINY, "hparams_search=optuna", "hydra.sweeper.sampler.n_startup_trials=1", "trainer.max_epochs=12"]
    at_once = ["hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=2", "launcher=parallel", "launcher.cpu_jobs=2"]
    for search in ([*PRUNE_TRIAL_ZERO, *at_once], ["hydra.sweeper.n_trials=1"]):  # the second continues the study
        result = run_cli(["-m", *args, *search], tmp_path, data_dir)
        assert result.returncode == 0, result.stderr[-3000:]
    import optuna

    study = optuna.load_study(study_name="demo", storage=open_storage(str(tmp_path / "multirun/demo/optuna.journal")))
    assert [t.state.name for t in study.trials] == ["PRUNED", "COMPLETE", "COMPLETE", "COMPLETE"]
    assert list(study.trials[0].intermediate_values) == [0]
    reported = study.trials[1].intermediate_values
    assert list(reported) == list(range(12))  # one report per epoch trained
    assert list(reported.values()) == sorted(reported.values(), reverse=True)  # its best val MAE so far
    assert reported[11] == pytest.approx(study.trials[1].value)  # which is the trial's result at the end
    assert {"optimizer.lr", "optimizer.weight_decay", "model.dropout", "loss"} <= set(study.best_params)
    first, second = sorted(tmp_path.glob("multirun/demo/*/"))
    pruned, sibling, successor = (json.loads((first / str(job) / "run.json").read_text()) for job in range(3))
    assert pruned["status"] == "pruned" and pruned["pruned"]["epoch"] == 0
    assert (first / "0" / "checkpoints" / "last.ckpt").is_file() and len(pruned["history"]) == 1
    assert sibling["status"] == "finished" and ran_at_once(pruned, sibling)
    assert successor["started_at"] < sibling["ended_at"]  # the pruned trial's slot did not wait for it
    assert len(list(second.glob("*/run.json"))) == 1


def test_report_survives_runs_without_or_with_broken_records(tmp_path):
    (tmp_path / "sweep" / "0" / ".hydra").mkdir(parents=True)
    (tmp_path / "sweep" / "0" / ".hydra" / "config.yaml").write_text("seed: 1\n")
    (tmp_path / "sweep" / "1").mkdir()
    (tmp_path / "sweep" / "1" / "run.json").write_text('{"status": "runn')
    finished = {"status": "finished", "metrics": {"val/mae": 1.5}, "config": {"model": {"name": "resnet50"}}}
    (tmp_path / "sweep" / "2").mkdir()
    (tmp_path / "sweep" / "2" / "run.json").write_text(json.dumps(finished))
    table = build_table([tmp_path / "sweep"])
    assert table["status"].tolist() == ["finished", "no record", "unreadable"]
    assert table["run"].tolist() == ["sweep/2", "sweep/0", "sweep/1"]


def test_report_compares_architectures_on_error_size_and_speed(tmp_path):
    for job, (model, mae, parameters, ms) in enumerate(
        [("resnet50", 1.2, 25e6, 9.0), ("convnext_tiny", 1.1, 28e6, 12.0)]
    ):
        record = {
            "status": "finished",
            "metrics": {"val/mae": mae, "test/mae": mae + 0.1},
            "config": {"model": {"name": model, "dropout": 0.3}},
            "model": {"parameters": parameters},
            "speed": {"inference_ms_per_image": ms},
        }
        (tmp_path / "arch" / str(job)).mkdir(parents=True)
        (tmp_path / "arch" / str(job) / "run.json").write_text(json.dumps(record))
    report_main([str(tmp_path / "arch")])
    table = pd.read_csv(tmp_path / "arch" / "report.csv")
    assert table["model"].tolist() == ["convnext_tiny", "resnet50"]
    assert table["inference_ms"].tolist() == [12.0, 9.0]
    assert (tmp_path / "arch" / "architectures.png").is_file()
    assert not (tmp_path / "arch" / "mae_vs_dropout.png").exists()  # dropout did not vary


def test_report_cli_names_a_missing_folder(tmp_path):
    with pytest.raises(SystemExit):
        report_main([str(tmp_path / "absent")])
