"""What the Space's 2-D tab ("The whole distribution") shows on the bundled 2-D models, saved for the page's text.

    python benchmarks/twod_findings.py

Calls the tab's own functions (space/ddpm_space/distribution_tab.py, on space/mixture_models/) at the page's
defaults and writes `benchmarks/results/twod_findings.json`: the exact bound gaps of the variance question and their
crossing, the learned score's error far from the data, and the mean log p(x_0) of each sampler's particles. The
numbers are measurements, not timings: run it on any machine (about a minute on one core).
"""

import json
import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "twod_findings.json"


def number_after(pattern: str, markdown: str) -> float:
    """The bold number that follows `pattern` (a regular expression) in the page's Markdown."""
    return float(re.search(pattern + r"\s*\*\*(-?[\d.]+(?:e-?\d+)?)", markdown).group(1))


def main() -> None:
    torch.set_num_threads(1)
    from ddpm_space import distribution_tab as tab

    from ddpm_hub import GaussianMixture, MixtureDenoiser

    twod = tab.load(ROOT / "space" / "mixture_models")
    findings = {"command": "python benchmarks/twod_findings.py"}
    findings["bound_gap_bits_per_dim"] = {
        str(s): {
            v: round(MixtureDenoiser(GaussianMixture.gaussian(s), twod.scheduler).expected_bound_gap(v), 4)
            for v in ("beta", "beta_tilde")
        }
        for s in (0.01, 0.02, 0.05, 0.1, 1.0)
    }
    findings["crossover_s"] = round(tab.crossover(twod), 4)
    findings["score_ring8"] = {}
    for t in (0, 10, 100):
        _, text = tab.score(twod, "ring8", 1.0, t, None)
        findings["score_ring8"][str(t)] = {
            "rms_noise_error_bulk": number_after("on the grid", text),
            "rms_noise_error_far_median": number_after("of its peak", text),
            "far_arrow_length_ratio": number_after("learned arrows are", text),
            "far_arrow_angle_deg": number_after("as long as the exact ones and", text),
        }
    findings["reverse_ring8_100_steps_2000_particles_seed0"] = {}
    for sampler in tab.SAMPLERS:
        *_, (_, text) = tab.reverse(twod, "ring8", 1.0, sampler, 100, 2000, 0, None)
        exact, learned = (
            float(re.search(rf"{name} (-?\d+\.\d+)", text).group(1)) for name in ("exact denoiser", "learned")
        )
        real = float(re.search(r"real data \(\d+ draws\)\s+\*\*(-?\d+\.\d+)", text).group(1))
        rare = [float(v) for v in re.findall(r"\*\*(\d+\.\d+) %\*\*", text)]
        findings["reverse_ring8_100_steps_2000_particles_seed0"][sampler] = {
            "mean_log_p_exact": exact,
            "mean_log_p_learned": learned,
            "mean_log_p_real": real,
            "percent_rarer_than_real_1pct_exact": rare[0],
            "percent_rarer_than_real_1pct_learned": rare[1],
        }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(findings, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(findings, indent=2))


if __name__ == "__main__":
    main()
