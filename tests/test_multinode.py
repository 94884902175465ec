"""Two nodes on one machine: two torchrun agents, each a node of one device, joined over the loopback.

Each agent starts its rank as a separate `python -m boneage.train`, as on two hosts: Lightning sees
a torchelastic environment with num_nodes=2 and node ranks 0 and 1 (its multi-node path), not the
ranks it starts itself on one node.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from boneage.runtime.rank_folder import check_ranks_share_one_folder
from boneage.serving.load_test import free_port
from tests.helpers import TINY, cli_environment, record_of, run_cli

EQUAL_METRICS = 1e-4  # two nodes of one device vs one node of two: the same ranks, the same batches


def node(rank: int, port: int, overrides: list[str], cwd: Path, data_dir: Path) -> subprocess.Popen:
    """One node's torchrun agent (one process per node), as the README's multi-node command."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node-rank={rank}",
               "--nproc-per-node=1", "--master-addr=127.0.0.1", f"--master-port={port}", "-m", "boneage.train",
               *overrides]  # fmt: skip
    return subprocess.Popen(command, cwd=cwd, env=cli_environment(data_dir), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


@pytest.mark.slow
def test_two_nodes_train_one_run_that_matches_one_node_with_as_many_devices(tmp_path, data_dir):
    overrides = [*TINY, "trainer=ddp_sim", "trainer.max_epochs=2", "seed=5"]
    one_node = tmp_path / "one_node"
    result = run_cli([*overrides, f"hydra.run.dir={one_node}"], tmp_path, data_dir)
    assert result.returncode == 0, result.stderr[-3000:]

    two_nodes = tmp_path / "outputs" / "two_nodes"
    port = free_port()
    nodes = [node(rank, port, [*overrides, "trainer.devices=1", "trainer.num_nodes=2", f"hydra.run.dir={two_nodes}"],
                  tmp_path, data_dir) for rank in (0, 1)]  # fmt: skip
    for started in nodes:
        _, stderr = started.communicate(timeout=600)
        assert started.returncode == 0, stderr[-3000:]

    assert [folder.name for folder in (tmp_path / "outputs").iterdir()] == ["two_nodes"]
    assert sorted(log.name for log in two_nodes.glob("*.log")) == ["train.log", "train_rank1.log"]  # a log each
    record = record_of(two_nodes)
    assert record["status"] == "finished"
    assert (record["training"]["world_size"], record["training"]["num_nodes"]) == (2, 2)
    expected = record_of(one_node)["metrics"]
    assert record_of(one_node)["training"]["world_size"] == 2
    for name in ("val/mae", "test/mae", "val/rmse"):
        assert record["metrics"][name] == pytest.approx(expected[name], abs=EQUAL_METRICS), name


TORCHRUN = {"TORCHELASTIC_RUN_ID": "none", "WORLD_SIZE": "2"}
SRUN_STEP = {"SLURM_STEP_NUM_TASKS": "2"}


@pytest.mark.parametrize("launcher", [TORCHRUN, SRUN_STEP], ids=["torchrun", "srun"])
def test_ranks_started_outside_without_a_shared_folder_are_stopped_before_they_split_the_run(monkeypatch, launcher):
    for key, value in launcher.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit, match=r"one of 2 ranks started by torchrun or srun.*hydra.run.dir=<folder>"):
        check_ranks_share_one_folder(["trainer.num_nodes=2"])
    check_ranks_share_one_folder(["trainer.num_nodes=2", "hydra.run.dir=outputs/shared"])  # one folder for all
    check_ranks_share_one_folder(["-m", "seed=1,2"])  # a sweep's launcher names each job's folder once
