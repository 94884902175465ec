"""Unattended nights, sweeps: a DDP sweep with loader workers finishes every job, a failing rank
fails its job alone, a killed sweep resumes to what an uninterrupted one records."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import DictConfig, OmegaConf

from boneage.config.errors import ConfigError
from boneage.report import main as report_main
from boneage.runs.records import RunRecord
from boneage.runs.sweep_resume import continue_sweep_job
from boneage.search.storage import open_storage
from tests.helpers import TINY, record_of, run_cli, start_cli, wait_until_gone


@pytest.mark.slow
def test_a_three_job_ddp_sweep_with_loader_workers_finishes_every_job(tmp_path, data_dir):
    """The sweep that hung in trainer.test: DDP ranks forking loader workers from a threaded process."""
    sweep = tmp_path / "sweep"
    args = [
        "-m", *TINY, "trainer=ddp_sim", "trainer.max_epochs=2", "optimizer.lr=0.005,0.01,0.02",
        f"hydra.sweep.dir={sweep}",
    ]  # fmt: skip
    result = run_cli(args, tmp_path, data_dir, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [record_of(sweep / str(job)) for job in range(3)]
    assert [r["status"] for r in records] == ["finished"] * 3
    assert [r["config"]["optimizer"]["lr"] for r in records] == [0.005, 0.01, 0.02]
    assert all(r["training"]["world_size"] == 2 for r in records)
    assert [p.name for p in tmp_path.iterdir() if p.is_dir() and p.name != "sweep"] == []  # the sweep ran once
    assert all((sweep / str(job) / "train_ddp_process_1.log").is_file() for job in range(3))  # ranks in their job


@pytest.mark.slow
def test_a_ddp_job_whose_rank_fails_fails_alone_and_the_sweep_goes_on(tmp_path, data_dir):
    """Lightning's own watcher would SIGKILL the launching process, here the whole sweep."""
    sweep = tmp_path / "sweep"
    crash = "+data.augment.crash={_target_:tests.blocking.CrashOnRank,rank:1,p:1.0}"
    args = ["-m", *TINY, "trainer=ddp_sim", crash, "data.augment.crash.p=1.0,0.0", f"hydra.sweep.dir={sweep}"]
    result = run_cli(args, tmp_path, data_dir, timeout=600)
    assert result.returncode != 0  # the sweep reports the failed job, after running the next
    failed, finished = record_of(sweep / "0"), record_of(sweep / "1")
    assert failed["status"] == "failed" and "rank 0 of 2 lost the other ranks in a collective" in failed["error"]
    assert finished["status"] == "finished"


def comparable(sweep: Path) -> pd.DataFrame:
    """The sweep's report without what differs between two runs of it (where, how long)."""
    report_main([str(sweep)])
    table = pd.read_csv(sweep / "report.csv")
    return table.drop(columns=["run", "duration_s", "inference_ms"]).sort_values("lr").reset_index(drop=True)


JOBS = ["-m", *TINY, "trainer.deterministic=true", "trainer.max_epochs=2", "optimizer.lr=0.002,0.003,0.004"]


@pytest.fixture(scope="module")
def uninterrupted_sweep(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """The sweep run once without a stop, by the sequential launcher: what both launchers' killed and
    resumed sweeps must end as (a launcher decides where a job runs, never what it computes)."""
    root = tmp_path_factory.mktemp("uninterrupted")
    whole = run_cli([*JOBS, f"hydra.sweep.dir={root / 'whole'}"], root, data_dir)
    assert whole.returncode == 0, whole.stderr[-3000:]
    return root / "whole"


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["sequential", "parallel"])
def test_a_sweep_killed_part_way_resumes_to_the_records_and_report_of_an_uninterrupted_one(
    tmp_path, data_dir, launcher, uninterrupted_sweep
):
    jobs = [*JOBS, "launcher=parallel", "launcher.cpu_jobs=2"] if launcher == "parallel" else JOBS
    cwd, sweep = tmp_path / "work", tmp_path / "work" / "multirun" / "killed"
    cwd.mkdir()
    process = start_cli([*jobs, f"hydra.sweep.dir={sweep}"], cwd, data_dir)
    while not any(len(record_of(run.parent).get("history", [])) >= 1 for run in sweep.glob("[12]/run.json")):
        assert process.poll() is None, process.stderr.read()[-3000:]
        time.sleep(0.2)
    process.kill()  # job 0 finished (or, in parallel, running), a later one part-way, the last not begun
    process.wait(timeout=30)
    assert not wait_until_gone(cwd), "the killed sweep's jobs went on running"
    assert not (sweep / "2" / "run.json").is_file() or launcher == "parallel"  # never started

    resumed = run_cli(["last"], cwd, data_dir, app="boneage.resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")) == ["0", "1", "2"]
    for job in range(3):
        record, reference = record_of(sweep / str(job)), record_of(uninterrupted_sweep / str(job))
        assert record["status"] == "finished"
        assert record["metrics"] == pytest.approx(reference["metrics"], abs=1e-6), job
    pd.testing.assert_frame_equal(comparable(sweep), comparable(uninterrupted_sweep))


