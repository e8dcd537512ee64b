"""Where a running image is (its stage within the image) and an honest estimate of the time left.

An image goes through named stages (:data:`STAGES`): preparing the target, optimising (step n of N),
calibrating to the budget and saving, checking the saved file, and, when asked for, writing the
verification report. :class:`ImageClock` records them as the worker reports them (the optimisation's
``progress(step, steps)`` callback and the server's own stage changes).

The time left is an interval, not a guess: each stage still to come adds its expected cost (learned from
the images this server finished, :class:`StageHistory`, else a prior from the preset,
:func:`prior_costs`) with a relative error; the optimisation's own steps are timed as they go
(:func:`remaining`). A stage that runs over its expected cost is not assumed to end at once: up to a
quarter of what it already took is still allowed for, so a long first image never reads "1 s left".

What the client sees is :func:`monotone`: the estimate is the middle of the interval and its error the
half-width, and the shown time never rises above the previous shown time (less the time since, down to
zero) plus the previous stated error. When the evidence says more, the error grows first: the shown value
catches up only within the band it announced. :func:`finishing` says when to show "finishing…" instead of a few
seconds while a stage is still running.

Everything here is plain arithmetic on numbers; :mod:`sfumato.server.jobs` supplies the clock times.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass

STAGES = ("prepare", "optimise", "save", "check", "report")
"""The stages of one image, in order (``report`` only when the job asked for the verification report)."""

LABELS = {
    "prepare": "preparing the target",
    "optimise": "optimising",
    "save": "calibrating to the budget and saving",
    "check": "checking the saved file",
    "report": "writing the verification report",
    "cluster": "running on the cluster",
}
"""Each stage in words, as the page shows it (``cluster``: the image runs as a Ray task, stages unseen)."""

FINISHING_S = 10.0
"""Under this many seconds left while a stage is still running, the page says "finishing…"."""

OVERRUN_SHARE = 0.25
"""A stage past its expected cost may still take this share of the time it already took."""

PRIOR_REL = 0.6
"""Relative error of a stage cost taken from the preset (nothing measured on this server yet)."""

HISTORY_REL = 0.25
"""Smallest relative error of a stage cost measured on earlier images of this server."""


def stage_label(key: str, step: int | None = None, steps: int | None = None) -> str:
    """``key`` in words; the optimisation with its step: ``optimising: step 34 of 80``."""
    if key == "optimise" and steps:
        return f"optimising: step {int(step or 0)} of {int(steps)}"
    return LABELS.get(key, key)


@dataclass(frozen=True, kw_only=True)
class Costs:
    """Expected seconds of each stage of one image (``per_step``: one optimisation step, ``steps`` of
    them) and the relative error of these figures."""

    prepare: float
    per_step: float
    steps: int
    save: float
    check: float
    report: float
    rel: float

    def stage(self, key: str, steps: int | None = None) -> float:
        if key == "optimise":
            return self.per_step * (steps if steps else self.steps)
        if key == "cluster":
            return self.total(report=False)
        return float(getattr(self, key))

    def total(self, *, report: bool) -> float:
        return sum(self.stage(k) for k in STAGES if k != "report" or report)


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    """Where an image is at one moment (:meth:`ImageClock.snapshot`).

    ``stage_elapsed``: seconds in the current stage; ``step``/``steps``: the optimisation's last reported
    step; ``measured_steps`` steps took ``steps_elapsed`` seconds (timed from the first step seen);
    ``since_step``: seconds since the last step; ``report``: a report stage comes at the end."""

    stage: str
    stage_elapsed: float
    elapsed: float
    step: int = 0
    steps: int | None = None
    measured_steps: int = 0
    steps_elapsed: float = 0.0
    since_step: float = 0.0
    report: bool = False


Interval = tuple[float, float]


def _stage_left(expected: float, rel: float, elapsed: float) -> Interval:
    """What is left of a stage expected to take ``expected`` (± ``rel``) that has run ``elapsed`` s."""
    lo = max(0.0, expected * (1 - rel) - elapsed)
    hi = max(expected * (1 + rel) - elapsed, OVERRUN_SHARE * elapsed)
    return lo, max(lo, hi)


def _later(keys: tuple[str, ...], costs: Costs, steps: int | None) -> Interval:
    s = sum(costs.stage(k, steps) for k in keys)
    return s * (1 - costs.rel), s * (1 + costs.rel)


def remaining(snap: Snapshot, costs: Costs) -> Interval:
    """The interval (seconds) in which the rest of a running image should take."""
    order = [k for k in STAGES if k != "report" or snap.report]
    if snap.stage == "cluster":
        return _stage_left(costs.total(report=snap.report), costs.rel, snap.stage_elapsed)
    if snap.stage not in order:
        return 0.0, 0.0
    later = tuple(order[order.index(snap.stage) + 1:])
    if snap.stage == "optimise":
        left_steps = max(0, (snap.steps or costs.steps) - snap.step)
        if snap.measured_steps > 0:
            per_step = snap.steps_elapsed / snap.measured_steps
            rel = max(0.1, 1 / math.sqrt(snap.measured_steps))
        else:
            per_step, rel = costs.per_step, costs.rel
        if left_steps:
            mid = per_step * left_steps - min(snap.since_step, per_step)
            now = (max(0.0, mid * (1 - rel)), max(mid * (1 + rel), OVERRUN_SHARE * snap.since_step))
        else:
            now = (0.0, 0.0)
    else:
        now = _stage_left(costs.stage(snap.stage), costs.rel, snap.stage_elapsed)
    after = _later(later, costs, snap.steps)
    return now[0] + after[0], now[1] + after[1]


def queued(costs: Costs, *, report: bool) -> Interval:
    """The interval one image that has not started should take."""
    t = costs.total(report=report)
    return t * (1 - costs.rel), t * (1 + costs.rel)


@dataclass(frozen=True)
class Shown:
    """An estimate as the client sees it: ``seconds`` left ± ``error``, made at ``at`` (epoch seconds)."""

    seconds: float
    error: float
    at: float


def monotone(prev: Shown | None, interval: Interval, now: float) -> Shown:
    """The next shown estimate after ``prev`` for a new ``interval`` (see the module doc).

    The estimate never exceeds ``max(prev.seconds - (now - prev.at), 0) + prev.error``: it never rises by
    more than the error stated before, and while ``prev`` has not run out the predicted end (now +
    seconds) moves later by at most that error. When the interval says more, the error grows so that the
    interval's middle stays within the band (``seconds ± error``) and the next estimate may catch up."""
    lo, hi = interval
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    if prev is None:
        return Shown(mid, half, now)
    cap = max(prev.seconds - max(0.0, now - prev.at), 0.0) + prev.error
    seconds = min(mid, cap)
    return Shown(seconds, max(half, mid - seconds), now)


