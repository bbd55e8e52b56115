"""A saved pipeline folder: the code files it carries, how they are copied, and the checks made when loading one.

    python -m ddpm_hub.pipelines --refresh-code space/default_model space/x0_model

rewrites the code copies of saved folders (the bundled models) as `save_pretrained` writes them today, and removes
code files it no longer writes; weights and json files stay as they are.

This file imports nothing from `ddpm_hub` by name (the installed package is looked up at run time, by
`component_class` and `refresh_code_copies`): it travels with the pipeline's code into saved folders.
"""

import importlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from .chain import _short

# How a saved folder names the component code it carries (diffusers' custom-component layout:
# model_index.json lists [module file, class] and the file sits in the component's folder).
PIPELINE_FILE = "pipeline_ddpm_hub"
COMPONENT_FILES = {"unet": "unet_ddpm_hub", "scheduler": "scheduling_ddpm_hub"}
COMPONENT_FILES_BY_CLASS = {"DDIMHubScheduler": "scheduling_ddim_hub"}  # one file name per class: no clash on load
# diffusers' `from_pretrained` arguments that this pipeline passes on (to the component loaders).
HUB_ARGUMENTS = ("cache_dir", "force_download", "proxies", "local_files_only", "token", "revision")
MODEL_ARGUMENTS = (
    "torch_dtype",
    "variant",
    "use_safetensors",
    "low_cpu_mem_usage",
    "device_map",
    "max_memory",
    "offload_folder",
    "offload_state_dict",
    "disable_mmap",
)
COMPONENTS = ("unet", "scheduler")


def copy_code(source_file: str, folder: str, module_file: str) -> None:
    """Copies `source_file` to folder/module_file.py, with the files it imports relatively (`from .x import`)."""
    shutil.copyfile(source_file, os.path.join(folder, f"{module_file}.py"))
    pending, copied = [source_file], set()
    while pending:
        with open(pending.pop(), encoding="utf-8") as f:
            code = f.read()
        for name in re.findall(r"^\s*from\s+\.(\w+)\s+import", code, flags=re.MULTILINE):  # diffusers' own rule
            if name not in copied:
                copied.add(name)
                dependency = os.path.join(os.path.dirname(source_file), f"{name}.py")
                shutil.copyfile(dependency, os.path.join(folder, f"{name}.py"))
                pending.append(dependency)


def check_pipeline_folder(source: str, needed: list[str]) -> None:
    """Raises a ValueError that says what is wrong when `source` is meant as a local folder and is not a pipeline.

    A name is meant as a local folder when it exists, starts like a path (/, ., ~), has more than one "/", or its
    first part is a folder here (a mistyped `runs/my_pipline`); otherwise it is a Hub repo id.
    """
    layout = "a folder saved by `DDPMHubPipeline.save_pretrained` holds model_index.json, unet/ and scheduler/"
    if os.path.isdir(source):
        if not os.path.isfile(os.path.join(source, "model_index.json")):
            # sub-folders first: they tell a pipeline from a single component better than its code files do
            found = sorted(os.listdir(source), key=lambda name: (not os.path.isdir(os.path.join(source, name)), name))
            hint = ""
            if "config.json" in found:
                hint = " It looks like a single model's folder: load it with `DDPMHubUNet2DModel.from_pretrained`."
            elif "scheduler_config.json" in found:
                hint = " It looks like a scheduler's folder: load it with `DDPMHubScheduler.from_pretrained`."
            raise ValueError(
                f"The folder {source!r} is not a saved pipeline: it has no model_index.json ({layout}; this one "
                f"holds {_short(found[:12])}).{hint}"
            )
        for name in needed:
            if not os.path.isdir(os.path.join(source, name)):
                raise ValueError(f"The folder {source!r} has no {name}/ subfolder ({layout}).")
        return
    if os.path.exists(source):
        raise ValueError(f"{source!r} is a file, not a pipeline folder ({layout}).")
    first = source.replace("\\", "/").split("/")[0]
    looks_local = source.startswith(("/", ".", "~")) or source.count("/") > 1 or "\\" in source
    if looks_local or (first and source != first and os.path.isdir(first)):
        parent = os.path.dirname(os.path.abspath(os.path.expanduser(source)))
        while parent and not os.path.isdir(parent):
            parent = os.path.dirname(parent) if os.path.dirname(parent) != parent else ""
        nearby = sorted(os.listdir(parent))[:12] if parent else []
        raise ValueError(
            f"There is no folder {source!r} (read as a local path, not a Hub repo id 'owner/name'). The nearest "
            f"existing folder is {parent!r}, which holds {_short(nearby)}."
        )


def component_class(index: dict, name: str):
    """The installed class for a component named in model_index.json: ddpm_hub's, or diffusers' by name."""
    entry = index.get(name)
    if not isinstance(entry, list | tuple) or len(entry) != 2:
        raise ValueError(f"model_index.json has no [library, class] entry for `{name}` (got {entry!r}).")
    library_name, class_name = entry
    library = importlib.import_module("ddpm_hub")  # installed package; the folder's code copies stay unused
    if class_name in getattr(library, "__all__", []):
        return getattr(library, class_name)
    diffusers = importlib.import_module("diffusers")
    if library_name == "diffusers" and hasattr(diffusers, class_name):
        return getattr(diffusers, class_name)
    raise ValueError(
        f"model_index.json names `{name}` = {entry!r}, which is neither a ddpm_hub class nor a diffusers one."
    )


def refresh_code_copies(folder: str | os.PathLike) -> list[str]:
    """Rewrites the .py files of a saved pipeline folder as `save_pretrained` writes them today; returns the relative
    paths written or removed. The pipeline is loaded with the installed classes and saved to a scratch folder, whose
    code files replace the folder's (stale ones are removed); weights, configs and the card are not touched."""
    folder = Path(folder)
    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    pipeline_class = getattr(importlib.import_module("ddpm_hub"), index["_class_name"][1])
    changed = []
    with tempfile.TemporaryDirectory() as scratch:
        pipeline_class.from_pretrained(folder).save_pretrained(scratch)
        written = {path.relative_to(scratch).as_posix() for path in Path(scratch).rglob("*.py")}
        for stale in sorted({path.relative_to(folder).as_posix() for path in folder.rglob("*.py")} - written):
            (folder / stale).unlink()
            changed.append(stale)
        for name in sorted(written):
            code = (Path(scratch) / name).read_bytes()
            if not (folder / name).is_file() or (folder / name).read_bytes() != code:
                (folder / name).write_bytes(code)
                changed.append(name)
    return changed
