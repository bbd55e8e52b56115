"""What the chain tabs share: a chain handed to the sampling engine (`engine.py`), and its progress in words.

Every visitor's chains run in the one engine (shared U-Net calls); a visitor is a Gradio session. Stop cancels the
visitor's chains of one tab; a closed tab is noticed by `Space.session_alive`, a stream nobody reads by the engine.
"""

from __future__ import annotations

import math

import gradio as gr

from . import hosting
from .common import Space
from .engine import Engine, EngineBusy, Progress, Queued, Ticket


def owner(request: gr.Request | None) -> str:
    """The visitor: their Gradio session, or "local" for direct calls (tests, scripts)."""
    return getattr(request, "session_hash", None) or "local"


def submit_all(space: Space, chains: list, request: gr.Request | None, tag: str) -> list[Ticket]:
    """Queues `chains` (`DenoisingChain`s) together in the Space's engine for this visitor (they start at the same
    tick when there is room); refusals become a gr.Error."""
    visitor = owner(request)
    alive = None
    if space.session_alive is not None and visitor != "local":
        alive = lambda: space.session_alive(visitor)  # noqa: E731
    # On ZeroGPU each decorated call runs in a worker process that `spaces.GPU` forks, where the app's engine thread
    # does not exist and a GPU runs a chain in seconds: the call steps its own chains on an engine of its own (an idle
    # daemon thread when done, gone with the worker).
    engine = Engine(space.pipe, max_active=len(chains)) if hosting.ZERO_GPU else space.engine
    try:
        return engine.submit_all(chains, owner=visitor, tag=tag, alive=alive)
    except (EngineBusy, ValueError) as err:
        raise gr.Error(str(err)) from None


def submit(space: Space, chain, request: gr.Request | None, tag: str) -> Ticket:
    """Queues one chain in the Space's engine for this visitor (see `submit_all`)."""
    return submit_all(space, [chain], request, tag)[0]


def stop(space: Space, tag: str, request: gr.Request | None = None) -> None:
    """Stops this visitor's running or waiting chains of one tab; their streams end with a "stopped" frame."""
    space.engine.cancel(owner(request), tag)


def seconds(eta_s: float | None) -> str:
    if eta_s is None:
        return "estimating the time"
    if eta_s < 1:
        return "under a second"
    return f"about {math.ceil(eta_s)} s" if eta_s < 90 else f"about {math.ceil(eta_s / 60)} min"


def left(update: Progress) -> str:
    """'about 12 s left' for a running chain, with a word when the U-Net ran in bfloat16."""
    text = "done" if update.k == update.num_steps else f"{seconds(update.eta_s)} left"
    return f"{text} · U-Net in bfloat16 (large shared batch)" if update.bf16 else text


def waiting(space: Space, update: Queued) -> str:
    """The visitor's place in the engine's queue, as the page shows it."""
    stats = space.engine.stats()
    return (
        f"**Waiting for a free slot:** number {update.position} in the queue, {seconds(update.eta_s)} to wait. "
        f"{stats['active']} chains are running now, sharing one U-Net call per step."
    )
