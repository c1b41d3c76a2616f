"""Fast paths inside fairseq's wav2vec 2.0: each one against plain fairseq on CPU (float32).

The loss and every parameter gradient of one fixed batch, or the parameters after a few optimizer
steps, must equal plain fairseq's. Gradients are compared per parameter tensor, relative to the
largest gradient of that tensor (floored at 1e-3 of the largest gradient of the model: a key
projection's bias has an exactly-zero true gradient, softmax being shift invariant, so both
sides hold rounding noise there).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from speechfm.core.errors import SpeechfmError
from speechfm.core.presets import load_pretrain
from speechfm.engine.fairseq import FairseqJob, compose_config, read_job, write_job
from speechfm.engine.fairseq import fastpaths as fp
from speechfm.engine.fairseq.fastcheck import (
    adam_steps,
    build_model,
    check,
    grad_error,
    loss_and_grads,
    master_steps,
    seeded_mask_draws,
    tiny_model_cfg,
)
from speechfm.pretrain.config import fast_settings
from speechfm.pretrain.flops import training_flops
from tests.helpers.clips import audio_manifest

TOLERANCE = 1e-5  # float32: relative error of loss and gradients of the CPU exactness tests


@pytest.fixture
def seeded_masks():
    with seeded_mask_draws() as reset:
        yield reset


def dataset(manifest: Path, max_sample_size: int = 48000):
    from fairseq.data.audio.raw_audio_dataset import FileAudioDataset

    return FileAudioDataset(str(manifest), sample_rate=16000, max_sample_size=max_sample_size,
                            min_sample_size=8000, pad=False, normalize=True)


# --- settings ---------------------------------------------------------------------------------

def test_settings_from_presets_and_overrides(tmp_path: Path) -> None:
    assert fp.split_overrides(["fast.sdpa_attention=false", "common.seed=3"]) == (
        ["common.seed=3"], {"sdpa_attention": "false"})
    base = load_pretrain("base")
    settings = fast_settings(base, {"sdpa_attention": "false", "loader_threads": "2"})
    assert settings["sdpa_attention"] is False and settings["loader_threads"] == 2
    assert settings["fused_adam"] is True and settings["compile_layers"] is False
    plain = {name: 0 if name == "loader_threads" else False for name in settings}
    assert fast_settings(load_pretrain("tiny"), {}) == plain
    with pytest.raises(SpeechfmError, match="unknown fast path"):
        fast_settings(base, {"flash": "true"})
    with pytest.raises(SpeechfmError, match="must be true or false"):
        fast_settings(base, {"fused_adam": "maybe"})
    # the one boolean parser of every verb (core.cliargs.parse_bool): what DVC renders works
    assert fast_settings(base, {"fused_adam": "no"})["fused_adam"] is False
    bad = tmp_path / "bad.yaml"
    bad.write_text("fairseq: {}\nfast: {loader_threads: -1}\n")
    with pytest.raises(SpeechfmError, match="integer >= 0"):
        fast_settings(load_pretrain(str(bad)), {})
    job = FairseqJob(save_dir=tmp_path / "run", fast=settings)
    write_job(job, {"common": {}})
    assert read_job(job.job_path)[0].fast == settings
    assert "fast" not in (tmp_path / "run" / "config.yaml").read_text()  # fairseq never sees it


# --- attention --------------------------------------------------------------------------------

def test_sdpa_attention_equals_fairseq_with_padding_and_in_train_mode() -> None:
    import types

    from fairseq.modules.multihead_attention import MultiheadAttention

    torch.manual_seed(0)
    attn = MultiheadAttention(32, 4, dropout=0.3, self_attention=True)
    fast = MultiheadAttention(32, 4, dropout=0.3, self_attention=True)
    fast.load_state_dict(attn.state_dict())
    assert fp._sdpa_eligible(fast)
    fast.forward = types.MethodType(fp.sdpa_self_attention, fast)
    x = torch.randn(9, 3, 32)
    padding = torch.zeros(3, 9, dtype=torch.bool)
    padding[1, 6:] = padding[2, 3:] = True
    for module in (attn, fast):
        module.eval()
    outs = []
    for module in (attn, fast):
        xi = x.clone().requires_grad_(True)
        out, weights = module(xi, xi, xi, key_padding_mask=padding, need_weights=False)
        assert weights is None
        (out * torch.linspace(-1, 1, 32)).sum().backward()
        outs.append((out.detach(), xi.grad, [p.grad for p in module.parameters()]))
    (ref, ref_dx, ref_dw), (got, got_dx, got_dw) = outs
    assert (ref - got).abs().max() <= TOLERANCE * ref.abs().max()
    assert (ref_dx - got_dx).abs().max() <= TOLERANCE * ref_dx.abs().max()
    for a, b in zip(ref_dw, got_dw):
        assert (a - b).abs().max() <= TOLERANCE * max(a.abs().max(), 1e-3)
    fast.train()  # dropout in the attention kernel: a different output, gradients still flow
    out, _ = fast(x, x, x, key_padding_mask=padding, need_weights=False)
    assert not torch.allclose(out, got) and torch.isfinite(out).all()
    # any other call (attention weights asked for) is fairseq's own forward
    _, weights = fast(x, x, x, key_padding_mask=padding, need_weights=True)
    assert weights is not None and weights.shape == (3, 9, 9)


def test_model_fast_paths_give_fairseq_loss_and_gradients(seeded_masks) -> None:
    """sdpa_attention and sync_free (separately and together) on a tiny model's fixed batch."""
    model_cfg = tiny_model_cfg()
    batch = {"net_input": {"source": torch.randn(3, 24000)}, "id": torch.arange(3)}
    plain = build_model(model_cfg)
    ref_loss, ref_grads = loss_and_grads(plain, batch, seeded_masks)
    for switches in ({"sdpa_attention": True}, {"sync_free": True},
                     {"sdpa_attention": True, "sync_free": True}):
        fast = build_model(model_cfg)
        fast.load_state_dict(plain.state_dict())
        done = fp.apply_to_model(fast, fp.FastPaths(**switches))
        assert done == [f"{k} x{4 if k == 'sdpa_attention' else 1}" for k in switches]
        loss, grads = loss_and_grads(fast, batch, seeded_masks)
        assert abs(loss - ref_loss) <= TOLERANCE * abs(ref_loss), switches
        assert grad_error(ref_grads, grads) <= TOLERANCE, switches


