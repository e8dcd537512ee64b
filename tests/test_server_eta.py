"""The web app's stage names and ETA (:mod:`sfumato.server.eta`) on synthetic progress sequences: the shown
time left never rises by more than the error it stated before, a stage that runs long never reads "1 s
left", and the estimate learns the stage times of finished images (fast tier: plain arithmetic)."""

from __future__ import annotations

import random

import pytest

from sfumato.server import eta


def _costs(**kw: float) -> eta.Costs:
    base = {"prepare": 30.0, "per_step": 2.0, "steps": 80, "save": 10.0, "check": 6.0, "report": 20.0,
            "rel": eta.PRIOR_REL}
    return eta.Costs(**{**base, **kw})


def _run(durations: dict[str, float], per_step: list[float], costs: eta.Costs, *, poll_s: float = 1.0,
         report: bool = False) -> list[tuple[float, eta.Snapshot, eta.Shown, float]]:
    """Drive an :class:`ImageClock` through an image whose stages take ``durations`` and whose steps take
    ``per_step`` seconds, polling the shown ETA every ``poll_s``: ``(time, snapshot, shown, true time left)``."""
    events: list[tuple[float, str, object]] = []  # (time, kind, payload), in order
    t = durations["prepare"]
    for i, dt in enumerate(per_step, start=1):
        t += dt
        events.append((t, "step", i))
    t += durations["save"]
    events.append((t, "stage", "check"))
    t += durations["check"]
    if report:
        events.append((t, "stage", "report"))
        t += durations["report"]
    end = t
    clock = eta.ImageClock(report=report, now=0.0)
    board = eta.EtaBoard()
    out = []
    now, k = 0.0, 0
    while now < end:
        while k < len(events) and events[k][0] <= now:
            when, kind, what = events[k]
            if kind == "step":
                clock.on_step(int(what), len(per_step), now=when)  # type: ignore[arg-type]
            else:
                clock.set_stage(str(what), now=when)
            k += 1
        snap = clock.snapshot(now)
        shown = board.show("image", eta.remaining(snap, costs), now)
        out.append((now, snap, shown, end - now))
        now += poll_s
    return out


def _assert_never_backwards(seq: list[tuple[float, eta.Snapshot, eta.Shown, float]]) -> None:
    for (t0, _, a, _), (t1, _, b, _) in zip(seq, seq[1:], strict=False):
        assert b.seconds <= a.seconds + a.error + 1e-6, (t0, a, t1, b)  # never up by more than the error
        if t1 - t0 <= a.seconds:  # and the predicted end (now + seconds) moves later by at most the error
            assert t1 + b.seconds <= t0 + a.seconds + a.error + 1e-6, (t0, a, t1, b)
        assert b.seconds >= 0 and b.error >= 0


def test_a_slow_first_image_never_jumps_back_and_never_says_one_second() -> None:
    # the first image: preparing takes 3x its prior, the steps 1.5x, the checks 2x
    seq = _run({"prepare": 90.0, "save": 15.0, "check": 12.0}, [3.0] * 80, _costs())
    _assert_never_backwards(seq)
    for now, snap, shown, true_left in seq:
        if true_left > 2 * eta.FINISHING_S:  # lots of work still to do: a real time, never "almost done"
            assert not eta.finishing(shown, True), (now, snap, shown, true_left)
        if snap.stage == "prepare":  # every step is still to come
            assert shown.seconds + shown.error >= 80 * 2.0 * (1 - eta.PRIOR_REL)
    # once a few steps are timed the band holds the truth
    timed = [(s, sh, left) for _, s, sh, left in seq if s.stage == "optimise" and s.measured_steps >= 10]
    assert timed
    for snap, shown, left in timed:
        assert abs(shown.seconds - left) <= shown.error + 0.5 * 2.0 * (15 + 12), (snap, shown, left)
    labels = {eta.stage_label(s.stage, s.step, s.steps) for _, s, _, _ in seq}
    assert {"preparing the target", "optimising: step 34 of 80", "calibrating to the budget and saving",
            "checking the saved file"} <= labels