def finishing(shown: Shown | None, running: bool) -> bool:
    """Whether a running image or job should read "finishing…" rather than a few seconds left."""
    return running and shown is not None and shown.seconds < FINISHING_S


class ImageClock:
    """The live stage of one running image, fed by the worker thread and read by the API's threads."""

    def __init__(self, *, report: bool, stage: str = "prepare", now: float | None = None) -> None:
        t = time.monotonic() if now is None else now
        self._lock = threading.Lock()
        self.report = report
        self.t0 = t
        self.stage = stage
        self.t_stage = t
        self.step = 0
        self.steps: int | None = None
        self.first_step = 0
        self.t_first = self.t_last = t
        self.durations: dict[str, float] = {}
        self.per_step: float | None = None

    def set_stage(self, key: str, now: float | None = None) -> None:
        """A new stage begins (the time of the one that ends is kept for :class:`StageHistory`)."""
        t = time.monotonic() if now is None else now
        with self._lock:
            self._enter(key, t)

    def _enter(self, key: str, t: float) -> None:
        if key == self.stage:
            return
        self.durations[self.stage] = self.durations.get(self.stage, 0.0) + (t - self.t_stage)
        self.stage, self.t_stage = key, t

    def on_step(self, step: int, steps: int, now: float | None = None) -> None:
        """The optimisation's ``progress(step, steps)``; its last step begins calibrating and saving."""
        t = time.monotonic() if now is None else now
        with self._lock:
            if self.stage != "optimise" or step < self.step:  # the optimisation starts (or a second pass)
                self._enter("optimise", t)
                self.first_step, self.t_first = int(step), t
            self.step, self.steps, self.t_last = int(step), int(steps), t
            if self.step > self.first_step:
                self.per_step = (t - self.t_first) / (self.step - self.first_step)
            if steps and step >= steps:
                self._enter("save", t)

    def finish(self, now: float | None = None) -> dict[str, float]:
        """The image is done: the seconds each stage took."""
        t = time.monotonic() if now is None else now
        with self._lock:
            self._enter("", t)
        return {k: v for k, v in self.durations.items() if k}

    def snapshot(self, now: float | None = None) -> Snapshot:
        t = time.monotonic() if now is None else now
        with self._lock:
            optimising = self.stage == "optimise"
            return Snapshot(stage=self.stage, stage_elapsed=max(0.0, t - self.t_stage), elapsed=max(0.0, t - self.t0),
                            step=self.step, steps=self.steps,
                            measured_steps=self.step - self.first_step if optimising else 0,
                            steps_elapsed=self.t_last - self.t_first if optimising else 0.0,
                            since_step=max(0.0, t - self.t_last) if optimising else 0.0, report=self.report)

    def view(self, now: float | None = None) -> dict[str, object]:
        """The stage as the API shows it: ``key``, ``label`` (in words, with the step), ``step``,
        ``steps`` and ``elapsed_s`` in it."""
        s = self.snapshot(now)
        stepped = s.stage in ("optimise", "save", "check", "report") and bool(s.steps)  # the steps are known
        return {"key": s.stage, "label": stage_label(s.stage, s.step, s.steps),
                "step": s.step if stepped else None, "steps": s.steps if stepped else None,
                "elapsed_s": round(s.stage_elapsed, 1)}


