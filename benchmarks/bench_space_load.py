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

The engine's delivered share (issue 19): before every round, in this process, the U-Net alone runs the round's merged
batch (the rows the engine sends per tick: min(users, DDPM_HUB_MAX_CHAINS) chains x digits x 2 for guidance, capped
by MAX_ROWS) for `--unet_ticks` calls on the same model at the Space's thread count (torch and OMP_WAIT_POLICY as
app.py sets them). The round's delivered U-Net rows per second (users x steps x rows per chain / the slowest user's
end) over the U-Net's own rows per second is the share of the U-Net's throughput the Space delivers, with the clients,
the web server and the page's frames all running. `--repeats` repeats every round (U-Net, round, U-Net, round, ...):
the share is given as median (min-max) over the repeats. `--steps 50` makes a round take a minute or two; note that
a chain of at most 100 steps streams every step (`chains.stream_every`), 10 times the frames per step of the page's
1000-step chain, so a short run shows the Space at its most frame-heavy.
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

# The U-Net alone is timed in this process as the Space runs it: OpenMP threads that sleep (app.py's setting, only
# effective before torch is imported).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import common  # noqa: E402 (benchmarks/common.py: the script's folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_USERS = [1, 4, 8, 16]
GOALS = {"users": 8, "first_frame_s": 2.0, "delivered_share": 0.8}
MAX_ROWS = 256  # space/app.py's MAX_ROWS: U-Net rows per tick at most


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


def run_users(url: str, count: int, settings: dict, downloads: Path | None, timeout: float) -> list[dict]:
    """`count` users submit Generate at the same moment; per user: first frame, end, error. `downloads` None: the
    clients take the pictures' URLs without fetching them (a lighter load generator; the server serves no files)."""
    from gradio_client import Client

    clients = [
        Client(url, verbose=False, analytics_enabled=False,
               download_files=False if downloads is None else str(downloads / f"user{i}"))
        for i in range(count)
    ]  # fmt: skip
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


def rows_per_chain(settings: dict, num_classes: int | None) -> int:
    """U-Net rows a Generate chain sends per tick: its digits, doubled by classifier-free guidance."""
    guided = num_classes is not None and str(settings["digit"]) != "any" and float(settings["guidance"]) not in (0, 1)
    return int(settings["batch"]) * (2 if guided else 1)


