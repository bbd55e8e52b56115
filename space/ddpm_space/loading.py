"""Loading the model(s) once: a saved pipeline folder or a Hub repo, its display name, its recorded guidance curve."""

from __future__ import annotations

import json
from pathlib import Path

from ddpm_hub import DDPMHubPipeline


def load_pipeline(model_id: str, revision: str = "main", default_model: str | None = None) -> DDPMHubPipeline:
    """The pipeline from a local folder or a Hub repo (at `revision`)."""
    if Path(model_id).is_dir():
        if not (Path(model_id) / "model_index.json").is_file():
            raise RuntimeError(
                f"{model_id} has no model_index.json: train the default model first, or set DDPM_HUB_MODEL to a "
                "saved pipeline folder or a Hub repo id (e.g. ddpm-hub/ddpm-mnist-small)."
            )
        pipeline = DDPMHubPipeline.from_pretrained(model_id)
    elif model_id == default_model:
        raise RuntimeError(
            f"The bundled model {model_id} is missing: set DDPM_HUB_MODEL to a saved pipeline folder or a Hub repo id "
            "(e.g. ddpm-hub/ddpm-mnist-small)."
        )
    else:
        pipeline = DDPMHubPipeline.from_pretrained(model_id, revision=revision)
    pipeline.unet.eval()
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def model_name(model_id: str, revision: str, default_model: str) -> str:
    """How the page names the model: the bundled one, a local folder, or a Hub repo at a revision."""
    if model_id == default_model:
        return "ddpm-hub/ddpm-mnist-small, bundled"
    return Path(model_id).name if Path(model_id).is_dir() else f"{model_id}@{revision}"


def guidance_curve(model_id: str | None) -> dict | None:
    """The guidance curve measured on a local model folder (``evaluation.json``'s ``guidance_curve``, written by
    ``benchmarks/bench_nfe.py --curve guidance --record_in_model``) with its plot's path, or None (a Hub id, or no
    curve recorded)."""
    path = Path(model_id) / "evaluation.json" if model_id else None
    if path is None or not path.is_file():
        return None
    curve = json.loads(path.read_text(encoding="utf-8")).get("guidance_curve")
    if not curve:
        return None
    plot = Path(model_id) / curve["plot"] if curve.get("plot") else None
    return {**curve, "plot_path": str(plot) if plot is not None and plot.is_file() else None}
