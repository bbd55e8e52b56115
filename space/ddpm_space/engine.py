"""One sampling engine for every visitor: at each tick, ONE U-Net call over the current step of every active chain.

This is continuous batching, as LLM servers (vLLM, TGI) batch requests token by token: a chain joins the running
batch at the next tick and leaves it when done, and between ticks nothing waits for anything. Each chain is a
`DenoisingChain` from `pipeline.prepare_chain` and keeps its own scheduler state, timesteps, guidance, generator and
sampler, so a DDIM-50 chain and a DDPM-1000 chain ride the same batch; each draws its noise from its own generator,
so it gives the images its seed gives alone (up to the float rounding a different batch size brings). The engine
computes no diffusion math: it concatenates `chain.model_input()`s, calls `pipeline.unet_forward` once (or `forward`,
e.g. the exported U-Net on onnxruntime), splits the output by rows and hands each chain its rows (`chain.step`).
Measured with 8 chains at the page defaults (`benchmarks/profile_engine.py`), the tick thread spends 98% of its time
inside that one call; the chains' own steps take 1-2%.

Fair and bounded: every active chain advances one step every tick, so a 16-image DDPM-1000 chain slows the ticks of
a 1-image DDIM-10 chain but never stops them. At most `max_active` chains and `max_rows` U-Net rows per tick run at
once, and a visitor's running chains hold at most `max_images_per_owner` images; beyond that, a FIFO queue (a
visitor over their own cap is skipped, so they never hold up the others). Stop, a closed tab (`alive()` turns
False) or a consumer that stopped reading (`abandon_after_s`) free the slot at once.

    engine = Engine(pipeline)
    ticket = engine.submit(pipeline.prepare_chain(...), owner=session_hash)
    for update in ticket.updates():   # Queued(position, eta_s) ... Progress(step, k, num_steps, eta_s) ... Done
        ...
    ticket.cancel()                   # or close the updates() generator
"""

from __future__ import annotations

import heapq
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

TICK_SMOOTHING = 0.2  # weight of the newest tick in the running mean of the tick time (for the estimates)
QUEUE_REFRESH_S = 2.0  # a waiting chain hears its (re-estimated) wait at least this often


@dataclass(frozen=True)
class Queued:
    """Waiting for a slot: `position` 1 is next; `eta_s` estimates the wait (None before the first tick)."""

    position: int
    eta_s: float | None


@dataclass(frozen=True)
class Progress:
    """Step `k` of `num_steps` is done (`step` is its `DenoisingStep`); `eta_s` estimates the time to the end."""

    step: Any
    k: int
    num_steps: int
    eta_s: float | None
    tick: int  # the engine's tick counter: chains that ran in the same U-Net call share it
    bf16: bool  # the U-Net ran under bfloat16 autocast for this step


@dataclass(frozen=True)
class Done:
    """The chain reached x_0; `step` is its last `DenoisingStep`."""

    step: Any


@dataclass(frozen=True)
class Stopped:
    """The chain was stopped before the end: reason "stopped" (cancel), "closed" (tab gone), "abandoned" (nobody
    read its updates for `abandon_after_s`) or "shutdown"; `step` is the last step it made (None if it never ran)."""

    reason: str
    step: Any


@dataclass(frozen=True)
class Failed:
    """The chain failed; `message` says why."""

    message: str


FINAL = (Done, Stopped, Failed)


class EngineBusy(RuntimeError):
    """The queue is full: try again in a little while."""


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 natively (AVX512-BF16 / AMX on a CPU), where autocast speeds it up."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = cpuinfo.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class Ticket:
    """One chain in the engine: read its `updates()`, `cancel()` it. Created by `Engine.submit`."""

    def __init__(self, engine: Engine, chain, owner: str, tag: str | None, alive: Callable[[], bool] | None):
        self.engine, self.chain, self.owner, self.tag, self.alive = engine, chain, owner, tag, alive
        model_input = chain.model_input()
        self.rows = int(model_input.sample.shape[0])  # U-Net rows per tick: 2B with classifier-free guidance
        self.images = int(getattr(chain, "batch_size", self.rows))
        self.state = "queued"  # -> "active" -> "done" | "stopped" | "failed"
        self.last_step = None
        self._position = None
        self._told_at = 0.0  # when its place in the queue was last pushed
        self._updates: queue.SimpleQueue = queue.SimpleQueue()
        self._last_read = time.monotonic()

    @property
    def finished(self) -> bool:
        return self.state in ("done", "stopped", "failed")

    def cancel(self, reason: str = "stopped") -> None:
        """Stops the chain now and frees its slot (a no-op once it is finished)."""
        self.engine._finish(self, "stopped", Stopped(reason, self.last_step))

    def updates(self) -> Iterator[Queued | Progress | Done | Stopped | Failed]:
        """Every update, in order, until the final one (Done, Stopped or Failed). Closing it early cancels."""
        try:
            while True:
                update = self._updates.get()
                self._last_read = time.monotonic()
                yield update
                if isinstance(update, FINAL):
                    return
        finally:
            self.cancel("closed")

    def pending(self) -> list:
        """The updates that arrived so far, without waiting."""
        updates = []
        while not self._updates.empty():
            updates.append(self._updates.get())
            self._last_read = time.monotonic()
        return updates

    def _push(self, update) -> None:
        self._updates.put(update)


