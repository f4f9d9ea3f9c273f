"""The training progress bar (trackformer.train.logger.LimitProgress) counts toward the limit that will stop the
run: the step budget, or the time limit when the time runs out first at the pace so far."""

import io

from trackformer.train.logger import LimitProgress


class Clock:
    """A monotonic clock the test moves by hand (seconds)."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def last_line(out: io.StringIO) -> str:
    return out.getvalue().split("\r")[-1]


def run(total, minutes, seconds_per_step, steps, initial=0):
    clock, out = Clock(), io.StringIO()
    bar = LimitProgress(total, initial, minutes, file=out, clock=clock, desc="mixit")
    for _ in range(steps):
        clock.now += seconds_per_step
        bar.update(1)
    bar.set_postfix(loss="1.234")
    return bar, last_line(out)


def test_time_limit_binding_first_counts_minutes():
    """9,000 steps at 1 step/s would take 2.5 h; 6 minutes stop the run first (the demo's case)."""
    bar, line = run(9000, 6.0, 1.0, 30)
    assert bar.by_time and bar.bar.total == 360 and bar.bar.n == 30
    assert "time limit, 00:30 of 06:00, 05:30 left, step 30/9000, loss=1.234" in line, line
    assert "/9000 [" not in line  # no step ETA of hours


def test_step_budget_binding_first_counts_steps():
    bar, line = run(9000, 6.0, 0.01, 600)  # 100 steps/s: 9,000 steps in 90 s, well inside 6 minutes
    assert not bar.by_time and bar.bar.total == 9000 and bar.bar.n == 600
    assert "600/9000" in line and "time limit" not in line and "loss=1.234" in line


def test_no_step_budget_or_no_time_limit():
    bar, line = run(float("inf"), 1.0, 2.0, 10)
    assert bar.by_time and "00:20 of 01:00, 00:40 left, step 10," in line
    bar, line = run(50, None, 60.0, 10)  # slow, but there is no time limit
    assert not bar.by_time and bar.bar.total == 50 and "10/50" in line


def test_the_bar_switches_when_the_pace_changes_and_resumes_from_a_step():
    clock, out = Clock(), io.StringIO()
    bar = LimitProgress(1000, 400, 10.0, file=out, clock=clock)
    for _ in range(10):  # 10 steps/s: 600 steps left take 60 s of 600
        clock.now += 0.1
        bar.update(1)
    assert not bar.by_time and bar.bar.n == 410
    for _ in range(20):  # now 1 step per 10 s: the time runs out first
        clock.now += 10.0
        bar.update(1)
    assert bar.by_time and bar.bar.n == round(clock.now - 100.0)
    bar.bar.refresh()  # tqdm draws at most once a second of real time
    assert "step 430/1000" in last_line(out)
    clock.now += 1000.0  # past the limit: the bar stays full, nothing negative
    bar.update(1)
    bar.bar.refresh()
    assert bar.bar.n == 600 and "10:00 of 10:00, 00:00 left" in last_line(out)
    bar.close()
