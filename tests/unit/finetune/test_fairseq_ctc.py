"""fairseq CTC fine-tuning's recipe at full scale: the config and LUMI job built on a real tiny
pre-training."""

from __future__ import annotations

from pathlib import Path

from speechfm.core.presets import load_pretrain
from speechfm.engine.fairseq import FairseqJob, ranks_of, start, write_job
from speechfm.finetune.fairseq_ctc import build_config
from speechfm.pretrain import build_config as pretrain_config
from tests.helpers import assert_lumi_network
from tests.helpers.letters import write_labeled
from tests.helpers.shard_manifest import make_shard_manifest


def test_base_ctc_on_lumi_simulates_128_gpus_with_8_gcds(small_demo: Path, tmp_path: Path) -> None:
    """The full-scale recipe as `finetune --backend fairseq --preset base --gpus 8 --site
    lumi` builds it: reference hyper-parameters, update_freq 128 / 8, one node of 8 GCDs."""
    from speechfm.core.presets import load_finetune
    from speechfm.core.sites import load_site
    from speechfm.engine.fairseq.job import update_freq
    from speechfm.launch.slurm import render_sbatch

    preset = load_finetune("base")
    assert preset["simulate_gpus"] == 128
    data = write_labeled(small_demo, tmp_path / "labeled")
    pre = FairseqJob(save_dir=tmp_path / "pre")
    write_job(pre, pretrain_config(load_pretrain("tiny"), make_shard_manifest(
        small_demo, tmp_path / "shards"), pre.save_dir, 1, True,
        overrides=["optimization.max_update=1"]))
    assert start(pre).status == 0
    init = pre.save_dir / "checkpoint_last.pt"
    config = build_config(data, tmp_path / "ctc", preset["fairseq"], init, nproc=8, cpu=False,
                          update_freq=update_freq(8, preset["simulate_gpus"]))
    assert config["optimization"]["update_freq"] == [16]
    assert config["optimization"]["lr"] == [2e-5] and config["optimization"]["max_update"] == 16450
    assert config["distributed_training"]["distributed_world_size"] == 8
    assert config["model"]["w2v_path"] == str(init.resolve())
    assert config["checkpoint"]["best_checkpoint_metric"] == "wer"
    job = FairseqJob(save_dir=tmp_path / "ctc", world_size=8, cpu=False, experiment="finetune",
                     run_name="ctc", stage="finetune")
    script = render_sbatch(ranks_of(job), load_site("lumi"), Path("/scratch/project_465000000"))
    assert "#SBATCH --nodes=1" in script and "#SBATCH --gpus-per-node=8" in script
    assert 'MIOPEN_FIND_MODE="2"' in script and "singularity exec --rocm" in script
    assert_lumi_network(script)
