"""Every Python block of the README runs, in order, in one namespace, as a reader pastes them into one session.

A block that needs what no test has (a pushed Hub repository, say) starts with a `# needs: ...` comment that says
what; it is skipped by that mark, and the test checks that such a block says so instead of failing silently.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
NEEDS = "# needs:"


def readme_blocks() -> list[str]:
    return BLOCK.findall((ROOT / "README.md").read_text(encoding="utf-8"))


def test_the_readme_has_python_blocks_and_marks_what_it_cannot_run():
    blocks = readme_blocks()
    assert len(blocks) >= 4
    for block in blocks:
        if "ORG/NAME" in block:
            assert block.startswith(NEEDS), f"a block with a placeholder repo id must say what it needs:\n{block}"


def test_readme_python_blocks_run_in_order(tmp_path, monkeypatch):
    """The README's library examples, pasted one after another (bundled model, run from the repository root)."""
    monkeypatch.chdir(ROOT)
    namespace: dict = {"__name__": "__readme__"}
    ran = 0
    for index, block in enumerate(readme_blocks(), start=1):
        if block.startswith(NEEDS):
            continue
        # files the examples save go to a temporary folder, not the checkout
        code = compile(
            block.replace('.save("', f'.save("{tmp_path}{os.sep}'), f"README.md python block {index}", "exec"
        )
        exec(code, namespace)  # noqa: S102 - the README's own code
        ran += 1
    assert ran >= 3
    assert list(tmp_path.glob("*.png")), "the first example saves an image"
    images = namespace["images"]
    assert len(images) == 4 and images[0].size == (28, 28)
