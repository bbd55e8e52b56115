"""The Space under load: 1, 4, 8 and 16 gradio_client users press Generate with the page defaults at the same moment.

    python benchmarks/bench_space_load.py                          # the bundled model, 1 4 8 16 users
    python benchmarks/bench_space_load.py --users 1 2 --steps 20   # a quick look (prints only, saves nothing)

The Space (space/app.py) runs in its own process on a free port; each user is a separate `gradio_client.Client` (its
own session) in its own thread, created before the clock starts. For each number of users it prints the time to the
first streamed frame (min / median / max), the time to the end, the digit-steps per second the Space delivered
(users x digits x steps / the slowest user's time) and the errors, beside the sequential baseline: the same chains run
one after the other (n x one user's time alone, measured in the 1-user round). Writes `results/space_load.json` (and
rebuilds `results/RESULTS.md`) when run with the defaults, unless `--no_save`.

Goals (issue 11): with 8 users every first frame within 2 s, the slowest user done within the sequential time (no
throughput lost), 0 errors.
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import common  # benchmarks/common.py: the script's folder is on sys.path

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_USERS = [1, 4, 8, 16]
GOALS = {"users": 8, "first_frame_s": 2.0}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tiny_model(folder: Path) -> str:
    """A randomly initialised tiny pipeline (T = 50): for trying the script out, not for numbers."""
    import torch

    from ddpm_hub import UNET_PRESETS, DDPMHubPipeline, DDPMHubScheduler, DDPMHubUNet2DModel

    torch.manual_seed(0)
    unet = DDPMHubUNet2DModel(**UNET_PRESETS["tiny"])
    DDPMHubPipeline(unet=unet, scheduler=DDPMHubScheduler(num_train_timesteps=50)).save_pretrained(folder)
    return str(folder)


def launch_space(model: str | None, threads: int | None, timeout: float = 300) -> tuple[subprocess.Popen, str]:
    """`python space/app.py` on a free port; returns the process and its URL once it answers."""
    port = free_port()
    env = {
        **os.environ,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    if model:
        env["DDPM_HUB_MODEL"] = model
    if threads:
        env["DDPM_HUB_THREADS"] = str(threads)
    process = subprocess.Popen([sys.executable, str(ROOT / "space" / "app.py")], env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"The Space exited with code {process.returncode} before it answered.")
        try:
            with urllib.request.urlopen(url + "config", timeout=5):
                return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"The Space did not answer at {url} within {timeout:.0f} s.")


def page_defaults(client) -> dict:
    """The Generate tab's controls as the page sets them, read from the Space's own API description."""
    parameters = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/generate"]["parameters"]
    return {p["parameter_name"]: p["parameter_default"] for p in parameters if p["parameter_has_default"]}


def is_frame(output) -> bool:
    """A streamed picture of the chain (not a "waiting in the queue" message)."""
    x, info = output[0], output[3]
    return x is not None and not str(info).startswith("**Waiting")


def run_users(url: str, count: int, settings: dict, downloads: Path, timeout: float) -> list[dict]:
    """`count` users submit Generate at the same moment; per user: first frame, end, error."""
    from gradio_client import Client

    clients = [
        Client(url, verbose=False, download_files=str(downloads / f"user{i}"), analytics_enabled=False)
        for i in range(count)
    ]
    start = threading.Barrier(count)
    results = [{} for _ in range(count)]

    def user(index: int) -> None:
        result = results[index]
        start.wait()
        began = time.perf_counter()
        try:
            job = clients[index].submit(**{**settings, "seed": settings["seed"] + index}, api_name="/generate")
            last = None
            for output in job:
                if "first_frame_s" not in result and is_frame(output):
                    result["first_frame_s"] = time.perf_counter() - began
                last = output
                if time.perf_counter() - began > timeout:
                    raise TimeoutError(f"not done after {timeout:.0f} s")
            error = job.exception()
            if error is not None:
                raise error
            if last is None or not str(last[3]).startswith("**Done"):
                raise RuntimeError(f"the chain ended without its final frame: {str(last and last[3])[:80]!r}")
        except Exception as err:  # counted, reported, and the other users go on
            result["error"] = f"{type(err).__name__}: {err}"
        result["end_s"] = time.perf_counter() - began

    threads = [threading.Thread(target=user, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for client in clients:
        client.close()
    return results


def spread(values: list[float]) -> dict:
    if not values:
        return {"min": None, "median": None, "max": None}
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, nargs="+", default=DEFAULT_USERS, help="simultaneous users per round")
    parser.add_argument("--steps", type=int, default=None, help="chain steps (default: the page's)")
    parser.add_argument("--batch", type=int, default=None, help="digits per chain (default: the page's)")
    parser.add_argument("--model", default=None, help="DDPM_HUB_MODEL for the Space (default: the bundled model)")
    parser.add_argument("--tiny", action="store_true", help="a random tiny model (T = 50), to try the script out")
    parser.add_argument("--threads", type=int, default=None, help="DDPM_HUB_THREADS for the Space")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds one user may take")
    parser.add_argument("--no_save", action="store_true", help="print only")
    args = parser.parse_args(argv)
    custom = args.steps is not None or args.batch is not None or args.model or args.tiny or args.users != DEFAULT_USERS
    save = not args.no_save and not custom  # only the settings make the results file
    rounds = sorted(set(args.users) | {1})  # the 1-user round is the sequential baseline's unit

    machine = common.machine_info()
    print(f"{common.command_line()}\n{common.load_line()}")
    with tempfile.TemporaryDirectory(prefix="bench_space_load_") as scratch:
        model = tiny_model(Path(scratch) / "tiny") if args.tiny else args.model
        process, url = launch_space(model, args.threads)
        try:
            from gradio_client import Client

            probe = Client(url, verbose=False, download_files=str(Path(scratch) / "probe"), analytics_enabled=False)
            settings = page_defaults(probe)
            probe.close()
            if args.steps is not None:
                settings["steps"] = args.steps
            if args.batch is not None:
                settings["batch"] = args.batch
            print(f"Generate with {settings}")
            run_users(url, 1, {**settings, "steps": 5}, Path(scratch) / "warmup", args.timeout)  # first-call costs
            rows = {}
            for count in rounds:
                users = run_users(url, count, settings, Path(scratch) / f"round{count}", args.timeout)
                rows[count] = users
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()

    digit_steps = int(settings["batch"]) * int(settings["steps"])
    alone_s = statistics.median(u["end_s"] for u in rows[1])
    report = {}
    print(f"\n{'users':>5} {'first frame min/median/max (s)':>32} {'end min/median/max (s)':>26} "
          f"{'sequential (s)':>15} {'digit-steps/s':>14} {'errors':>7}")  # fmt: skip
    for count in rounds:
        users = rows[count]
        first = spread([u["first_frame_s"] for u in users if "first_frame_s" in u])
        end = spread([u["end_s"] for u in users])
        errors = [u["error"] for u in users if "error" in u]
        report[count] = {
            "first_frame_s": first,
            "end_s": end,
            "sequential_s": count * alone_s,
            "digit_steps_per_s": count * digit_steps / end["max"],
            "sequential_digit_steps_per_s": digit_steps / alone_s,
            "errors": errors,
            "users": users,
        }
        print(f"{count:>5} {first['min'] or 0:10.2f} {first['median'] or 0:10.2f} {first['max'] or 0:10.2f} "
              f"{end['min']:8.1f} {end['median']:8.1f} {end['max']:8.1f} {count * alone_s:15.1f} "
              f"{count * digit_steps / end['max']:14.0f} {len(errors):>7}")  # fmt: skip
        for error in errors[:3]:
            print(f"      error: {error}")

    goal_users = GOALS["users"] if GOALS["users"] in report else max(report)
    at_goal = report[goal_users]
    checks = [
        (f"{goal_users} users: every first frame within {GOALS['first_frame_s']:g} s",
         at_goal["first_frame_s"]["max"] is not None and at_goal["first_frame_s"]["max"] <= GOALS["first_frame_s"]
         and len(at_goal["errors"]) == 0),
        (f"{goal_users} users: the slowest done within the sequential time ({at_goal['sequential_s']:.1f} s)",
         at_goal["end_s"]["max"] <= at_goal["sequential_s"]),
        ("0 errors in every round", all(not r["errors"] for r in report.values())),
    ]  # fmt: skip
    verdict = [f"{name} -> {'MET' if met else 'NOT MET'}" for name, met in checks]
    print("\nGoals:\n" + "\n".join(f"- {line}" for line in verdict))
    if not save:
        print("(custom settings or --no_save: nothing saved)")
        return
    result = {
        "title": "The Space under load: simultaneous users pressing Generate with the page defaults",
        "command": common.command_line(),
        "machine": machine,
        "threads": args.threads or 0,
        "settings": settings,
        "rounds": report,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "verdict": verdict,
        "markdown": common.markdown_table(
            [
                "users",
                "first frame min / median / max (s)",
                "end min / median / max (s)",
                "sequential (s)",
                "digit-steps / s (sequential)",
                "errors",
            ],
            [
                [
                    count,
                    "{min:.2f} / {median:.2f} / {max:.2f}".format(**r["first_frame_s"]),
                    "{min:.1f} / {median:.1f} / {max:.1f}".format(**r["end_s"]),
                    f"{r['sequential_s']:.1f}",
                    f"{r['digit_steps_per_s']:.0f} ({r['sequential_digit_steps_per_s']:.0f})",
                    len(r["errors"]),
                ]
                for count, r in report.items()
            ],
        )  # fmt: skip
        + ["", "Goals:"]
        + [f"- {line}" for line in verdict],
        "summary": [
            common.summary_row(
                f"Space, {goal_users} simultaneous users: slowest first frame / slowest end vs sequential",
                f"{at_goal['first_frame_s']['max']:.2f} s / {at_goal['end_s']['max']:.1f} s",
                f"sequential {at_goal['sequential_s']:.1f} s",
                at_goal["sequential_s"] / at_goal["end_s"]["max"],
                f"<= {GOALS['first_frame_s']:g} s / <= sequential, 0 errors",
                all(met for _, met in checks),
            )
        ],
    }
    path = common.save_result("space_load", result)
    print(f"saved {path} and {common.RESULTS_DIR / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
