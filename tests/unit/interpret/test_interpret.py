"""The LUR stage: batched layer IG against a plain captum reference, the LUR itself, refusing to
resume with other settings, the data forms and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from speechfm.cli import main
from speechfm.core.errors import SpeechfmError
from speechfm.interpret import ig
from speechfm.interpret.data import list_utterances, load_audio
from speechfm.interpret.lur import LurRun, analyse, load_model
from tests.helpers.lur import STEPS


def reference_layer_ig(model, values: torch.Tensor, layer: int, target: int, steps: int) -> torch.Tensor:
    """captum's LayerIntegratedGradients for one layer and one target, zero-audio baseline, the
    forward returning one scalar (the target's logit summed over frames) per batch item."""
    from captum.attr import LayerIntegratedGradients

    lig = LayerIntegratedGradients(lambda x: model(x).logits[:, :, target].sum(1),
                                   model.wav2vec2.encoder.layers[layer])
    return lig.attribute(values[None], baselines=torch.zeros_like(values[None]), n_steps=steps)[0]


def reference_lur(model, utterances: list[torch.Tensor], steps: int):
    """The reference method: per utterance, layer and predicted token one captum call, every kept
    per-frame attribution stored, means and LUR at the end. Returns (LUR per layer, means)."""
    blank = model.config.pad_token_id
    kept: dict[tuple[int, int], list[torch.Tensor]] = {}
    for values in utterances:
        with torch.no_grad():
            predicted = model(values[None]).logits[0].argmax(-1)
        for layer in range(len(model.wav2vec2.encoder.layers)):
            for target in set(predicted.tolist()) - {blank}:
                attr = reference_layer_ig(model, values, layer, target, steps)
                kept.setdefault((layer, target), []).append(attr[predicted == target])
    lur, means = [], {}
    for layer in range(len(model.wav2vec2.encoder.layers)):
        relevant = None
        for (lay, target), frames in kept.items():
            if lay != layer:
                continue
            mean = torch.cat(frames).mean(0).numpy()
            means[layer, target] = mean
            std = mean.std()
            hit = (mean > std) | (mean < -std)
            relevant = hit if relevant is None else relevant | hit
        lur.append(100.0 * relevant.mean())
    return lur, means


def features(model_dir: Path, tsv: Path, dtype=torch.float32) -> list[torch.Tensor]:
    _, processor = load_model(model_dir, "cpu", "float32")
    return [processor.feature_extractor(load_audio(u), sampling_rate=16000,
                                        return_tensors="pt").input_values[0].to(dtype)
            for u in list_utterances(tsv)]


def stable_layer_norm_model(tmp_path: Path, reference_dir: Path) -> Path:
    """A Large-style (stable layer norm) tiny model with the same processor."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2Processor

    config = Wav2Vec2Config.from_pretrained(reference_dir)
    config.do_stable_layer_norm, config.feat_extract_norm = True, "layer"
    torch.manual_seed(1)
    Wav2Vec2ForCTC(config).save_pretrained(tmp_path)
    Wav2Vec2Processor.from_pretrained(reference_dir).save_pretrained(tmp_path)
    return tmp_path


def one_utterance(layout, tiny_ctc_model_dir, test_tsv, tmp_path, index):
    """(model, input values, forward, predicted targets, LayerTop) of test utterance `index`
    with the post-LN or the stable-LN layout."""
    model_dir = (tiny_ctc_model_dir if layout == "post-ln"
                 else stable_layer_norm_model(tmp_path, tiny_ctc_model_dir))
    model, _ = load_model(model_dir, "cpu", "float32")
    values = features(model_dir, test_tsv)[index]
    fwd = ig.forward_utterance(model, values)
    targets = ig.targets_of(fwd.predicted, model.config.pad_token_id)
    assert len(targets) >= 3, "the test must exercise several predicted characters"
    return model, values, fwd, targets, ig.LayerTop(model)


@pytest.mark.parametrize("layout", ["post-ln", "stable-ln"])
def test_layer_ig_matches_captum_for_every_layer_and_token(layout, tiny_ctc_model_dir, test_tsv,
                                                           tmp_path):
    model, values, fwd, targets, top = one_utterance(layout, tiny_ctc_model_dir, test_tsv,
                                                     tmp_path, 0)
    alphas, weights = ig.quadrature("gausslegendre", STEPS)
    for layer in range(model.config.num_hidden_layers):
        attr, base_scores = ig.layer_attributions(top, layer, fwd.layers[layer],
                                                  fwd.baseline_layers[layer], targets, alphas, weights)
        chunked, _ = ig.layer_attributions(top, layer, fwd.layers[layer], fwd.baseline_layers[layer],
                                           targets, alphas, weights, chunk=3)
        assert torch.allclose(chunked, attr, rtol=1e-5, atol=1e-6 * float(attr.abs().max()))
        for k, target in enumerate(targets[:4]):
            ref = reference_layer_ig(model, values, layer, target, STEPS)
            scale = ref.abs().max()
            assert (attr[k] - ref).abs().max() <= 1e-5 * scale, (layer, target)
        # completeness: the attributions add up to F(actual) - F(baseline) (up to the quadrature
        # error of 8 steps)
        diff = fwd.logits[:, targets].sum(0) - base_scores
        assert torch.allclose(attr.sum((1, 2)), diff, rtol=1e-2, atol=1e-2)
        # and the baseline really is zero audio through the whole network
        assert torch.allclose(base_scores, fwd.baseline_logits[:, targets].sum(0), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("layout", ["post-ln", "stable-ln"])
def test_batched_backwards_equal_the_loop(layout, tiny_ctc_model_dir, test_tsv, tmp_path,
                                          monkeypatch):
    """The vmapped per-character backwards (the GPU default) give the loop's attributions, also
    when the memory budget splits the characters into groups."""
    model, _, fwd, targets, top = one_utterance(layout, tiny_ctc_model_dir, test_tsv, tmp_path, 1)
    alphas, weights = ig.quadrature("gausslegendre", STEPS)
    for layer in range(model.config.num_hidden_layers):
        args = (top, layer, fwd.layers[layer], fwd.baseline_layers[layer], targets, alphas, weights)
        loop, base_loop = ig.layer_attributions(*args)
        batched, base_batched = ig.layer_attributions(*args, batched=True)
        assert torch.equal(base_loop, base_batched)
        assert (batched - loop).abs().max() <= 1e-6 * loop.abs().max(), layer
        with monkeypatch.context() as m:  # a budget of two targets per backward, 3 steps a chunk
            budget = 2 * 3 * ig._layer_bytes(top, fwd.layers[layer].shape[0], 4)
            m.setattr(ig, "memory_budget", lambda device, budget=budget: budget)
            grouped, _ = ig.layer_attributions(*args, chunk=3, batched=True)
        assert (grouped - loop).abs().max() <= 1e-6 * loop.abs().max(), layer
    assert ig.batched_targets("auto", "cpu") is False and ig.batched_targets("auto", "cuda:0")
    assert ig.batched_targets("batched", "cpu") and not ig.batched_targets("loop", "cuda")
    with pytest.raises(SpeechfmError, match="unknown target batching"):
        ig.batched_targets("vmap", "cpu")


def test_gelu_keeping_derivative_is_torchs_gelu_and_is_put_back(tiny_ctc_model_dir):
    x = torch.cat([torch.linspace(-12, 12, 2001), torch.randn(1000) * 3]).double().requires_grad_(True)
    y_ref = torch.nn.functional.gelu(x)
    (g_ref,) = torch.autograd.grad(y_ref.sum() * 1.0, x)
    y = ig._GeluKeepingDerivative.apply(x)
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(y, y_ref)
    assert torch.allclose(g, g_ref, rtol=1e-12, atol=1e-12)
    model, _ = load_model(tiny_ctc_model_dir, "cpu", "float32")
    top = ig.LayerTop(model)
    before = [block.feed_forward.intermediate_act_fn for block in top.layers]
    with top.gelu_keeping_derivative():
        assert all(isinstance(b.feed_forward.intermediate_act_fn, ig._Gelu) for b in top.layers)
    assert [block.feed_forward.intermediate_act_fn for block in top.layers] == before


def test_lur_matches_plain_reference(tiny_ctc_model_dir, test_tsv, tmp_path):
    cfg = LurRun(model_dir=tiny_ctc_model_dir, data=test_tsv, out=tmp_path / "r", steps=STEPS,
                 dtype="float64", utterances=2, target_batching="batched")
    report = analyse(cfg)
    assert report["settings"]["target_batching"] == "batched"
    model, _ = load_model(tiny_ctc_model_dir, "cpu", "float64")
    ref_lur, ref_means = reference_lur(model, features(tiny_ctc_model_dir, test_tsv, torch.float64)[:2],
                                       STEPS)
    assert report["layers"] == [1, 2], "every layer, the last included"
    assert np.allclose(report["lur"], ref_lur, atol=0.5)
    with np.load(tmp_path / "r" / "lur_state.npz") as state:
        sums, counts = state["sums"], state["counts"]
    for (layer, target), mean in ref_means.items():
        ours = sums[layer, target] / counts[layer, target]
        assert np.abs(ours - mean).max() <= 1e-5 * np.abs(mean).max()
    assert len(ref_means) >= 2 * 3
    assert report["completeness_error"]["max"] < 1e-2  # quadrature error of 8 steps
    assert 0 < min(report["lur"]) and max(report["lur"]) <= 100


def test_resume_refuses_other_settings(tiny_ctc_model_dir, test_tsv, tmp_path, capsys):
    cfg = LurRun(model_dir=tiny_ctc_model_dir, data=test_tsv, out=tmp_path, steps=4, utterances=1,
                 layers="2")
    report = analyse(cfg)
    assert report["layers"] == [2] and report["utterances"] == 1
    rc = main(["lur", "--model", str(tiny_ctc_model_dir), "--data", str(test_tsv), "--out",
               str(tmp_path), "--steps", "5", "--layers", "2", "--resume"])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert rc == 2 and last.startswith("speechfm lur: error:") and "steps" in last
    assert "lur_state.npz" in last


def test_data_forms_give_the_same_audio(test_tsv, tmp_path):
    import tarfile

    from_tsv = list_utterances(test_tsv)
    from_dir = list_utterances(test_tsv.parent)
    with tarfile.open(tmp_path / "shard.tar", "w") as tar:
        for u in from_tsv:
            tar.add(u.path, arcname=u.path.name)
    lines = [str(tmp_path)]
    with tarfile.open(tmp_path / "shard.tar") as tar:
        for member in tar.getmembers():
            lines.append(f"shard.tar:{member.offset_data}:{member.size}\t24000")
    (tmp_path / "train.tsv").write_text("\n".join(lines) + "\n")
    from_shards = list_utterances(tmp_path / "train.tsv")
    (tmp_path / "plain.tsv").write_text(f"{test_tsv.parent}\nu1.flac\t24000\n")
    from_plain = list_utterances(tmp_path / "plain.tsv")
    assert len(from_tsv) == len(from_dir) == len(from_shards) == 3
    for a, b, c in zip(from_tsv, from_dir, from_shards):
        assert np.array_equal(load_audio(a), load_audio(b))
        assert np.array_equal(load_audio(a), load_audio(c))
    assert np.array_equal(load_audio(from_plain[0]), load_audio(from_tsv[1]))


def test_bad_input_is_one_clear_line(tiny_ctc_model_dir, tmp_path, capsys):
    args = ["lur", "--out", str(tmp_path / "r"), "--device", "cpu"]
    bad = tmp_path / "audio"
    bad.mkdir()
    (bad / "broken.flac").write_bytes(b"not audio at all")
    assert main([*args, "--model", str(tmp_path / "nope"), "--data", str(bad)]) == 2
    assert "nope: not a model folder" in capsys.readouterr().err
    assert main([*args, "--model", str(tiny_ctc_model_dir), "--data", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "broken.flac" in err and "cannot read audio" in err
    (tmp_path / "m.tsv").write_text("/x\nno frames here\n")
    assert main([*args, "--model", str(tiny_ctc_model_dir), "--data", str(tmp_path / "m.tsv")]) == 2
    assert "line 2" in capsys.readouterr().err
    assert main([*args, "--model", str(tiny_ctc_model_dir), "--data", str(bad), "--layers", "3"]) == 2
    assert "1-2" in capsys.readouterr().err
