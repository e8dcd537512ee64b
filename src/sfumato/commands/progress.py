"""Live progress within each image for the protecting commands, on standard error: the stage (loading and
preparing the target, optimisation step n/N, calibrating to the budget and saving, checks) with an estimate of the time
left, so a minutes-long image never looks frozen.

On a terminal the stage and step ride on the batch's progress bar (``on_bar``) and each stage change is a
line; elsewhere (a log, a pipe) each stage is a line and the optimisation step is a line at its first and
last step and at most every few seconds between (``step 12/40, about 1 min 10 s left``).
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["StageProgress", "fmt_seconds"]


def fmt_seconds(s: float) -> str:
    """A duration in words: ``45 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = max(0, int(round(s)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class StageProgress:
    """What the commands hand the file API as ``progress`` and call at each stage of an image."""

    #: Between step lines when not on a terminal, in seconds (the first and last step are always shown).
    LINE_EVERY_S = 5.0

    def __init__(self, *, quiet: bool = False, stream: TextIO | None = None, total: int = 0) -> None:
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.bar: Any = None
        self.total = total
        self.index = 0
        self.name = ""
        self.t_image = self.t_steps = self.t_last_line = 0.0
        self.steps_done_at: float | None = None
        self.after_steps: list[float] = []  # seconds each earlier image spent after its last step
        self.stage_name = ""
        self.last_step = self.first_step = 0

    # --- wiring -------------------------------------------------------------------------------------

    def attach(self, bar: Any) -> None:
        """``run_batch(on_bar=...)``: show the stage on the batch's bar."""
        self.bar = bar

    def _line(self, text: str) -> None:
        if self.quiet:
            return
        if self.bar is not None and not getattr(self.bar, "disable", True):
            from tqdm import tqdm

            tqdm.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def _postfix(self, text: str) -> None:
        if self.bar is not None and not getattr(self.bar, "disable", True):
            self.bar.set_postfix_str(text, refresh=True)

    # --- stages -------------------------------------------------------------------------------------

    def start(self, name: str) -> None:
        """A new image: its first stage."""
        self.index += 1
        self.name = name
        self.t_image = time.perf_counter()
        self.t_steps = 0.0
        self.steps_done_at = None
        self.last_step = self.first_step = 0
        self.stage("loading the image and preparing the target style")

    def stage(self, what: str) -> None:
        """A new stage of the current image (one line)."""
        if self.stage_name == "optimising" and self.steps_done_at is None:
            self.steps_done_at = time.perf_counter()
        self.stage_name = what
        of = f"[{self.index}/{self.total}] " if self.total > 1 else ""
        self._line(f"{of}{self.name}: {what}")
        self._postfix(f"{self.name[:30]}: {what}")

    def __call__(self, step: int, steps: int) -> None:
        """The optimisation's ``progress(step, steps)``: the step and the time left for this image."""
        now = time.perf_counter()
        if self.stage_name != "optimising" or step <= self.last_step:  # a new optimisation (or a second pass)
            self.stage_name = "optimising"
            self.t_steps, self.first_step = now, step
            self.steps_done_at = None
        self.last_step = step
        eta = ""
        if step > self.first_step:
            per_step = (now - self.t_steps) / (step - self.first_step)
            after = sum(self.after_steps) / len(self.after_steps) if self.after_steps else None
            left = per_step * (steps - step) + (after or 0.0)
            eta = f", about {fmt_seconds(left)} left" + ("" if after is not None or step == steps else " (+ saving)")
        text = f"step {step}/{steps}{eta}"
        self._postfix(f"{self.name[:30]}: {text}")
        on_bar = self.tty and self.bar is not None and not getattr(self.bar, "disable", True)
        if not on_bar and (step in (1, steps) or now - self.t_last_line >= self.LINE_EVERY_S):
            self.t_last_line = now
            of = f"[{self.index}/{self.total}] " if self.total > 1 else ""
            self._line(f"{of}{self.name}: optimising, {text}")
        if step == steps:
            self.stage("calibrating to the budget and saving")

    def finish(self) -> None:
        """The image is done: remember how long it spent after its last step (for the next estimates)."""
        if self.steps_done_at is not None:
            self.after_steps.append(time.perf_counter() - self.steps_done_at)
        self.stage_name = ""
        self.last_step = 0
        self._postfix("")