def tick_rows(users: int, chain_rows: int, max_chains: int) -> int:
    """The rows of the engine's merged U-Net call with `users` chains running: as many chains as fit at once."""
    chains = max(1, min(users, max_chains, MAX_ROWS // chain_rows))
    return chains * chain_rows


class UNetAlone:
    """The Space's U-Net in this process at the Space's thread count: seconds per row at a merged batch size."""

    def __init__(self, model: str | None, threads: int):
        import torch

        from ddpm_hub import DDPMHubPipeline

        self.torch = torch
        torch.set_num_threads(threads)
        self.pipe = DDPMHubPipeline.from_pretrained(model or str(ROOT / "space" / "default_model"))
        self.pipe.unet.eval()

    def seconds_per_row(self, rows: int, calls: int) -> tuple[float, float]:
        """(wall seconds, CPU seconds of this thread) per U-Net row at `rows` rows per call."""
        torch, pipe = self.torch, self.pipe
        config = pipe.unet.config
        generator = torch.Generator().manual_seed(0)
        sample = torch.randn(rows, config.in_channels, config.sample_size, config.sample_size, generator=generator)
        timestep = torch.randint(0, pipe.scheduler.config.num_train_timesteps, (rows,), generator=generator)
        labels = None
        if pipe.num_classes is not None:  # half the rows conditional, half the null class, as guided chains send
            labels = torch.where(torch.arange(rows) % 2 == 0, 3, pipe.num_classes)
        with torch.inference_mode():
            pipe.unet_forward(sample, timestep, labels)  # warm-up at this batch size
            start, cpu = time.perf_counter(), time.thread_time()
            for _ in range(calls):
                pipe.unet_forward(sample, timestep, labels)
            return (time.perf_counter() - start) / (calls * rows), (time.thread_time() - cpu) / (calls * rows)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_snapshot(pid: int) -> dict:
    """CPU seconds so far: the Space process (all threads, exited ones included) and each of its live threads, this
    process (the clients and the U-Net alone), and the whole machine (busy, every process); from /proc."""

    def seconds(stat_path: Path) -> float:
        fields = stat_path.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime

    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            threads[int(task.name)] = seconds(task / "stat")
        except (OSError, ValueError):
            pass  # the thread ended meanwhile
    machine = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return {
        "space": seconds(Path(f"/proc/{pid}/stat")),
        "threads": threads,
        "bench": seconds(Path("/proc/self/stat")),
        "machine": (sum(machine[:3]) + sum(machine[5:8])) / CLOCK_TICKS,
        "time": time.perf_counter(),
    }


def cpu_breakdown(before: dict, after: dict) -> dict:
    """Where the CPU went during a round, in cores (CPU seconds / wall seconds): the Space's busiest thread (the
    engine's tick thread, where the U-Net runs), its other threads (the web server's event loop, the Generate
    handlers and Gradio's workers: frames, PNG, streaming, file serving), the clients (this process), and every
    other process on the machine."""
    wall = after["time"] - before["time"]
    deltas = {tid: after["threads"][tid] - before["threads"].get(tid, 0.0) for tid in after["threads"]}
    engine = max(deltas.values(), default=0.0)
    space = after["space"] - before["space"]
    clients = after["bench"] - before["bench"]
    machine = after["machine"] - before["machine"]
    return {
        "wall_s": wall,
        "engine_thread": engine / wall,
        "space_other_threads": max(0.0, space - engine) / wall,
        "clients": clients / wall,
        "other_processes": max(0.0, machine - space - clients) / wall,
    }


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
    parser.add_argument("--repeats", type=int, default=1, help="times every round runs (U-Net alone before each)")
    parser.add_argument("--unet_ticks", type=int, default=10, help="U-Net calls timed alone before each round")
    parser.add_argument("--no_downloads", action="store_true",
                        help="clients do not fetch the streamed pictures (less client CPU)")  # fmt: skip
    parser.add_argument("--no_save", action="store_true", help="print only")
    parser.add_argument("--save_as", default=None, help="save custom settings as results/NAME.json anyway")
    args = parser.parse_args(argv)
    custom = args.steps is not None or args.batch is not None or args.model or args.tiny or args.users != DEFAULT_USERS
    save = not args.no_save and (not custom or args.save_as)  # the settings, or a name given for them
    rounds = sorted(set(args.users) | {1})  # the 1-user round is the sequential baseline's unit
    threads = args.threads or 1  # app.py's DDPM_HUB_THREADS default
    max_chains = int(os.environ.get("DDPM_HUB_MAX_CHAINS") or 8)  # app.py's MAX_CHAINS, read as the Space reads it

    machine = common.machine_info()
    print(f"{common.command_line()}\n{common.load_line()}")
    with tempfile.TemporaryDirectory(prefix="bench_space_load_") as scratch:
        model = tiny_model(Path(scratch) / "tiny") if args.tiny else args.model
        unet = UNetAlone(model, threads)
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
            chain_rows = rows_per_chain(settings, unet.pipe.num_classes)
            print(f"Generate with {settings} ({settings['steps']} steps; {chain_rows} U-Net rows per chain per tick, "
                  f"{threads} torch thread(s))")  # fmt: skip
            run_users(url, 1, {**settings, "steps": 5}, Path(scratch) / "warmup", args.timeout)  # first-call costs
            rows, alone, alone_cpu, cpu = ({count: [] for count in rounds} for _ in range(4))
            for repeat in range(args.repeats):
                for count in rounds:
                    batch_rows = tick_rows(count, chain_rows, max_chains)
                    wall_per_row, cpu_per_row = unet.seconds_per_row(batch_rows, args.unet_ticks)
                    alone[count].append(wall_per_row)
                    alone_cpu[count].append(cpu_per_row)
                    before = cpu_snapshot(process.pid)
                    folder = None if args.no_downloads else Path(scratch) / f"round{count}_{repeat}"
                    users = run_users(url, count, settings, folder, args.timeout)
                    cpu[count].append(cpu_breakdown(before, cpu_snapshot(process.pid)))
                    rows[count].append(users)
                    end = max(u["end_s"] for u in users)
                    delivered = count * int(settings["steps"]) * chain_rows / end
                    print(f"repeat {repeat}, {count:>2} users: U-Net alone at {batch_rows} rows "
                          f"{1 / alone[count][-1]:.0f} rows/s, the Space delivered {delivered:.0f} rows/s "
                          f"({delivered * alone[count][-1]:.1%}), slowest end {end:.1f} s   "
                          f"[{common.load_line()}]")  # fmt: skip
                    busy = cpu[count][-1]
                    per_cpu = delivered / busy["engine_thread"] * cpu_per_row if busy["engine_thread"] else 0.0
                    print("    cores busy: " + ", ".join(f"{k} {v:.2f}" for k, v in busy.items() if k != "wall_s")
                          + f"; rows per CPU-second, tick thread vs U-Net alone: {per_cpu:.1%}")  # fmt: skip
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()

    digit_steps = int(settings["batch"]) * int(settings["steps"])
    alone_s = statistics.median(u["end_s"] for repeat in rows[1] for u in repeat)
    report = {}
    print(f"\n{'users':>5} {'first frame min/median/max (s)':>32} {'end min/median/max (s)':>26} "
          f"{'sequential (s)':>15} {'digit-steps/s':>14} {'errors':>7} {'delivered share':>30}")  # fmt: skip
    for count in rounds:
        ends = [max(u["end_s"] for u in repeat) for repeat in rows[count]]
        delivered = [count * int(settings["steps"]) * chain_rows / end for end in ends]  # U-Net rows per second
        share = common.ratio_stats(delivered, [1 / s for s in alone[count]])
        # The same rows per CPU-second: what the tick thread made of the CPU it got, against the U-Net alone's.
        engine_cores = [c["engine_thread"] for c in cpu[count]]
        cpu_share = common.ratio_stats([d / c for d, c in zip(delivered, engine_cores, strict=True)],
                                       [1 / s for s in alone_cpu[count]])  # fmt: skip
        users = [u for repeat in rows[count] for u in repeat]
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
            "tick_rows": tick_rows(count, chain_rows, max_chains),
            "unet_alone_rows_per_s": [1 / s for s in alone[count]],
            "delivered_rows_per_s": delivered,
            "delivered_share": share,
            "delivered_share_per_cpu_second": cpu_share,
            "cpu_cores": cpu[count],
        }
        print(f"{count:>5} {first['min'] or 0:10.2f} {first['median'] or 0:10.2f} {first['max'] or 0:10.2f} "
              f"{end['min']:8.1f} {end['median']:8.1f} {end['max']:8.1f} {count * alone_s:15.1f} "
              f"{count * digit_steps / end['max']:14.0f} {len(errors):>7} "
              f"{share['median']:>12.1%} ({share['min']:.1%}-{share['max']:.1%}, n={share['n']}); per CPU-second "
              f"of the tick thread {cpu_share['median']:.1%} "
              f"({cpu_share['min']:.1%}-{cpu_share['max']:.1%})")  # fmt: skip
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
        (f"{goal_users} users: the Space delivers >= {GOALS['delivered_share']:.0%} of the U-Net's own rows/s "
         f"(every repeat)", at_goal["delivered_share"]["min"] >= GOALS["delivered_share"]),
    ]  # fmt: skip
    verdict = [f"{name} -> {'MET' if met else 'NOT MET'}" for name, met in checks]
    print("\nGoals:\n" + "\n".join(f"- {line}" for line in verdict))
    if not save:
        print("(custom settings or --no_save: nothing saved)")
        return
    name = args.save_as or "space_load"
    mean_cores = {key: statistics.mean(c[key] for c in at_goal["cpu_cores"]) for key in at_goal["cpu_cores"][0]}
    result = {
        "title": "The Space under load: simultaneous users pressing Generate with the page defaults"
        + ("" if not custom else f" ({settings['steps']} steps)"),
        "command": common.command_line(),
        "machine": machine,
        "threads": args.threads or 0,
        "settings": settings,
        "repeats": args.repeats,
        "client_downloads": not args.no_downloads,
        "rows_per_chain": chain_rows,
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
                "U-Net rows / tick",
                "delivered share of the U-Net's rows/s, median (min–max)",
                "the same per CPU-second of the tick thread",
            ],
            [
                [
                    count,
                    "{min:.2f} / {median:.2f} / {max:.2f}".format(**r["first_frame_s"]),
                    "{min:.1f} / {median:.1f} / {max:.1f}".format(**r["end_s"]),
                    f"{r['sequential_s']:.1f}",
                    f"{r['digit_steps_per_s']:.0f} ({r['sequential_digit_steps_per_s']:.0f})",
                    len(r["errors"]),
                    r["tick_rows"],
                    "{median:.1%} ({min:.1%}–{max:.1%})".format(**r["delivered_share"]),
                    "{median:.1%} ({min:.1%}–{max:.1%})".format(**r["delivered_share_per_cpu_second"]),
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
                all(met for _, met in checks[:3]),
            ),
            common.summary_row(
                f"Space, {goal_users} simultaneous users, {settings['steps']} steps: delivered U-Net rows/s over the "
                f"U-Net's own at {at_goal['tick_rows']} rows ({threads} thread(s))",
                f"{statistics.median(at_goal['delivered_rows_per_s']):.0f} rows/s",
                f"U-Net alone {statistics.median(at_goal['unet_alone_rows_per_s']):.0f} rows/s",
                "{median:.1%} ({min:.1%}–{max:.1%})".format(**at_goal["delivered_share"]),
                f">= {GOALS['delivered_share']:.0%}",
                checks[3][1],
            ),
            common.summary_row(
                f"Space, {goal_users} users: U-Net rows per CPU-second of the engine's tick thread over the U-Net "
                f"alone's; cores busy: tick thread {mean_cores['engine_thread']:.2f}, the Space's other threads "
                f"{mean_cores['space_other_threads']:.2f}, the clients {mean_cores['clients']:.2f}, other processes "
                f"{mean_cores['other_processes']:.2f}",
                "",
                "",
                "{median:.1%} ({min:.1%}–{max:.1%})".format(**at_goal["delivered_share_per_cpu_second"]),
                "",
                None,
            ),
        ],
    }
    path = common.save_result(name, result)
    print(f"saved {path} and {common.RESULTS_DIR / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
