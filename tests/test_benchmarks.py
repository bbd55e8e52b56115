"""The README's benchmark numbers come from the results files, and the table builder reads them correctly."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_readme_table():
    spec = importlib.util.spec_from_file_location("readme_table", ROOT / "benchmarks" / "readme_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_benchmark_table_matches_the_results_files():
    readme_table = load_readme_table()
    assert readme_table.main(["--check"]) == 0, "README.md is stale: run python benchmarks/readme_table.py"


def test_every_readme_row_cites_a_listed_command():
    block = load_readme_table().render()
    commands = [line for line in block.splitlines() if line[:1].isdigit() and ". `python " in line]
    rows = [line for line in block.splitlines() if line.startswith("| ") and not line.startswith("| measurement")]
    assert rows and commands
    for row in rows:
        cited = int(row.rsplit("[", 1)[1].split("]", 1)[0])
        assert 1 <= cited <= len(commands)


def test_sampling_rows_read_speedups_and_goals(tmp_path, monkeypatch):
    readme_table = load_readme_table()
    step = {"stock_eager": {"speedup_vs_stock": 1.0, "peak_fraction": 0.4}}
    result = {
        "threads": 2,
        "command": "python benchmarks/bench_sampling.py",
        "per_step": {
            "1": {**step, "ours_eager": {"speedup_vs_stock": 1.6, "peak_fraction": 0.1}},
            "64": {**step, "ours_eager": {"speedup_vs_stock": 1.4, "peak_fraction": 0.55}},
        },
    }
    rows = readme_table.sampling_rows(result)
    assert rows[0][1:3] == ["1.60x / 1.40x", ">= 1.5x"]
    assert rows[0][3] == "**no**"  # 1.4x at batch 64 misses the goal
    assert rows[1][1] == "55%" and rows[1][3] == "yes"

    monkeypatch.setattr(readme_table, "RESULTS_DIR", tmp_path)
    (tmp_path / "sampling_threads2.json").write_text(json.dumps(result))
    block = readme_table.render()
    assert "| time per DDPM step, batch 1 / 64, 2 threads: float32, as shipped | 1.60x / 1.40x |" in block
    assert "1. `python benchmarks/bench_sampling.py`" in block