class StageHistory:
    """The stage times of the images this server finished, per kind of job (mode and quality): the
    expected costs of the next ones (:meth:`costs`), with a prior before any was measured."""

    def __init__(self, keep: int = 8) -> None:
        self._lock = threading.Lock()
        self._keep = keep
        self._seen: dict[object, dict[str, deque[float]]] = {}

    def add(self, kind: object, durations: dict[str, float], per_step: float | None) -> None:
        with self._lock:
            d = self._seen.setdefault(kind, {})
            for k, v in durations.items():
                if k in STAGES and k != "optimise":
                    d.setdefault(k, deque(maxlen=self._keep)).append(float(v))
            if per_step is not None and per_step > 0:
                d.setdefault("per_step", deque(maxlen=self._keep)).append(float(per_step))

    def costs(self, kind: object, prior: Costs) -> Costs:
        """``prior`` with every stage measured here replaced by the mean of its recent times; the error is
        the larger of :data:`HISTORY_REL` and the spread of those times (the prior's error while a stage
        was never measured)."""
        with self._lock:
            d = {k: list(v) for k, v in self._seen.get(kind, {}).items()}
        if not d:
            return prior
        vals: dict[str, float] = {}
        rel = HISTORY_REL
        for k in ("prepare", "save", "check", "report", "per_step"):
            xs = d.get(k)
            if not xs:
                if k != "report":  # a report is often never asked for: its prior's error does not count
                    rel = max(rel, prior.rel)
                continue
            mean = sum(xs) / len(xs)
            vals[k] = mean
            if mean > 0 and len(xs) > 1:
                rel = max(rel, (max(xs) - min(xs)) / (2 * mean))
        return Costs(prepare=vals.get("prepare", prior.prepare), per_step=vals.get("per_step", prior.per_step),
                     steps=prior.steps, save=vals.get("save", prior.save), check=vals.get("check", prior.check),
                     report=vals.get("report", prior.report), rel=min(rel, 1.0))


def prior_costs(total_s: float, fixed_s: float, steps: int) -> Costs:
    """Stage costs from a preset's expected time per image (``total_s``, of which ``fixed_s`` is not
    the search): the fixed part split between preparing (half), saving (three tenths) and checking (a
    fifth); a report costs about as much as the fixed part."""
    fixed = min(fixed_s, total_s)
    search = max(total_s - fixed, 0.0)
    return Costs(prepare=0.5 * fixed, per_step=search / max(steps, 1), steps=max(steps, 1), save=0.3 * fixed,
                 check=0.2 * fixed, report=fixed, rel=PRIOR_REL)


class EtaBoard:
    """The shown estimates of running images and jobs (keyed by the caller), made :func:`monotone`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shown: dict[object, Shown] = {}

    def show(self, key: object, interval: Interval, now: float | None = None) -> Shown:
        t = time.time() if now is None else now
        with self._lock:
            s = monotone(self._shown.get(key), interval, t)
            self._shown[key] = s
            return s

    def forget(self, match: object) -> None:
        """Drop the estimates of ``match`` (a key, or a job id: every key that starts with it)."""
        with self._lock:
            for k in [k for k in self._shown if k == match or (isinstance(k, tuple) and k and k[0] == match)]:
                del self._shown[k]
