"""Sweeps on a real SLURM cluster: munged, slurmctld and slurmd on this machine (scripts/local_slurm.sh),
jobs submitted by Hydra's submitit launcher, requeued as preemption requeues them. Skipped, with the
reason, where the daemons cannot start (no slurm-wlm, not root)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from boneage.report import build_table
from boneage.search.storage import open_storage
from tests.helpers import ROOT, TINY, ran_at_once, record_of, run_cli, start_cli
from tests.pruners import PRUNE_TRIAL_ZERO

SLURM_CPU = [
    "launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2",
]  # fmt: skip
# Deterministic CPU runs whose epochs last a few seconds (a slow share: tests.blocking.Pause), so a
# job can be stopped part-way; the same settings with and without the stop must end alike.
SLOW_DETERMINISTIC = [
    *TINY, "trainer.deterministic=true", "data.num_workers=2", "trainer.max_epochs=5",
    "+data.augment.pause._target_=tests.blocking.Pause", "+data.augment.pause.seconds=0.03",
]  # fmt: skip


def _cluster_unavailable() -> str | None:
    if not shutil.which("slurmctld") or not shutil.which("munged"):
        return "no SLURM here: apt-get install -y slurm-wlm munge (as .ci/run does)"
    if os.geteuid() != 0:
        return "the one-host SLURM cluster runs its daemons as root"
    return None


@pytest.fixture(scope="module")
def cluster():
    if reason := _cluster_unavailable():
        pytest.skip(reason)
    started = subprocess.run(
        [ROOT / "scripts" / "local_slurm.sh", "start"], capture_output=True, text=True, timeout=120
    )
    if started.returncode != 0:
        pytest.skip(f"the SLURM daemons did not start: {started.stderr[-500:]}")
    yield
    subprocess.run(["scancel", "--user=root"], check=False)


def learnt(record: dict) -> list[dict]:
    """The history's figures, without how long each epoch took."""
    return [{key: value for key, value in row.items() if key != "epoch_time_s"} for row in record["history"]]


def sweep(args: list[str], sweep_dir: Path, data_dir: Path) -> subprocess.Popen:
    return start_cli(["-m", *args, *SLURM_CPU, f"hydra.sweep.dir={sweep_dir}"], sweep_dir.parent, data_dir)


def job_ids(sweep_dir: Path) -> list[str]:
    """The SLURM jobs submitit submitted for a sweep, as <array job>_<task>: one array, a task per job."""
    return sorted(path.name.removesuffix("_log.out") for path in (sweep_dir / ".submitit").rglob("*_log.out"))


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


class RequeueDelaySkipped:
    """SLURM holds a requeued job back (BeginTime) for about two minutes: start it at once instead."""

    def __enter__(self) -> RequeueDelaySkipped:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._release, daemon=True)
        self.thread.start()
        return self

    def _release(self) -> None:
        while not self.stop.wait(1):
            held = subprocess.run(["squeue", "-h", "-t", "PD", "-o", "%i %r"], capture_output=True, text=True).stdout
            for line in held.splitlines():
                job, reason = line.split(maxsplit=1)
                if reason == "BeginTime":
                    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=False)

    def __exit__(self, *_) -> None:
        self.stop.set()
        self.thread.join()


@pytest.mark.slow
def test_a_cpu_sweep_runs_its_jobs_a_failing_job_fails_alone_and_resume_reruns_only_it(cluster, tmp_path, data_dir):
    sweep_dir = tmp_path / "sweep"
    process = sweep([*TINY, "optimizer.lr=3e-3,-1"], sweep_dir, data_dir)  # -1: a bad value, one job's failure
    process.wait(timeout=300)
    assert len(job_ids(sweep_dir)) == 2  # submitted to SLURM, one job each (tasks_per_node 1, not 0)
    finished = record_of(sweep_dir / "0")
    assert finished["status"] == "finished"
    failed = record_of(sweep_dir / "1")
    assert failed["status"] == "failed" and failed["error"].startswith("ConfigError: optimizer.lr must be")
    table = build_table([sweep_dir])
    assert table.loc[table["run"].str.endswith("/0"), "status"].tolist() == ["finished"]

    resumed = run_cli([str(sweep_dir), "retry_failed=true"], tmp_path, data_dir, timeout=300, app="boneage.resume")
    assert resumed.returncode != 0  # the failed job ran again, and failed again on its bad value
    assert len(job_ids(sweep_dir)) == 4  # launched again through SLURM, into the sweep's own folder
    assert record_of(sweep_dir / "0")["started_at"] == finished["started_at"]  # the finished job is kept
    again = record_of(sweep_dir / "1")
    assert again["status"] == "failed" and again["started_at"] > failed["started_at"]


@pytest.mark.slow
def test_srun_starts_both_ranks_of_a_ddp_job_in_one_run_folder(cluster, tmp_path, data_dir):
    sweep_dir = tmp_path / "ddp"
    process = sweep([*TINY, "trainer=ddp_sim", "seed=3"], sweep_dir, data_dir)
    assert process.wait(timeout=300) == 0, process.stderr.read()[-3000:]
    record = record_of(sweep_dir / "0")
    assert record["status"] == "finished" and record["training"]["world_size"] == 2
    assert sorted(path.name for path in sweep_dir.iterdir() if not path.name.startswith(".")) == ["0", "multirun.yaml"]


