"""The ONNX graphs of `ddpm_hub.export` against PyTorch on the same inputs, with onnxruntime (CPU).

Each graph is exported once from the bundled model (space/default_model). The bar is float32: max abs difference
<= 1e-4 per step, for the U-Net, both step graphs (x_{t-1}, x_0, eps), a few chained steps, and noising.
"""

import json

import numpy as np
import pytest
import torch

from ddpm_hub import DDPMHubPipeline
from ddpm_hub.export import (
    DDIM_STEP_OPTIONS,
    SAMPLERS,
    check_steps,
    example_step_inputs,
    export,
    sampler_scheduler,
    step_file,
)
from ddpm_hub.pipelines.chain import guide

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e .[test])")
pytest.importorskip("onnx", reason="onnx is not installed (pip install -e .[export])")

MODEL = "space/default_model"
ATOL = 1e-4


@pytest.fixture(scope="module")
def pipe():
    return DDPMHubPipeline.from_pretrained(MODEL)


@pytest.fixture(scope="module")
def exported(pipe, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    written = export(pipe, out, steps={"ddpm": [1000, 50], "ddim": [20]})
    return out, written


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the machine is shared; results do not depend on it
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run(sess, inputs: dict[str, torch.Tensor]) -> list[np.ndarray]:
    """Runs `sess` on the inputs it declares (DDIM's eta = 0 graph has no `noise`)."""
    names = {i.name for i in sess.get_inputs()}
    return sess.run(None, {k: v.numpy() for k, v in inputs.items() if k in names})


@torch.no_grad()
def reference_step(pipe, scheduler, sampler, inputs):
    """What `DenoisingChain.step` computes for these inputs: the U-Net at 2B rows, `guide`, the scheduler's `step`."""
    sample, labels, t = inputs["sample"], inputs["class_labels"], int(inputs["timestep"])
    batch = sample.shape[0]
    rows = torch.cat([labels, torch.full((batch,), pipe.num_classes)])
    output = pipe.unet(torch.cat([sample, sample]), torch.full((2 * batch,), t), class_labels=rows).sample
    guided = guide(output, sample.shape[1], float(inputs["guidance_scale"]))
    if sampler == "ddim":
        out = scheduler.step(guided, t, sample, **DDIM_STEP_OPTIONS)
    else:
        last = int(inputs["prev_timestep"]) < 0
        out = scheduler.step(guided, t, sample, variance_noise=None if last else inputs["noise"])
    return [out.prev_sample, out.pred_original_sample, out.pred_epsilon]


def assert_step_close(got, want, alpha_bar_t, where):
    """x_{t-1} and eps within ATOL; x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t) amplifies the U-Net's
    float32 rounding by 1 / sqrt(alpha_bar_t) (~130 at t = 980), so it is compared as sqrt(alpha_bar_t) x_0, the term
    of x_t the step uses, and unscaled where sqrt(alpha_bar_t) >= 0.5."""
    prev, x0, eps = (np.abs(g - w.numpy()).max() for g, w in zip(got, want, strict=True))
    scaled_x0 = np.abs(got[1] - want[1].numpy()).max() * alpha_bar_t**0.5
    assert prev <= ATOL and eps <= ATOL and scaled_x0 <= ATOL, (where, prev, x0, eps, scaled_x0)
    if alpha_bar_t**0.5 >= 0.5:
        assert x0 <= ATOL, (where, x0)


def test_unet_graph_matches_pytorch(pipe, exported):
    out, written = exported
    sess = session(written["unet"])
    generator = torch.Generator().manual_seed(1)
    for batch in (1, 5):  # the graph was traced at 4 rows: the batch axis is free
        sample = torch.randn(batch, 1, 28, 28, generator=generator)
        timestep = torch.randint(0, 1000, (batch,), generator=generator)
        labels = torch.randint(0, 11, (batch,), generator=generator)  # 10 = the null class
        (got,) = run(sess, {"sample": sample, "timestep": timestep, "class_labels": labels})
        with torch.no_grad():
            want = pipe.unet(sample, timestep, class_labels=labels).sample
        assert np.abs(got - want.numpy()).max() <= ATOL


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_step_graph_matches_pytorch(pipe, exported, sampler):
    out, written = exported
    sess = session(written[f"step_{sampler}"])
    table = json.loads(written["tables"].read_text())["samplers"][sampler]["steps"]
    steps = "50" if sampler == "ddpm" else "20"
    rows = table[steps]
    scheduler = sampler_scheduler(pipe, sampler)
    scheduler.set_timesteps(int(steps))
    for index in (0, len(rows) // 2, len(rows) - 1):  # the first step (t near T), the middle, the last (to x_0)
        row = rows[index]
        for batch in (1, 3):
            inputs = example_step_inputs(pipe, batch, seed=index)
            inputs["timestep"], inputs["prev_timestep"] = torch.tensor([row["t"]]), torch.tensor([row["prev_t"]])
            want = reference_step(pipe, scheduler, sampler, inputs)
            assert_step_close(run(sess, inputs), want, row["alpha_bar_t"], (sampler, row["t"], batch))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_chained_steps_match_pytorch(pipe, exported, sampler):
    """Five steps from x_T, each side feeding its own x_{t-1} to the next: the difference stays within ATOL."""
    out, written = exported
    sess = session(written[f"step_{sampler}"])
    rows = json.loads(written["tables"].read_text())["samplers"][sampler]["steps"][
        "1000" if sampler == "ddpm" else "20"
    ]
    scheduler = sampler_scheduler(pipe, sampler)
    scheduler.set_timesteps(len(rows))
    inputs = example_step_inputs(pipe, 2, seed=5)
    ours, theirs = inputs["sample"], inputs["sample"]
    generator = torch.Generator().manual_seed(6)
    for row in rows[:5]:
        noise = torch.randn(ours.shape, generator=generator)
        step_inputs = {**inputs, "timestep": torch.tensor([row["t"]]), "prev_timestep": torch.tensor([row["prev_t"]])}
        got = run(sess, {**step_inputs, "sample": ours, "noise": noise})
        want = reference_step(pipe, scheduler, sampler, {**step_inputs, "sample": theirs, "noise": noise})
        assert_step_close(got, want, row["alpha_bar_t"], (sampler, row["t"]))
        ours, theirs = torch.from_numpy(got[0]), want[0]


def test_noising_graph_matches_add_noise(pipe, exported):
    out, written = exported
    sess = session(written["noising"])
    generator = torch.Generator().manual_seed(2)
    x0, noise = torch.rand(3, 1, 28, 28, generator=generator) * 2 - 1, torch.randn(3, 1, 28, 28, generator=generator)
    for t in (0, 250, 999):
        (got,) = run(sess, {"sample": x0, "timestep": torch.tensor([t]), "noise": noise})
        want = pipe.scheduler.add_noise(x0, noise, torch.tensor([t]))
        assert np.abs(got - want.numpy()).max() <= ATOL


def test_tables_are_the_schedulers(pipe, exported):
    """tables.json holds the scheduler's own timesteps, sigma_t and coefficients, and the model's recorded w."""
    out, written = exported
    tables = json.loads(written["tables"].read_text())
    assert tables["model"]["guidance_scale"] == pipe.config.guidance_scale
    for sampler, counts in (("ddpm", [1000, 50]), ("ddim", [20])):
        assert tables["samplers"][sampler]["file"] == step_file(sampler)
        assert (out / step_file(sampler)).is_file()
        for n in counts:
            scheduler = sampler_scheduler(pipe, sampler)
            scheduler.set_timesteps(n)
            rows = tables["samplers"][sampler]["steps"][str(n)]
            assert [r["t"] for r in rows] == scheduler.timesteps.tolist()
            assert [r["prev_t"] for r in rows] == [
                scheduler.previous_timestep(t) for t in scheduler.timesteps.tolist()
            ]
            assert rows[-1]["sigma"] == 0.0
    # DDPM's sigma_t is the std its `step` adds
    scheduler = sampler_scheduler(pipe, "ddpm")
    scheduler.set_timesteps(50)
    row = tables["samplers"]["ddpm"]["steps"]["50"][3]
    z = torch.zeros(1, 1, 28, 28)
    assert row["sigma"] == pytest.approx(float(scheduler.step(z, row["t"], z, variance_noise=z).std.reshape(())))
    assert tables["noising"]["sqrt_alpha_bar_t"][400] == pipe.scheduler.coefficients(400)["sqrt_alpha_bar_t"]


def test_bad_arguments_raise_value_errors(pipe, tmp_path):
    with pytest.raises(ValueError, match="`samplers`.*allowed values"):
        export(pipe, tmp_path, samplers=["euler"])
    with pytest.raises(ValueError, match="Invalid sampler 'plms' in `steps`"):
        check_steps({"plms": [10]}, 1000)
    with pytest.raises(ValueError, match=r"integers in \[1, 1000\]"):
        check_steps({"ddpm": [0]}, 1000)
    with pytest.raises(ValueError, match="no step counts for"):
        export(pipe, tmp_path, samplers=["ddim"], steps={"ddpm": [10]})
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="`out`.*is a file"):
        export(pipe, tmp_path / "file")
    with pytest.raises(ValueError, match="Invalid `sampler`"):
        sampler_scheduler(pipe, "dpm")