def test_fast_images_and_a_report_keep_the_property() -> None:
    seq = _run({"prepare": 4.0, "save": 2.0, "check": 1.0, "report": 30.0}, [0.5] * 40, _costs(), poll_s=0.7,
               report=True)
    _assert_never_backwards(seq)
    # the report (expected 20 s ± 60 %, it takes 30 s): a real time while it may well go on, then
    # "finishing" rather than a few seconds once it runs past that; the band never closes on zero
    reporting = [(s, sh) for _, s, sh, _ in seq if s.stage == "report"]
    assert reporting
    for s, sh in reporting:
        if s.stage_elapsed < 20 * (1 - eta.PRIOR_REL):
            assert not eta.finishing(sh, True), (s, sh)
        assert sh.seconds + sh.error >= eta.OVERRUN_SHARE * s.stage_elapsed - 1e-6
        assert eta.finishing(sh, True) == (sh.seconds < eta.FINISHING_S)
    assert eta.finishing(reporting[-1][1], True)  # 29 s into a 20 s stage: "finishing…", not "~1 s left"


@pytest.mark.parametrize("seed", range(20))
def test_monotone_holds_for_any_sequence_of_estimates(seed: int) -> None:
    rng = random.Random(seed)
    prev: eta.Shown | None = None
    now = 0.0
    for _ in range(200):
        now += rng.uniform(0.1, 5.0)
        lo = rng.uniform(0, 600)
        hi = lo + rng.uniform(0, 300)
        s = eta.monotone(prev, (lo, hi), now)
        assert s.error >= (hi - lo) / 2 - 1e-9  # never claims more certainty than the interval
        assert abs(s.seconds - (lo + hi) / 2) <= s.error + 1e-9  # the interval's middle is in the band
        if prev is not None:
            assert s.seconds <= prev.seconds + prev.error + 1e-6
            if now - prev.at <= prev.seconds:
                assert now + s.seconds <= prev.at + prev.seconds + prev.error + 1e-6
        prev = s


def test_stage_overrun_allows_for_more_and_random_images_keep_the_property() -> None:
    c = _costs()
    lo, hi = eta.remaining(eta.Snapshot(stage="check", stage_elapsed=60.0, elapsed=300.0), c)
    assert lo == 0 and hi == pytest.approx(eta.OVERRUN_SHARE * 60)  # 10 s expected, 60 s in: still 15 s allowed
    rng = random.Random(7)
    for _ in range(10):
        d = {"prepare": rng.uniform(1, 120), "save": rng.uniform(1, 30), "check": rng.uniform(1, 30),
             "report": rng.uniform(1, 60)}
        steps = [rng.uniform(0.2, 5) for _ in range(rng.randint(5, 60))]
        _assert_never_backwards(_run(d, steps, c, poll_s=rng.uniform(0.5, 3), report=rng.random() < 0.5))


def test_history_replaces_the_prior_and_labels_read_in_words() -> None:
    prior = eta.prior_costs(360.0, 60.0, 80)
    assert prior.prepare == 30 and prior.per_step == pytest.approx(300 / 80) and prior.rel == eta.PRIOR_REL
    h = eta.StageHistory()
    assert h.costs(("cloak", "default"), prior) is prior
    clock = eta.ImageClock(report=False, now=0.0)
    for i in range(1, 11):
        clock.on_step(i, 10, now=40.0 + 2 * i)
    assert clock.stage == "save"
    clock.set_stage("check", now=70.0)
    h.add(("cloak", "default"), clock.finish(now=75.0), clock.per_step)
    c = h.costs(("cloak", "default"), prior)
    assert (c.prepare, c.per_step, c.save, c.check) == (42.0, 2.0, 10.0, 5.0)
    assert c.rel == eta.HISTORY_REL and c.report == prior.report
    assert h.costs(("poison", "fast"), prior) is prior  # another kind of job keeps its prior
    assert eta.stage_label("optimise", 34, 80) == "optimising: step 34 of 80"
    assert eta.stage_label("check") == "checking the saved file"
    view = eta.ImageClock(report=True, now=0.0).view(now=3.0)
    assert view == {"key": "prepare", "label": "preparing the target", "step": None, "steps": None, "elapsed_s": 3.0}