@pytest.mark.slow
def test_an_optuna_search_killed_mid_trial_resumes_and_leaves_no_trial_running(tmp_path, data_dir):
    """The search is killed while its trial trains (the in-process launcher: the trial dies with it).
    Run again, it ends that trial as its record says (failed: it never finished), keeping the epochs
    it reported, and goes on with a new trial."""
    import optuna

    search = ["-m", *TINY, "hparams_search=optuna", "hydra.sweeper.sampler.n_startup_trials=1"]
    process = start_cli([*search, "trainer.max_epochs=50"], tmp_path, data_dir)
    runs = tmp_path / "multirun" / "demo"
    while not any(len(record_of(run.parent).get("history", [])) >= 2 for run in runs.glob("*/0/run.json")):
        assert process.poll() is None, process.stderr.read()[-3000:]
        time.sleep(0.2)
    process.kill()
    process.wait(timeout=30)
    resumed = run_cli([*search, "hydra.sweeper.n_trials=1"], tmp_path, data_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    study = optuna.load_study(study_name="demo", storage=open_storage(str(runs / "optuna.journal")))
    assert [trial.state.name for trial in study.trials] == ["FAIL", "COMPLETE"]
    assert len(study.trials[0].intermediate_values) >= 2


def job_folder(tmp_path: Path, **record) -> DictConfig:
    run_dir = tmp_path / "job"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "tensorboard").mkdir()
    RunRecord(run_dir).update(**record)
    return OmegaConf.create({"paths": {"output_dir": str(run_dir)}, "ckpt_path": None, "retry_failed": False})


def test_a_resumed_sweep_keeps_finished_jobs_and_continues_the_others_from_their_checkpoint(tmp_path):
    finished = job_folder(tmp_path / "a", status="finished", metrics={"val/mae": 1.5})
    assert continue_sweep_job(finished, is_rank_zero=True) == {"val/mae": 1.5}

    killed = job_folder(tmp_path / "b", status="running")
    (Path(killed.paths.output_dir) / "checkpoints").mkdir()
    (Path(killed.paths.output_dir) / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    assert continue_sweep_job(killed, is_rank_zero=True) is None
    assert killed.ckpt_path.endswith("job/checkpoints/last.ckpt")


def test_a_job_that_failed_before_a_checkpoint_starts_again_from_a_clean_folder(tmp_path):
    crashed = job_folder(tmp_path, status="failed", error="RuntimeError: CUDA error: an illegal memory access")
    assert continue_sweep_job(crashed, is_rank_zero=True) is None
    assert crashed.ckpt_path is None
    assert sorted(p.name for p in Path(crashed.paths.output_dir).iterdir()) == [".hydra"]


def test_a_job_that_failed_on_a_bad_value_is_listed_not_retried_unless_asked(tmp_path):
    bad = job_folder(tmp_path, status="failed", error="ConfigError: optimizer.lr must be a positive number, not -1")
    with pytest.raises(
        ConfigError, match=r"not retried, it failed with ConfigError: optimizer.lr .* retry_failed=true"
    ):
        continue_sweep_job(bad, is_rank_zero=True)
    bad.retry_failed = True
    assert continue_sweep_job(bad, is_rank_zero=True) is None
