"""Tests for ddpm_hub.evaluation: Fréchet distance, the digit judge, evaluate_samples / evaluate_pipeline, CLI."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ddpm_hub.evaluation as evaluation
from ddpm_hub.data import load_mnist5k
from ddpm_hub.evaluation import (
    DigitJudge,
    evaluate_pipeline,
    evaluate_samples,
    format_report,
    frechet_distance,
    load_or_train_judge,
    train_judge,
)

QUICK_EPOCHS = 1  # enough for ~95% held-out accuracy; the full recipe is checked in the slow test


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # The judge is small: on a busy shared 2-core machine one thread beats two oversubscribed ones by far.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def judge_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("judge_cache")


@pytest.fixture(scope="module")
def judge(judge_cache):
    return train_judge(seed=0, epochs=QUICK_EPOCHS, cache_dir=judge_cache, num_threads=1)


def _held_out_per_digit(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_mnist5k("held_out")
    idx = torch.cat([torch.nonzero(labels == d).flatten()[:n] for d in range(10)])
    return images[idx], labels[idx]


# ---------------------------------------------------------------------------------------------------------------------
# Fréchet distance
# ---------------------------------------------------------------------------------------------------------------------


def test_frechet_distance_identical_sets_is_zero():
    feats = np.random.default_rng(0).normal(size=(300, 16))
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(feats, feats[::-1]) == pytest.approx(0.0, abs=1e-8)  # order does not matter


def test_frechet_distance_is_symmetric():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(400, 8))
    b = rng.normal(size=(250, 8)) @ rng.normal(size=(8, 8)) + 0.5
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)
    assert frechet_distance(a, b) > 0


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(1000, 6)) @ rng.normal(size=(6, 6))  # correlated features
    shift = np.array([1.0, -2.0, 0.5, 0.0, 3.0, -1.0])
    # Same covariance, shifted mean: the distance is the squared mean distance.
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-9)
    # b = 2a + c: Σ_b = 4 Σ_a, (Σ_a Σ_b)^½ = 2 Σ_a, so d² = |Δμ|² + tr Σ_a + 4 tr Σ_a − 4 tr Σ_a = |Δμ|² + tr Σ_a.
    b = 2 * a + shift
    delta = a.mean(0) - b.mean(0)
    expected = float(delta @ delta + np.trace(np.cov(a, rowvar=False)))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    # Independent Gaussians with known parameters: population value |Δμ|² + Σ (σ_a − σ_b)², up to sampling error.
    x = rng.normal(size=(20000, 3)) * [1.0, 2.0, 0.5]
    y = rng.normal(size=(20000, 3)) * [3.0, 2.0, 0.5] + [1.0, 0.0, 0.0]
    assert frechet_distance(x, y) == pytest.approx(1.0 + 4.0, rel=0.05)


def test_frechet_distance_handles_singular_covariances_and_bad_input():
    rng = np.random.default_rng(3)
    few = rng.normal(size=(10, 32))  # fewer samples than dimensions: singular covariance
    assert frechet_distance(few, few) == pytest.approx(0.0, abs=1e-3)
    dead = np.abs(rng.normal(size=(200, 8)))
    dead[:, :3] = 0.0  # always-zero (dead ReLU) features
    assert np.isfinite(frechet_distance(dead, dead + [0, 0, 0, 1, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="same D"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.full((5, 3), np.nan), np.zeros((5, 3)))


# ---------------------------------------------------------------------------------------------------------------------
# The judge
# ---------------------------------------------------------------------------------------------------------------------


def test_judge_shapes_and_quick_training(judge):
    x = load_mnist5k("held_out")[0][:7]
    assert judge(x).shape == (7, 10)
    assert judge.features(x).shape == (7, 128)
    assert judge.held_out_accuracy is not None and judge.held_out_accuracy > 0.85
    assert not judge.training
    with pytest.raises(ValueError, match="28, 28"):
        judge.features(torch.zeros(2, 1, 32, 32))


def test_held_out_features_cache_follows_the_weights(judge):
    first = evaluation._held_out_outputs(judge)
    assert evaluation._held_out_outputs(judge)[0] is first[0]  # cached
    biased = copy.deepcopy(judge)
    with torch.no_grad():
        biased.head.bias[3] += 100.0  # now everything looks like a 3
    _, logits, labels = evaluation._held_out_outputs(biased)
    assert (logits.argmax(1) == 3).all()
    assert np.array_equal(labels, first[2])


def test_judge_cache_loads_without_training(judge, judge_cache, monkeypatch):
    files = list(judge_cache.glob("digit_judge-*.safetensors"))
    assert len(files) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("load_or_train_judge retrained although a cached judge exists")

    monkeypatch.setattr(evaluation, "train_judge", no_training)  # loading must not train (the fast path)
    loaded = load_or_train_judge(seed=0, epochs=QUICK_EPOCHS, cache_dir=judge_cache)
    assert isinstance(loaded, DigitJudge) and not loaded.training
    assert loaded.held_out_accuracy == pytest.approx(judge.held_out_accuracy)
    for (name, a), (_, b) in zip(judge.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    # Other settings hash to another file: they would train (here: hit the patched train_judge).
    with pytest.raises(AssertionError, match="retrained"):
        load_or_train_judge(seed=1, epochs=QUICK_EPOCHS, cache_dir=judge_cache)


@pytest.mark.slow  # trains the full judge (1-2 min): run with --runslow
def test_full_judge_reaches_97_percent(tmp_path):
    full = train_judge(seed=0, cache_dir=tmp_path)
    print(f"full judge: held-out accuracy {full.held_out_accuracy:.2%}")
    assert full.held_out_accuracy >= 0.97, full.held_out_accuracy


# ---------------------------------------------------------------------------------------------------------------------
# evaluate_samples
# ---------------------------------------------------------------------------------------------------------------------


def test_evaluate_samples_real_digits_vs_noise(judge):
    real, labels = _held_out_per_digit(30)
    good = evaluate_samples(judge, real, labels)
    assert good["num_samples"] == 300 and good["samples_per_digit"] == {d: 30 for d in range(10)}
    assert set(good["per_digit_accuracy"]) == set(range(10))
    assert good["mean_accuracy"] > 0.85 and good["accuracy"] > 0.85
    assert good["judge_held_out_accuracy"] == pytest.approx(judge.held_out_accuracy)
    assert np.asarray(good["confusion"]).sum() == 300
    assert np.trace(np.asarray(good["confusion"])) == round(good["accuracy"] * 300)
    json.dumps(good)  # JSON-serialisable

    noise = torch.rand(300, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    bad = evaluate_samples(judge, noise, labels)
    assert bad["mean_accuracy"] < 0.3
    # Held-out digits are (a subset of) the reference set: their distance is at the real-data floor; noise is far.
    assert good["frechet_distance"] < 2 * good["frechet_distance_real"] + 1.0
    assert bad["frechet_distance"] > 10 * good["frechet_distance_real"]
    assert bad["frechet_distance"] > 10 * good["frechet_distance"]
    assert bad["frechet_distance_real"] == pytest.approx(good["frechet_distance_real"])  # same labels, same seed

    # Asking for the wrong digits: accuracy collapses, the distribution (all digits) stays close.
    wrong = evaluate_samples(judge, real[::3], (labels[::3] + 1) % 10)
    assert wrong["mean_accuracy"] < 0.15
    table = format_report(good)
    assert "mean accuracy" in table and "Fréchet" in table


def test_evaluate_samples_resizes_rgb_and_validates(judge):
    real, labels = _held_out_per_digit(10)
    rgb32 = F.pad(real, (2, 2, 2, 2), value=-1.0).expand(-1, 3, -1, -1)  # (N, 3, 32, 32)
    result = evaluate_samples(judge, rgb32, labels)
    assert result["mean_accuracy"] > 0.8
    subset = evaluate_samples(judge, real[labels < 2], labels[labels < 2])  # only digits 0 and 1 requested
    assert set(subset["per_digit_accuracy"]) == {0, 1}
    with pytest.raises(ValueError, match="labels"):
        evaluate_samples(judge, real, labels[:-1])
    with pytest.raises(ValueError, match="0..9"):
        evaluate_samples(judge, real, labels + 5)


# ---------------------------------------------------------------------------------------------------------------------
# evaluate_pipeline with a test double that "generates" real held-out digits
# ---------------------------------------------------------------------------------------------------------------------


class HeldOutDigitsPipeline:
    """Stands in for a class-conditional pipeline: returns real held-out digits of the requested classes.

    Follows the diffusers ``output_type="pt"`` convention: ``.images`` is ``(B, 1, 28, 28)`` in ``[0, 1]``.
    """

    def __init__(self):
        self.images, self.labels = load_mnist5k("held_out")
        self.calls: list[dict] = []

    def __call__(self, batch_size, class_labels, generator, output_type="pil", **kwargs):
        assert output_type == "pt"
        assert isinstance(generator, torch.Generator)
        assert class_labels.dtype == torch.int64 and class_labels.shape == (batch_size,)
        self.calls.append({"batch_size": batch_size, "labels": class_labels.clone(), **kwargs})
        offset = int(torch.randint(0, 50, (), generator=generator))  # seeded choice of which real digits
        picked = []
        for label in class_labels.tolist():
            candidates = torch.nonzero(self.labels == label).flatten()
            picked.append(self.images[candidates[(offset + len(picked)) % len(candidates)]])
        return SimpleNamespace(images=(torch.stack(picked) + 1) / 2)


def test_evaluate_pipeline_with_default_arguments(judge):
    pipe = HeldOutDigitsPipeline()
    result = evaluate_pipeline(pipe, samples_per_digit=20, batch_size=64, judge=judge)
    assert [c["batch_size"] for c in pipe.calls] == [64, 64, 64, 8]
    # guidance_scale / num_inference_steps left to the pipeline's defaults: not passed at all.
    assert all(set(c) == {"batch_size", "labels"} for c in pipe.calls)
    requested = torch.cat([c["labels"] for c in pipe.calls])
    assert torch.equal(requested, torch.arange(10).repeat_interleave(20))
    assert result["samples_per_digit"] == {d: 20 for d in range(10)}
    assert result["mean_accuracy"] > 0.85
    assert result["frechet_distance"] < 2 * result["frechet_distance_real"] + 1.0
    assert result["guidance_scale"] is None and result["num_inference_steps"] is None and result["seed"] == 0
    # Deterministic for a seed.
    again = evaluate_pipeline(HeldOutDigitsPipeline(), samples_per_digit=20, batch_size=64, judge=judge)
    assert again["frechet_distance"] == result["frechet_distance"]


def test_evaluate_pipeline_passes_generation_settings(judge):
    pipe = HeldOutDigitsPipeline()
    result = evaluate_pipeline(
        pipe, samples_per_digit=5, guidance_scale=3.5, num_inference_steps=17, batch_size=100, judge=judge, seed=7
    )
    assert len(pipe.calls) == 1
    assert pipe.calls[0]["guidance_scale"] == 3.5 and pipe.calls[0]["num_inference_steps"] == 17
    assert result["guidance_scale"] == 3.5 and result["num_inference_steps"] == 17 and result["seed"] == 7
    assert result["num_samples"] == 50


def test_cli_prints_table_and_records_each_run(judge, tmp_path, monkeypatch, capsys):
    from ddpm_hub import UNET_PRESETS, DDPMHubPipeline, DDPMHubScheduler, DDPMHubUNet2DModel

    model_dir = tmp_path / "model"
    unet = DDPMHubUNet2DModel(**UNET_PRESETS["tiny"])  # untrained: the judge's scores are chance, the plumbing is real
    scheduler = DDPMHubScheduler(num_train_timesteps=10)  # the CLI's default w is the model's recorded one: 2 here
    DDPMHubPipeline(unet=unet, scheduler=scheduler, guidance_scale=2.0).save_pretrained(model_dir)
    monkeypatch.setattr(evaluation, "load_or_train_judge", lambda **kwargs: judge)
    out = tmp_path / "res" / "eval.json"
    common = [str(model_dir), "--samples_per_digit", "2", "--num_inference_steps", "2", "--json", str(out)]
    assert evaluation.main(common) == 0
    assert evaluation.main([*common, "--sampler", "ddim", "--guidance_scale", "1"]) == 0
    printed = capsys.readouterr().out
    assert "mean accuracy" in printed and "Fréchet distance" in printed
    runs = json.loads(out.read_text())
    assert set(runs) == {"ddpm-2steps-w2", "ddim-eta0-2steps-w1"}  # the second run is added, the first kept
    saved = runs["ddpm-2steps-w2"]
    assert saved["model"] == str(model_dir) and saved["num_samples"] == 20 and saved["num_inference_steps"] == 2
    assert saved["guidance_scale"] == 2.0 and saved["command"].startswith("python -m ddpm_hub.evaluation ")
    assert set(saved["per_digit_accuracy"]) == {str(d) for d in range(10)}
