"""``TrialBoard``: one progress line over every trial of a budget search: how many run, wait and are
done, the epoch of each running trial that trains in this process, and an estimate of the time left.

The budget submits each batch of trials to its executor and hears when each finishes; an executor's
workers take trials in submission order, so the first ``workers`` unfinished trials of a batch are the
ones running. The estimate (ETA) covers the trials submitted so far: the mean wall time of the finished
trials that did the same kind of work (training or not; the other kind's mean while none has), times
the rounds of ``workers`` the unfinished ones still need. A strategy may submit further batches, so the
estimate is a floor, not the search's end.

The line goes to the search's progress callback as ``"budget: trials\\t<status>"``: the part before the
tab names the display (the CLI keeps one bar per name), the part after it is the status shown beside it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

#: The display's name (the text before the tab in each progress message).
NAME = "budget: trials"


@dataclass
class _Entry:
    name: str
    trains: bool
    started: float | None = None
    wall_s: float | None = None
    epoch: tuple[int, int] | None = None


@dataclass
class TrialBoard:
    """Tracks the trials of one search for ``progress(description, done, total)`` (see the module)."""

    progress: Callable[[str, int, int], None] | None
    workers: int = 1
    clock: Callable[[], float] = time.perf_counter
    entries: list[_Entry] = field(default_factory=list)

    def submit(self, names: list[str], trains: list[bool]) -> list[int]:
        """Add a batch; returns the board index of each trial."""
        first = len(self.entries)
        self.entries += [_Entry(n, t) for n, t in zip(names, trains)]
        self._mark_running()
        self.show()
        return list(range(first, len(self.entries)))

    def finish(self, index: int, wall_s: float | None = None) -> None:
        """Trial ``index`` finished (``wall_s``: its own measured time, else the time since it started)."""
        e = self.entries[index]
        now = self.clock()
        e.wall_s = wall_s if wall_s is not None else (now - e.started if e.started is not None else 0.0)
        self._mark_running()
        self.show()

    def epoch(self, done: int, total: int) -> None:
        """The running in-process trial reached epoch ``done`` of at most ``total``."""
        running = self.running()
        if running:
            running[0].epoch = (done, total)
            self.show()

    def running(self) -> list[_Entry]:
        return self._unfinished()[:self.workers]

    def queued(self) -> list[_Entry]:
        return self._unfinished()[self.workers:]

    def eta_s(self) -> float | None:
        """Seconds until the submitted trials are done (see the module); None before any finished."""
        done = [e for e in self.entries if e.wall_s is not None]
        if not done:
            return None
        left = self._unfinished()
        if not left:
            return 0.0
        mean = {k: [e.wall_s for e in done if e.trains == k] for k in (True, False)}
        every = [e.wall_s for e in done]
        per = [sum(mean[e.trains]) / len(mean[e.trains]) if mean[e.trains] else sum(every) / len(every) for e in left]
        return math.ceil(len(left) / self.workers) * sum(per) / len(per)

    def status(self) -> str:
        """``"1 running (-45% MACs + distill: epoch 3/30), 2 queued, 4 done; about 6 min left"``."""
        running = self.running()
        names = ", ".join(f"{e.name}: epoch {e.epoch[0]}/{e.epoch[1]}" if e.epoch else e.name for e in running)
        done = sum(e.wall_s is not None for e in self.entries)
        text = f"{len(running)} running ({names}), {len(self.queued())} queued, {done} done" if running \
            else f"{done} done"
        eta = self.eta_s()
        if eta:
            text += f"; about {eta / 60:.0f} min left" if eta >= 90 else f"; about {eta:.0f} s left"
        return text

    def show(self) -> None:
        if self.progress is not None:
            done = sum(e.wall_s is not None for e in self.entries)
            self.progress(f"{NAME}\t{self.status()}", done, len(self.entries))

    def _unfinished(self) -> list[_Entry]:
        return [e for e in self.entries if e.wall_s is None]

    def _mark_running(self) -> None:
        now = self.clock()
        for e in self.running():
            if e.started is None:
                e.started = now