@pytest.mark.slow
def test_an_optuna_search_runs_its_trials_as_slurm_jobs_two_at_once_prunes_and_resumes(cluster, tmp_path, data_dir):
    """Each trial is a SLURM job that reports its epochs to the study's journal itself: trial 0 is
    pruned from its job, the others complete, and a second command continues the study."""
    import optuna

    search = [*TINY, "hparams_search=optuna", "hydra.sweeper.sampler.n_startup_trials=1", "trainer.max_epochs=2"]
    first_dir, second_dir = tmp_path / "search", tmp_path / "resumed"
    two_at_once = ["hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=2"]
    process = sweep([*search, *PRUNE_TRIAL_ZERO, *two_at_once], first_dir, data_dir)
    assert process.wait(timeout=400) == 0, process.stderr.read()[-3000:]
    assert len(job_ids(first_dir)) == 3  # one SLURM job per trial
    pruned, first, second = (record_of(first_dir / str(job)) for job in range(3))
    assert pruned["status"] == "pruned" and pruned["pruned"]["epoch"] == 0 and len(pruned["history"]) == 1
    assert first["status"] == second["status"] == "finished" and len(first["history"]) == 2
    assert ran_at_once(pruned, first)
    process = sweep([*search, "hydra.sweeper.n_trials=1"], second_dir, data_dir)
    assert process.wait(timeout=300) == 0, process.stderr.read()[-3000:]
    study = optuna.load_study(study_name="demo", storage=open_storage(str(tmp_path / "multirun/demo/optuna.journal")))
    assert [trial.state.name for trial in study.trials] == ["PRUNED", "COMPLETE", "COMPLETE", "COMPLETE"]
    [resumed] = second_dir.glob("*/run.json")
    assert json.loads(resumed.read_text())["search"]["trial"] == 3


@pytest.mark.slow
def test_a_requeued_job_continues_from_its_last_checkpoint_and_ends_as_if_never_stopped(cluster, tmp_path, data_dir):
    reference_dir, requeued_dir = tmp_path / "reference", tmp_path / "requeued"
    reference = sweep([*SLOW_DETERMINISTIC, "seed=4"], reference_dir, data_dir)  # the same job, left alone
    requeued = sweep([*SLOW_DETERMINISTIC, "seed=4"], requeued_dir, data_dir)
    run_dir = requeued_dir / "0"
    wait_for(lambda: (run_dir / "checkpoints" / "last.ckpt").is_file(), 240, "the first epoch's checkpoint")
    job = record_of(run_dir)["process"]["slurm_job_id"]  # the job this run is
    with RequeueDelaySkipped():
        subprocess.run(["scontrol", "requeue", job], check=True)  # what preemption and a lost node do
        wait_for(lambda: record_of(run_dir)["status"] == "interrupted", 60, "the stopped start's record")
        assert requeued.wait(timeout=400) == 0, requeued.stderr.read()[-3000:]
    assert reference.wait(timeout=300) == 0, reference.stderr.read()[-3000:]
    record, uninterrupted = record_of(run_dir), record_of(reference_dir / "0")
    assert record["status"] == "finished" and record["resumed_from"].endswith("last.ckpt")
    assert record["process"]["slurm_job_id"] == job  # the same job, started again in its own folder
    assert [row["epoch"] for row in record["history"]] == list(range(5))
    assert learnt(record) == learnt(uninterrupted) and record["metrics"] == uninterrupted["metrics"]


@pytest.mark.slow
def test_a_job_that_reaches_its_time_limit_is_requeued_and_finishes(cluster, tmp_path, data_dir):
    """A 2-minute limit, submitit's signal 30 s before it. SLURM may send the signal up to 60 s
    early, so a start trains for 30 to 90 s, and no signal comes before submitit's handler is in
    place. The first start's 12 epochs of slow images take 2 minutes, so it reaches its limit after
    an epoch or more (an epoch is about 10 s); the images are quick once requeued, so the epochs
    left take a later start seconds (20 epochs took a loaded machine's second start past its
    limit too). Up to 10 requeues."""
    sweep_dir = tmp_path / "timeout"
    limited = [*SLOW_DETERMINISTIC, "trainer.max_epochs=12", "data.augment.pause.seconds=0.15",
               "+data.augment.pause.first_start_only=true", "hydra.launcher.timeout_min=2",
               "hydra.launcher.signal_delay_s=30", "hydra.launcher.max_num_timeout=10"]  # fmt: skip
    with RequeueDelaySkipped():
        process = sweep(limited, sweep_dir, data_dir)
        assert process.wait(timeout=900) == 0, process.stderr.read()[-3000:]
    record = record_of(sweep_dir / "0")
    assert record["status"] == "finished" and record["resumed_from"].endswith("last.ckpt")
    assert [row["epoch"] for row in record["history"]] == list(range(12))