class Engine:
    """The background thread that steps every active chain, one merged U-Net call per tick.

    Args:
        pipeline: a `DDPMHubPipeline` (its `unet_forward` runs the merged batch).
        max_active: chains stepped together at most.
        max_rows: U-Net rows per tick at most (a chain with guidance needs 2 per image); a chain of more rows
            than that is refused.
        max_images_per_owner: images of one visitor's running chains at most (the rest of theirs waits).
        max_queued: waiting chains at most; beyond, `submit` raises `EngineBusy`.
        abandon_after_s: stop a chain whose updates nobody read for this long (a closed tab gradio never closed).
        bf16_min_rows: with a device that has native bf16, ticks with at least this many rows run the U-Net under
            bfloat16 autocast (`DDPMHubPipeline.enable_bf16_autocast`); None = always float32.
        forward: what runs the float32 ticks' merged U-Net call instead of `pipeline.unet_forward`, called the same
            way (e.g. `ddpm_hub.export.OnnxUNet`, the exported graph on onnxruntime); None = the pipeline's.
        start: start the thread now (tests pass False to fill the queue first, then call `start()`).
    """

    def __init__(self, pipeline, max_active=8, max_rows=256, max_images_per_owner=16, max_queued=64,
                 abandon_after_s=30.0, bf16_min_rows=None, forward=None, start=True):  # fmt: skip
        self.pipeline = pipeline
        self.forward = forward
        self.max_active, self.max_rows, self.max_queued = max_active, max_rows, max_queued
        self.max_images_per_owner, self.abandon_after_s = max_images_per_owner, abandon_after_s
        self.bf16_pipeline = None
        if bf16_min_rows is not None and native_bf16(pipeline.device):
            self.bf16_pipeline = type(pipeline)(unet=pipeline.unet, scheduler=pipeline.scheduler)  # shares the U-Net
            self.bf16_pipeline.enable_bf16_autocast()
        self.bf16_min_rows = bf16_min_rows
        self.ticks = 0
        self.tick_s: float | None = None  # running mean of a tick's duration
        self._lock = threading.Condition()
        self._active: list[Ticket] = []
        self._queue: deque[Ticket] = deque()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="sampling-engine", daemon=True)
        if start:
            self.start()

    # -- visitors' side -------------------------------------------------------------------------------------------

    def submit(self, chain, owner: str = "local", tag: str | None = None, alive=None) -> Ticket:
        """Queues `chain` (a `DenoisingChain`) for `owner`; `alive()` False (checked every tick) stops it."""
        return self.submit_all([chain], owner, tag, alive)[0]

    def submit_all(self, chains: list, owner: str = "local", tag: str | None = None, alive=None) -> list[Ticket]:
        """Queues several chains at once: with room for them, they join the batch at the same tick."""
        tickets = [Ticket(self, chain, owner, tag, alive) for chain in chains]
        config = self.pipeline.unet.config
        expected = (config.in_channels, config.sample_size, config.sample_size)
        for ticket in tickets:
            if tuple(ticket.chain.model_input().sample.shape[1:]) != expected:
                raise ValueError(f"The chain's samples are not (C, H, W) = {expected}: it is not this engine's model.")
            if ticket.rows > self.max_rows or ticket.images > self.max_images_per_owner:
                raise ValueError(
                    f"A chain of {ticket.images} images ({ticket.rows} U-Net rows) is over the engine's caps "
                    f"(max_images_per_owner={self.max_images_per_owner}, max_rows={self.max_rows})."
                )
        with self._lock:
            if self._closed:
                raise EngineBusy("The sampling engine is shut down.")
            if len(self._queue) + len(tickets) > self.max_queued:
                raise EngineBusy(f"{len(self._queue)} chains are waiting already: try again in a minute.")
            self._queue.extend(tickets)
            self._admit()
            self._lock.notify_all()
        return tickets

    def cancel(self, owner: str, tag: str | None = None) -> int:
        """Stops every chain of `owner` (with `tag`, if given); returns how many."""
        with self._lock:
            tickets = [t for t in [*self._active, *self._queue] if t.owner == owner and tag in (None, t.tag)]
        for ticket in tickets:
            ticket.cancel()
        return len(tickets)

    def stats(self) -> dict:
        with self._lock:
            return {
                "active": len(self._active),
                "queued": len(self._queue),
                "rows": sum(t.rows for t in self._active),
                "ticks": self.ticks,
                "tick_s": self.tick_s,
            }

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stops every chain and the thread."""
        with self._lock:
            self._closed = True
            tickets = [*self._active, *self._queue]
            self._lock.notify_all()
        for ticket in tickets:
            ticket.cancel("shutdown")
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    # -- bookkeeping (under the lock) -----------------------------------------------------------------------------

    def _finish(self, ticket: Ticket, state: str, update) -> None:
        with self._lock:
            if ticket.finished:
                return
            ticket.state = state
            ticket._push(update)
            if ticket in self._active:
                self._active.remove(ticket)
            elif ticket in self._queue:
                self._queue.remove(ticket)
            self._admit()  # the slot is free now, not at the next tick
            self._lock.notify_all()

    def _admit(self) -> None:
        """Moves waiting chains into the batch, first come first served, then tells the others their place."""
        waiting = deque()
        while self._queue:
            ticket = self._queue.popleft()
            owner_images = sum(t.images for t in self._active if t.owner == ticket.owner)
            rows = sum(t.rows for t in self._active)
            if owner_images + ticket.images > self.max_images_per_owner:
                waiting.append(ticket)  # over its owner's cap: let the next visitor pass
            elif self._active and (len(self._active) >= self.max_active or rows + ticket.rows > self.max_rows):
                waiting.append(ticket)
                waiting.extend(self._queue)  # the batch is full: nobody overtakes
                self._queue.clear()
            else:
                ticket.state = "active"
                self._active.append(ticket)
        self._queue = waiting
        waits = self._queue_waits()
        now = time.monotonic()
        for position, ticket in enumerate(self._queue, start=1):
            if ticket._position != position or now - ticket._told_at > QUEUE_REFRESH_S:
                ticket._position, ticket._told_at = position, now
                ticket._push(Queued(position, waits[position - 1]))

    def _queue_waits(self) -> list[float | None]:
        """Estimated seconds until each waiting chain starts: slots free up as the running chains end."""
        if self.tick_s is None:
            return [None] * len(self._queue)
        free_at = [t.chain.num_steps - t.chain.step_index for t in self._active]  # ticks until each slot frees
        free_at += [0] * max(0, self.max_active - len(free_at))
        heapq.heapify(free_at)
        waits = []
        for ticket in self._queue:
            start = heapq.heappop(free_at)
            waits.append(start * self.tick_s)
            heapq.heappush(free_at, start + ticket.chain.num_steps)
        return waits

    def _reap(self) -> None:
        """Stops chains whose tab is gone or whose updates nobody reads."""
        now = time.monotonic()
        for ticket in [*self._active, *self._queue]:
            if ticket.alive is not None and not ticket.alive():
                self._finish(ticket, "stopped", Stopped("closed", ticket.last_step))
            elif not ticket._updates.empty() and now - ticket._last_read > self.abandon_after_s:
                self._finish(ticket, "stopped", Stopped("abandoned", ticket.last_step))

    # -- the thread ------------------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                self._reap()
                self._admit()
                while not self._active and not self._closed:
                    self._lock.wait(timeout=1.0)
                    self._reap()
                if self._closed:
                    return
                batch = list(self._active)
            self._tick(batch)

    @torch.inference_mode()
    def _tick(self, batch: list[Ticket]) -> None:
        started = time.perf_counter()
        inputs = [ticket.chain.model_input() for ticket in batch]
        rows = [int(i.sample.shape[0]) for i in inputs]
        bf16 = self.bf16_pipeline is not None and sum(rows) >= self.bf16_min_rows
        try:
            sample = torch.cat([i.sample for i in inputs])  # (sum of rows, C, H, W)
            timestep = torch.cat([i.timestep for i in inputs])  # (sum of rows,): each chain at its own t
            class_labels = None
            if any(i.class_labels is not None for i in inputs):  # rows without labels ask for the null class
                null = self.pipeline.num_classes
                class_labels = torch.cat(
                    [
                        i.class_labels if i.class_labels is not None else torch.full_like(i.timestep, null)
                        for i in inputs
                    ]
                )
            if bf16:
                forward = self.bf16_pipeline.unet_forward
            else:
                forward = self.forward or self.pipeline.unet_forward
            output = forward(sample, timestep, class_labels)
        except Exception as err:  # the merged call failed: every chain in it fails, the engine goes on
            for ticket in batch:
                self._finish(ticket, "failed", Failed(f"The U-Net failed: {type(err).__name__}: {err}"))
            return
        self.ticks += 1
        tick_s = self.tick_s if self.tick_s is not None else time.perf_counter() - started
        for ticket, rows_out in zip(batch, output.split(rows), strict=True):
            if ticket.state != "active":
                continue  # stopped during the U-Net call
            try:
                step = ticket.chain.step(rows_out)
            except Exception as err:
                self._finish(ticket, "failed", Failed(f"{type(err).__name__}: {err}"))
                continue
            with self._lock:
                if ticket.state != "active":
                    continue
                ticket.last_step = step
                k, n = ticket.chain.step_index, ticket.chain.num_steps
                ticket._push(Progress(step, k, n, (n - k) * tick_s, self.ticks, bf16))
            if ticket.chain.done:
                self._finish(ticket, "done", Done(step))
        elapsed = time.perf_counter() - started
        self.tick_s = elapsed if self.tick_s is None else (1 - TICK_SMOOTHING) * self.tick_s + TICK_SMOOTHING * elapsed
