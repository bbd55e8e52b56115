"""Push an already-trained pipeline folder to the Hub, or to an olah mirror git repository.

    python -m ddpm_hub.push FOLDER --repo_id ORG/NAME [--private] [--commit_message MSG] [--revision REV] [--token T]
    python -m ddpm_hub.push FOLDER --repo_id ORG/NAME --mirror_dir DIR [--commit_message MSG]

(also installed as the ``ddpm-hub-push`` command). Only the pipeline files are pushed (see
``ddpm_hub.hub.PIPELINE_FILE_PATTERNS``); ``checkpoints/``, ``logs/`` and ``.bin`` files stay local. The model card is
published with ORG/NAME in its loading snippets (``ddpm_hub.hub.retarget_model_card``); the local one is not changed.
The Hub endpoint is ``HF_ENDPOINT`` (default https://huggingface.co). Exit status: 0 on success, 1 on failure.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ddpm_hub.hub import HubPushError, push_to_hub, push_to_mirror, select_pipeline_files


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ddpm-hub-push",
        description="Push a saved pipeline folder (the output of save_pretrained) to the Hub or to a mirror git repo.",
    )
    parser.add_argument("folder", help="pipeline folder holding model_index.json")
    parser.add_argument("--repo_id", required=True, help="target repository, ORG/NAME")
    parser.add_argument(
        "--mirror_dir",
        default=None,
        help="commit to the git repo DIR/models/ORG/NAME (served by olah) instead of uploading to the Hub",
    )
    parser.add_argument("--private", action="store_true", help="create the Hub repository as private")
    parser.add_argument("--commit_message", default="Upload pipeline")
    parser.add_argument("--revision", default=None, help="existing Hub branch to commit to (default: main)")
    parser.add_argument(
        "--create_pr", action="store_true", help="open a pull request on the Hub instead of committing"
    )
    parser.add_argument("--token", default=None, help="Hub token with write access (default: the saved login)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.mirror_dir is not None:
            ignored = [
                flag
                for flag, given in [
                    ("--private", args.private),
                    ("--revision", args.revision is not None),
                    ("--create_pr", args.create_pr),
                    ("--token", args.token is not None),
                ]
                if given
            ]
            if ignored:
                raise ValueError(
                    f"{', '.join(ignored)} cannot be used with --mirror_dir (mirror pushes commit to branch main)"
                )
            sha = push_to_mirror(args.folder, args.mirror_dir, args.repo_id, commit_message=args.commit_message)
            print(f"pushed {len(select_pipeline_files(args.folder))} files of {args.folder} to the mirror repo")
            print(f"  {args.mirror_dir}/models/{args.repo_id} (branch main, commit {sha})")
        else:
            where = push_to_hub(
                args.folder,
                args.repo_id,
                token=args.token,
                private=args.private,
                commit_message=args.commit_message,
                revision=args.revision,
                create_pr=args.create_pr,
            )
            print(f"pushed {len(select_pipeline_files(args.folder))} files of {args.folder} to {args.repo_id}")
            print(f"  {where}")
    except (HubPushError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