@pytest.mark.slow
def test_compiled_layers_give_fairseq_loss_and_gradients(seeded_masks) -> None:
    """torch.compile(dynamic=True) of every layer (inductor's C++ code on CPU): one fixed batch,
    then a batch of another shape without a recompile per layer."""
    import torch._dynamo

    model_cfg = tiny_model_cfg()
    plain = build_model(model_cfg)
    fast = build_model(model_cfg)
    fast.load_state_dict(plain.state_dict())
    assert fp.apply_to_model(fast, fp.FastPaths(sdpa_attention=True, compile_layers=True)) == [
        "sdpa_attention x4", "compile_layers x4"]
    torch._dynamo.reset()
    for shape in ((3, 24000), (2, 30000)):
        batch = {"net_input": {"source": torch.randn(*shape)}, "id": torch.arange(shape[0])}
        ref_loss, ref_grads = loss_and_grads(plain, batch, seeded_masks)
        loss, grads = loss_and_grads(fast, batch, seeded_masks)
        assert abs(loss - ref_loss) <= TOLERANCE * abs(ref_loss), shape
        assert grad_error(ref_grads, grads) <= 2 * TOLERANCE, shape
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] <= 6  # shared by the 4 layers


def test_negatives_on_device_are_the_same_draws_and_never_the_positive() -> None:
    model = build_model(tiny_model_cfg())
    y = torch.randn(2, 30, 8)
    torch.manual_seed(5)
    ref, _ = type(model).sample_negatives(model, y, 30)
    torch.manual_seed(5)
    got, index = fp.sample_negatives_on_device(model, y, 30)
    assert torch.equal(ref, got) and got.shape == (model.n_negatives, 2, 30, 8)
    own = torch.arange(30).repeat_interleave(model.n_negatives)
    assert not (index % 30 == own).any()  # a frame is never its own negative
    assert ((index // 30) == torch.arange(2)[:, None]).all()  # negatives from the same utterance


# --- masks in loader workers ------------------------------------------------------------------

def test_precomputed_masks_give_fairseq_loss_and_gradients(tmp_path: Path, seeded_masks) -> None:
    model_cfg = tiny_model_cfg()
    data = dataset(audio_manifest(tmp_path / "clips", [1.5, 2.0, 2.5]))
    config = {"model": model_cfg}
    plain = build_model(model_cfg)

    def collate() -> dict:
        return data.collater([data[i] for i in range(3)])

    seeded_masks()
    batch = collate()  # plain fairseq: crops drawn here, masks in the model's forward
    assert "mask_indices" not in batch["net_input"]
    ref_loss, ref_grads = loss_and_grads(plain, batch, lambda: None)
    with fp.installed({"precompute_masks": True}, config):
        seeded_masks()
        fast_batch = collate()
    mask = fast_batch["net_input"]["mask_indices"]
    assert torch.equal(fast_batch["net_input"]["source"], batch["net_input"]["source"])
    assert mask.dtype == torch.bool and mask.shape == (3, fp.MaskMaker(model_cfg).frames(24000))
    assert fast_batch["sample_size"] == int(mask.sum()) and (mask.sum(1) == mask.sum(1)[0]).all()
    loss, grads = loss_and_grads(plain, fast_batch, lambda: None)
    assert abs(loss - ref_loss) <= TOLERANCE * abs(ref_loss)
    assert grad_error(ref_grads, grads) <= TOLERANCE
    assert "mask_indices" not in collate()["net_input"]  # uninstalled again


def test_fairseq_precompute_mask_config_is_not_wav2vec2_masking(tmp_path: Path) -> None:
    """fairseq 0.12's own `task.precompute_mask_config` draws data2vec-style block masks
    (`compute_block_mask_1d`) under a key the wav2vec2 model does not take: not usable here."""
    from fairseq.data.audio.raw_audio_dataset import FileAudioDataset

    data = FileAudioDataset(str(audio_manifest(tmp_path / "c", [1.5, 2.0])), sample_rate=16000,
                            max_sample_size=48000, min_sample_size=8000, compute_mask=True,
                            feature_encoder_spec="[(32, 10, 5), (32, 3, 2)]", mask_prob=0.65,
                            mask_length=5)
    batch = data.collater([data[0], data[1]])
    assert "precomputed_mask" in batch["net_input"]
    model = build_model(tiny_model_cfg())
    with pytest.raises(TypeError, match="precomputed_mask"):
        model(**batch["net_input"])


# --- optimizer --------------------------------------------------------------------------------

def test_fused_adam_equals_fairseq_adam_in_float32() -> None:
    from fairseq import optim

    torch.manual_seed(0)
    start = [torch.randn(s) for s in [(64, 32), (32,), (7, 5, 3)]]
    ref, got = adam_steps(False, start), adam_steps(True, start)
    for a, b in zip(ref, got):
        assert (a - b).abs().max() <= 1e-6 * a.abs().max()
        assert not torch.equal(a, b)  # really another implementation
    params = [torch.nn.Parameter(torch.zeros(3))]
    with fp.installed({"fused_adam": True}, {}):
        opt = optim.build_optimizer(_adam_cfg(), params)
    assert isinstance(opt.optimizer, fp.FairseqAdamW)
    params[0].grad = torch.ones(3)
    opt.step()
    group = opt.state_dict()["param_groups"][0]
    assert group["fairseq_steps"] == 1 and group["eps"] == 1e-6  # eps restored after the step


def _adam_cfg():
    from omegaconf import OmegaConf

    return OmegaConf.create(compose_config(load_pretrain("tiny")["fairseq"]))["optimizer"]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_flat_master_optimizer_equals_fairseq_fp16_optimizer(precision: str) -> None:
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    torch.manual_seed(0)
    start = [torch.randn(s) for s in [(64, 32), (32,), (7, 5, 3)]]
    (ref_master, ref_model), (got_master, got_model) = (master_steps(False, start, precision),
                                                        master_steps(True, start, precision))
    assert (ref_master - got_master).abs().max() <= 1e-6 * ref_master.abs().max()
    assert ((ref_model - got_model).abs() <= torch.finfo(dtype).eps * ref_model.abs()).all()


def test_flat_master_optimizer_is_what_fairseq_builds() -> None:
    from fairseq import optim
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(compose_config(load_pretrain("tiny")["fairseq"],
                                          overrides=["common.bf16=true"]))
    with fp.installed({"fused_adam": True}, {}):
        param = torch.nn.Parameter(torch.zeros(4).bfloat16())
        opt = optim.FP16Optimizer.build_optimizer(cfg, [param])
        assert type(opt).__name__ == "FlatMasterFP16Optimizer" and opt.has_flat_params
        assert isinstance(opt.fp32_optimizer.optimizer, fp.FairseqAdamW)
    assert optim.FP16Optimizer.__name__ == "FP16Optimizer"  # restored


def test_self_check_on_cpu() -> None:
    rows = check("cpu")
    assert [r["path"] for r in rows] == ["sdpa_attention", "sync_free", "precompute_masks",
                                         "fused_adam (fp32)", "fused_adam (bf16 master)",
                                         "fused_adam (fp16 master)"]
    for row in rows:
        errors = [row[k] for k in ("loss", "grads", "params") if row.get(k) is not None]
        assert errors and max(errors) <= TOLERANCE, row


# --- batches that fill max_tokens -------------------------------------------------------------

def test_bucket_batches_fill_max_tokens_and_batch_every_index_once() -> None:
    from fairseq.data import data_utils

    rng = np.random.default_rng(0)
    sizes = np.minimum(rng.lognormal(np.log(6 * 16000), 0.7, 4000).astype(np.int64), 960000)
    sizes = sizes[sizes >= 32000]
    max_tokens = 2_800_000
    order = np.lexsort([rng.permutation(len(sizes)), sizes])[::-1]  # fairseq's ordered_indices
    plain = data_utils.batch_by_size(order, None, num_tokens_vec=sizes[order],
                                     max_tokens=max_tokens, required_batch_size_multiple=8)
    filled = fp.fill_batches(sizes[order], order, max_tokens)
    before = fp.batch_fill(sizes, plain, max_tokens, fill_crop=False)
    after = fp.batch_fill(sizes, filled, max_tokens, fill_crop=True)
    assert sorted(np.concatenate(filled).tolist()) == list(range(len(sizes)))
    for batch in filled:
        assert min(int(sizes[batch].min()), max_tokens // len(batch)) * len(batch) <= max_tokens
    assert before["fill"] < 0.85 and after["fill"] > 0.95, (before, after)
    assert after["crop_waste"] < 0.04, after
    equal = np.full(100, 240000)  # the benchmark's 15 s clips: fairseq takes 8 per batch, not 11
    assert {len(b) for b in data_utils.batch_by_size(np.arange(100), None, num_tokens_vec=equal,
                                                     max_tokens=max_tokens,
                                                     required_batch_size_multiple=8)} == {8}
    assert {len(b) for b in fp.fill_batches(equal, np.arange(100), max_tokens)[:-1]} == {12}


def test_bucket_batches_through_the_dataset(tmp_path: Path) -> None:
    from fairseq.data.audio.raw_audio_dataset import RawAudioDataset

    data = dataset(audio_manifest(tmp_path / "clips", [1.0, 1.1, 1.2, 2.0, 2.1, 3.0, 3.0, 1.05]))
    max_tokens = 60000
    with fp.installed({"bucket_batches": True, "loader_threads": 1}, {}):
        batches = data.batch_by_size(data.ordered_indices(), max_tokens=max_tokens)
        collated = [data.collater([data[i] for i in b]) for b in batches]
    assert sorted(int(i) for b in batches for i in b) == list(range(8))
    for b in collated:
        assert b["net_input"]["source"].numel() <= max_tokens
    assert "batch_by_size" not in RawAudioDataset.__dict__  # restored: fairseq's own again


# --- FLOP count for MFU -----------------------------------------------------------------------

def test_training_flops_match_torch_flop_counter(seeded_masks) -> None:
    """torch's counter is right for ungrouped convolutions only (it counts a grouped convolution's
    backward as if ungrouped, 17x the forward for 16 groups): compare with conv_pos_groups=1. It
    does not see the fused CPU attention kernel either: the math kernel is used here."""
    from fairseq.criterions.wav2vec_criterion import Wav2vecCriterion
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    model_cfg = tiny_model_cfg("model.conv_pos_groups=1")
    model = build_model(model_cfg).train()
    criterion = Wav2vecCriterion(None, infonce=True, loss_weights=[0.1, 10])
    source = torch.randn(2, 48000)
    seeded_masks()
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
        loss, _, _ = criterion(model, {"net_input": {"source": source}, "id": torch.arange(2)})
        loss.backward()
    counted = counter.get_total_flops()
    ours = training_flops(model_cfg, 2, 48000)
    assert abs(ours.total - counted) <= 0.02 * counted, (ours, counted)


def test_base_flops_per_audio_second() -> None:
    """Base at 15 s crops: 0.046 TFLOP per audio second (the 0.054 measured before came from
    torch's counter over-counting the 16-group positional convolution's backward)."""
    base = compose_config(load_pretrain("base")["fairseq"])["model"]
    per_second = training_flops(base, 1, 240000).total / 15
    assert 0.044e12 < per_second < 0.048e12
    large = compose_config(load_pretrain("xlarge")["fairseq"])["model"]
    assert training_flops(large, 1, 240000).total / 15 > 7 * per_second
