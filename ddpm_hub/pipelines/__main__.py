"""Regenerates the code copies of saved pipeline folders (the bundled models), as `save_pretrained` writes them today:

    python -m ddpm_hub.pipelines --refresh-code space/default_model space/x0_model

Each folder's .py files are rewritten and the ones `save_pretrained` no longer writes are removed; weights, configs
and the card stay as they are (`ddpm_hub.pipelines.folder.refresh_code_copies`).
"""

import argparse
import sys

from .folder import refresh_code_copies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ddpm_hub.pipelines", description=__doc__.split("\n")[0])
    parser.add_argument("--refresh-code", nargs="+", required=True, metavar="FOLDER", help="saved pipeline folders")
    for folder in parser.parse_args(argv).refresh_code:
        changed = refresh_code_copies(folder)
        print(f"{folder}: {', '.join(changed) if changed else 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
