"""What the Space's objective tab and its four questions show on the bundled model(s), saved for the page's text.

    python benchmarks/space_findings.py                     # all experiments, the Space's default settings
    python benchmarks/space_findings.py --only bound,elbo   # some of them: bound, at_t, noise, time, x0, elbo

Runs the Space's own handlers (space/app.py, so exactly what a visitor sees) and writes, under
`benchmarks/results/space_findings/`, one PNG per picture or plot and `findings.json` with the numbers (bits/dim of
the digit, the two ELBO spreads, the eps-vs-x_0 errors, the pixel statistics of the question samples). The numbers
are measurements, not timings: run it on any machine. Question 3 needs the x_0-prediction model in space/x0_model
(or DDPM_HUB_X0_MODEL).
"""

import argparse
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "space_findings"
EXPERIMENTS = ("bound", "at_t", "noise", "time", "x0", "elbo")


def load_space():
    import importlib.util

    spec = importlib.util.spec_from_file_location("space_app", ROOT / "space" / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    return app


def save(name: str, value) -> str:
    """A picture (uint8 array) or a matplotlib figure as OUT/name.png."""
    path = OUT / f"{name}.png"
    if isinstance(value, np.ndarray):
        Image.fromarray(value).save(path)
    else:
        value.savefig(path)
    return str(path.relative_to(ROOT))


def last(stream):
    """The last frame a streaming handler yields."""
    frames = iter(stream)
    frame = next(frames)
    for frame in frames:  # noqa: B007 - only the last one is kept
        pass
    return frame


def numbers(markdown: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+\.\d+", markdown)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--only", default=",".join(EXPERIMENTS), help=f"comma-separated, from {', '.join(EXPERIMENTS)}"
    )
    parser.add_argument("--digit", type=int, default=300, help="the held-out digit of the bound, t, x0 and elbo runs")
    parser.add_argument("--draws", type=int, default=16, help="trajectories of the ELBO experiment")
    parser.add_argument(
        "--steps", type=int, default=None, help="chain steps of the noise and time questions (default T)"
    )
    args = parser.parse_args(argv)
    wanted = args.only.split(",")
    OUT.mkdir(parents=True, exist_ok=True)
    app = load_space()
    findings_path = OUT / "findings.json"
    findings = {"model": app.SPACE.model_name}
    digit, caption = app.load_digit(args.digit)
    steps = args.steps or app.T
    print(caption)

    if "bound" in wanted:
        terms, forms, summary = last(app.bound(digit, "any", 0))
        findings["bound"] = {
            "digit": args.digit,
            "summary": summary,
            "plots": [save("bound_terms", terms), save("bound_forms", forms)],
        }
        print(summary)
    if "at_t" in wanted:
        findings["at_t"] = {}
        for t in (10, app.T // 10, app.T // 2, app.T - 1):
            *pictures, table, weights = app.at_t(digit, "any", t, 0)
            names = ("xt", "eps", "eps_hat", "diff", "x0_hat", "score")
            strip = np.concatenate([np.pad(p, 4, constant_values=255) for p in pictures], axis=1)
            findings["at_t"][t] = {"table": table, "pictures": save(f"at_t_{t}", strip), "order": names}
            save(f"at_t_{t}_weights", weights)
            print(table)
    if "noise" in wanted:
        with_noise, mean_only, info = last(app.fresh_noise("3", 2.0, "ddpm-fixed_small", steps, 1, 4))
        findings["noise"] = {
            "steps": steps,
            "info": info,
            "pictures": [save("q1_noise", with_noise), save("q1_mean", mean_only)],
        }
        print(info)
    if "time" in wanted:
        for wrong, value in (("fixed", app.T // 2), ("shift", app.T // 4)):
            right, bad, eps_right, eps_wrong, info = last(
                app.timestep_input("3", 2.0, steps, 2, 4, wrong, value, app.T // 10)
            )
            findings[f"time_{wrong}"] = {
                "steps": steps,
                "value": value,
                "info": info,
                "pictures": [
                    save(f"q2_{wrong}_{name}", p)
                    for name, p in (
                        ("right", right),
                        ("wrong", bad),
                        ("eps_right", eps_right),
                        ("eps_wrong", eps_wrong),
                    )
                ],
            }
            print(info)
    if "x0" in wanted:
        if app.SPACE.x0_pipe is None:
            print("question 3 skipped: no x_0-prediction model (space/x0_model or DDPM_HUB_X0_MODEL)")
        else:
            x0_digit, _ = app.load_digit(700)
            eps_samples, x0_samples, loss, info = last(app.noise_vs_x0(x0_digit, "3", 2.0, min(100, app.T), 3, 4))
            findings["x0"] = {
                "info": info,
                "pictures": [save("q3_eps", eps_samples), save("q3_x0", x0_samples), save("q3_loss", loss)],
            }
            print(info)
    if "elbo" in wanted:
        histogram, info = last(app.elbo_forms(digit, "any", args.draws, 4))
        findings["elbo"] = {
            "draws": args.draws,
            "info": info,
            "plot": save("q4_elbo", histogram),
            "numbers": numbers(info),
        }
        print(info)
    findings["command"] = " ".join(["python", *sys.argv]) + (
        f"  (threads: {os.environ.get('DDPM_HUB_THREADS', 'default')})"
    )
    earlier = json.loads(findings_path.read_text()) if findings_path.is_file() else {}  # other experiments' runs
    findings_path.write_text(json.dumps({**earlier, **findings}, indent=2, ensure_ascii=False))
    print(f"saved {findings_path}")


if __name__ == "__main__":
    main()
