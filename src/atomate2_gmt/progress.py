"""Progress of long loops (prediction parts, training epochs, DFPT phases), free of CLI code.

Library code reports through two calls and never prints by itself:

- :func:`task` — a counted loop: ``with task("predicting", total=300, unit="structures") as t:``
  then ``t.advance(k)`` as parts are done;
- :func:`phase` — one step of a longer run (e.g. "ABINIT dataset 2/3: DDK");
- :func:`overall` — a loop made of parts that report their own loops (a screening run's chunk
  jobs): inside it every :func:`task` counts towards the overall total instead of being shown on
  its own, and each one that ends is a *checkpoint* (one line off a terminal: the cumulative
  count, the rate and the time left across all parts). Units a part finds already done (a
  resumed run, :meth:`Task.skip`) count as done but not in the rate.

Nothing is shown unless the caller installed a reporter with :func:`reporting` (the CLI does):
a rich progress bar when the stream is a terminal, plain lines otherwise (CI, SLURM logs), nothing
with ``quiet``. The reporter lives in a context variable, so jobs run in-process by jobflow's
``run_locally`` report to the command that started them; worker threads that should report are
started in a copy of the caller's context (``contextvars.copy_context().run``). A forked worker
process inherits the variable but never reports: only the process that installed the reporter
writes to it.
"""

from __future__ import annotations

import contextvars
import os
import sys
import threading
import time
from contextlib import contextmanager, suppress
from typing import IO, TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import logging
    from collections.abc import Callable, Iterator

__all__ = [
    "LineReporter",
    "Reporter",
    "RichReporter",
    "Task",
    "active",
    "heartbeat",
    "idle_s",
    "overall",
    "phase",
    "polling",
    "reporting",
    "task",
]

Mode = Literal["auto", "bar", "lines", "quiet"]


class Reporter:
    """What a reporter does with the library's reports; the base class shows nothing."""

    def start(self, key: int, label: str, total: int | None, unit: str, done: int) -> None:
        """A counted loop ``label`` of ``total`` ``unit`` begins (``done`` already done)."""

    def advance(self, key: int, n: int, info: str | None = None) -> None:
        """``n`` more of loop ``key`` are done (``info``: a short status, e.g. the loss)."""

    def grow(self, key: int, n: int) -> None:
        """Loop ``key`` has ``n`` more units than announced (one input file held several
        structures)."""

    def skip(self, key: int, n: int) -> None:
        """``n`` more of loop ``key`` were found already done (not worked on: not in the
        rate)."""
        self.advance(key, n)

    def overall(self, key: int, status: Callable[[], str]) -> None:
        """Loop ``key`` is made of parts (:func:`overall`); ``status()`` says its count, rate
        and time left."""

    def checkpoint(self, key: int, text: str) -> None:
        """One part of loop ``key`` ended; ``text``: the loop's count, rate and time left."""

    def finish(self, key: int) -> None:
        """Loop ``key`` ended (completed or not)."""

    def message(self, text: str) -> None:
        """One phase line."""

    def close(self) -> None:
        """The reporting context ends."""

    def idle_s(self) -> float:
        """Seconds since the reporter last wrote a line (0 where it shows a live display)."""
        return 0.0


class _State:
    __slots__ = (
        "done",
        "info",
        "label",
        "last_line",
        "last_pct",
        "skipped",
        "start",
        "total",
        "unit",
    )

    def __init__(self, label: str, total: int | None, unit: str, done: int) -> None:
        self.label, self.total, self.unit, self.done = label, total, unit, done
        self.start = time.perf_counter()
        self.last_line = self.start
        self.last_pct = -1
        self.info: str | None = None
        self.skipped = 0


class LineReporter(Reporter):
    """Plain lines for logs: one when a loop starts, one per ``step_pct`` percent done (or after
    ``every_s`` seconds without a line), one when it ends with the count and the time taken."""

    def __init__(self, stream: IO[str], step_pct: int = 10, every_s: float = 30.0) -> None:
        self.stream = stream
        self.step_pct = max(1, int(step_pct))
        self.every_s = every_s
        self._states: dict[int, _State] = {}
        self._overall: dict[int, Callable[[], str]] = {}
        self.last_write = time.perf_counter()

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
        self.last_write = time.perf_counter()

    def _count(self, s: _State) -> str:
        of = f"/{s.total}" if s.total is not None else ""
        return f"{s.label}: {s.done}{of} {s.unit}"

    def start(self, key: int, label: str, total: int | None, unit: str, done: int) -> None:
        s = self._states[key] = _State(label, total, unit, done)
        if total:
            s.last_pct = 100 * done // total // self.step_pct * self.step_pct
        self._write(self._count(s) + (" (resumed)" if done else ""))

    def advance(self, key: int, n: int, info: str | None = None) -> None:
        s = self._states.get(key)
        if s is None:
            return
        s.done += n
        s.info = info or s.info
        now = time.perf_counter()
        if key in self._overall:  # a line per part (checkpoint), or after every_s without one
            if now - s.last_line >= self.every_s and (s.total is None or s.done < s.total):
                s.last_line = now
                self._write(self._overall[key]())
            return
        if s.total:
            pct = 100 * s.done // s.total // self.step_pct * self.step_pct
            if s.done >= s.total:
                return  # the final line comes from finish()
            if pct <= s.last_pct and now - s.last_line < self.every_s:
                return
            s.last_pct = pct
            text = f"{self._count(s)} ({100 * s.done / s.total:.0f} %, {now - s.start:.1f} s)"
        else:
            if now - s.last_line < self.every_s:
                return
            text = f"{self._count(s)} ({now - s.start:.1f} s)"
        s.last_line = now
        self._write(text + (f" {s.info}" if s.info else ""))

    def grow(self, key: int, n: int) -> None:
        s = self._states.get(key)
        if s is not None and s.total is not None:
            s.total += n

    def skip(self, key: int, n: int) -> None:
        s = self._states.get(key)
        if s is not None:
            s.skipped += n
        self.advance(key, n)

    def overall(self, key: int, status: Callable[[], str]) -> None:
        self._overall[key] = status

    def checkpoint(self, key: int, text: str) -> None:
        s = self._states.get(key)
        if s is not None:
            s.last_line = time.perf_counter()
        self._write(text)

    def finish(self, key: int) -> None:
        s = self._states.pop(key, None)
        self._overall.pop(key, None)
        if s is None:
            return
        what = "done" if s.total is None or s.done >= s.total else "stopped"
        text = f"{self._count(s)} {what} in {time.perf_counter() - s.start:.1f} s"
        self._write(text + (f" {s.info}" if s.info else ""))

    def message(self, text: str) -> None:
        self._write(text)

    def idle_s(self) -> float:
        return time.perf_counter() - self.last_write


class RichReporter(Reporter):
    """rich progress bars on a terminal. Refreshed on each report (no refresh thread, so that
    the prediction engine can fork its model workers while a bar is shown)."""

    def __init__(self, stream: IO[str]) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(file=stream)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self.progress.start()
        self._ids: dict[int, Any] = {}

    def start(self, key: int, label: str, total: int | None, unit: str, done: int) -> None:
        self._ids[key] = self.progress.add_task(
            label, total=total, completed=done, unit=unit, info=""
        )
        self.progress.refresh()

    def advance(self, key: int, n: int, info: str | None = None) -> None:
        if key in self._ids:
            if info is not None:
                self.progress.update(self._ids[key], advance=n, info=info)
            else:
                self.progress.update(self._ids[key], advance=n)
            self.progress.refresh()

    def grow(self, key: int, n: int) -> None:
        task_id = self._ids.get(key)
        if task_id is not None:
            total = next(t.total for t in self.progress.tasks if t.id == task_id)
            if total is not None:
                self.progress.update(task_id, total=total + n)
                self.progress.refresh()

    def checkpoint(self, key: int, text: str) -> None:
        task_id = self._ids.get(key)
        if task_id is not None:  # the bar shows the count: the rate and the chunks beside it
            self.progress.update(task_id, info=text.partition("(")[2].rstrip(")"))
            self.progress.refresh()

    def finish(self, key: int) -> None:
        task_id = self._ids.pop(key, None)
        if task_id is not None:
            self.progress.stop_task(task_id)
            self.progress.refresh()

    def message(self, text: str) -> None:
        self.progress.console.print(text, markup=False, highlight=False)
        self.progress.refresh()

    def close(self) -> None:
        self.progress.stop()


_REPORTER: contextvars.ContextVar[tuple[int, Reporter] | None] = contextvars.ContextVar(
    "atomate2_gmt_progress", default=None
)
_NEXT_KEY = [0]
_OVERALL: contextvars.ContextVar[tuple[int, Task] | None] = contextvars.ContextVar(
    "atomate2_gmt_progress_overall", default=None
)


def _current() -> Reporter | None:
    """The reporter installed in this context by this process (None in a forked worker)."""
    held = _REPORTER.get()
    if held is None or held[0] != os.getpid():
        return None
    return held[1]


def active() -> bool:
    """Whether a reporter is installed in this context (and this process)."""
    return _current() is not None


def idle_s() -> float:
    """Seconds since the installed reporter last wrote a line (0 without one, or with a live
    display such as a progress bar)."""
    reporter = _current()
    return 0.0 if reporter is None else reporter.idle_s()


class Task:
    """A counted loop (see :func:`task`); a context manager that ends the loop on exit."""

    def __init__(self, label: str, total: int | None, unit: str, done: int = 0) -> None:
        if total is not None and total < 0:
            raise ValueError(f"total must be >= 0, got {total}")
        self.reporter = _current()
        _NEXT_KEY[0] += 1
        self.key = _NEXT_KEY[0]
        self.label, self.unit = label, unit
        self.done = done
        self.total = total
        self.skipped = 0
        self.parts_done = 0
        self.parts: int | None = None
        self.phases: set[str] = set()
        self.start = time.perf_counter()
        held = _OVERALL.get()
        self.parent = held[1] if held is not None and held[0] == os.getpid() else None
        self._open = self.reporter is not None
        if self.parent is not None:  # a part of an overall loop: counted there, not shown
            self.reporter = None
            if done:
                self.parent.skip(done)
        if self.reporter is not None:
            self.reporter.start(self.key, label, total, unit, done)

    def advance(self, n: int = 1, info: str | None = None) -> None:
        """``n`` more units done; ``info`` a short status shown next to the count."""
        self.done += n
        if self.parent is not None:
            self.parent.advance(n)
        if self._open and n and self.reporter is not None:
            self.reporter.advance(self.key, n, info)

    def skip(self, n: int) -> None:
        """``n`` more units found already done (e.g. stored by an earlier run): counted as
        done, but not in the rate of :func:`overall`."""
        self.done += n
        self.skipped += n
        if self.parent is not None:
            self.parent.skip(n)
        if self._open and n and self.reporter is not None:
            self.reporter.skip(self.key, n)

    def grow(self, n: int) -> None:
        """The loop has ``n`` more units than its total said (never shows more done than the
        total: e.g. a file of several structures counted as one input)."""
        if n <= 0 or self.total is None:
            return
        self.total += n
        if self.parent is not None:
            self.parent.grow(n)
        if self._open and self.reporter is not None:
            self.reporter.grow(self.key, n)

    def status(self) -> str:
        """``label: done/total unit (pct, part k/K, rate, time left, elapsed)``: the rate
        counts the units worked on since the loop began (not those skipped)."""
        elapsed = time.perf_counter() - self.start
        worked = self.done - self.skipped
        rate = worked / elapsed if elapsed > 0 else 0.0
        of = f"/{self.total}" if self.total is not None else ""
        bits = []
        if self.total:
            bits.append(f"{100 * self.done / self.total:.0f} %")
        if self.parts is not None:
            bits.append(f"chunk {self.parts_done}/{self.parts}")
        if self.skipped:
            bits.append(f"{self.skipped} already done")
        bits.append(f"{rate:.1f} {self.unit}/s")
        if self.total is not None and rate > 0 and self.done < self.total:
            bits.append(f"ETA {_clock((self.total - self.done) / rate)}")
        bits.append(f"elapsed {_clock(elapsed)}")
        return f"{self.label}: {self.done}{of} {self.unit} ({', '.join(bits)})"

    def part_done(self) -> None:
        """One part of this overall loop ended: report a checkpoint."""
        self.parts_done += 1
        if self._open and self.reporter is not None:
            self.reporter.checkpoint(self.key, self.status())

    def close(self) -> None:
        """End the loop (idempotent)."""
        if self.parent is not None:
            parent, self.parent = self.parent, None
            parent.part_done()
        if self._open and self.reporter is not None:
            self._open = False
            self.reporter.finish(self.key)

    def __enter__(self) -> Task:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def task(label: str, total: int | None, unit: str = "items", done: int = 0) -> Task:
    """Report a counted loop of ``total`` ``unit`` (None: unknown) to the installed reporter;
    does nothing without one. Use as a context manager and call ``advance`` as work is done."""
    return Task(label, total, unit, done)


def _clock(seconds: float) -> str:
    """``h:mm:ss`` (or ``m:ss``) of a duration."""
    s = max(0, round(seconds))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


@contextmanager
def overall(
    label: str, total: int | None, unit: str = "items", parts: int | None = None
) -> Iterator[Task]:
    """A loop of ``total`` ``unit`` made of ``parts`` parts that each report their own
    :func:`task` (e.g. the chunk jobs of a screening run): inside the block those tasks count
    towards this one and are not shown on their own; each that ends reports a checkpoint (off a
    terminal, a line with the cumulative count, the rate and the time left). Yields the overall
    :class:`Task`; does nothing visible without a reporter."""
    with Task(label, total, unit) as whole:
        whole.parts = parts
        if whole._open and whole.reporter is not None:
            whole.reporter.overall(whole.key, whole.status)
        token = _OVERALL.set((os.getpid(), whole))
        try:
            yield whole
        finally:
            _OVERALL.reset(token)


def phase(text: str, logger: logging.Logger | None = None) -> None:
    """Report one phase of a longer run; without a reporter, ``logger`` (if given) logs it at
    INFO level instead (what a jobflow-remote worker's log shows). Inside :func:`overall` a
    phase already reported (each part loading the same models) is not repeated."""
    reporter = _current()
    held = _OVERALL.get()
    if reporter is not None and held is not None and held[0] == os.getpid():
        if text in held[1].phases:
            return
        held[1].phases.add(text)
    if reporter is not None:
        reporter.message(text)
    elif logger is not None:
        logger.info(text)


@contextmanager
def polling(
    poll: Callable[[], None], interval_s: float = 1.0, always: bool = False
) -> Iterator[None]:
    """Call ``poll`` every ``interval_s`` seconds in a background thread while the ``with``
    block runs (e.g. to read the progress a child process writes to a file), and once more at
    the end. Without a reporter this does nothing unless ``always`` (for a ``poll`` that also
    logs, see :func:`phase`). An exception in ``poll`` stops the polling, never the block."""
    if not (always or active()):
        yield
        return
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval_s):
            try:
                poll()
            except Exception:
                return

    thread = threading.Thread(target=contextvars.copy_context().run, args=(loop,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        with suppress(Exception):
            poll()


@contextmanager
def heartbeat(label: str, every_s: float = 2.0) -> Iterator[None]:
    """While the block runs, report "``label`` (N s)" whenever the reporter has written nothing
    for ``every_s`` seconds: one step that takes long (building a model, relaxing one crystal)
    without a count to advance. Nothing without a reporter; a block shorter than ``every_s``
    says nothing."""
    if not active():
        yield
        return
    start = time.perf_counter()
    running = [True]

    def beat() -> None:
        if running[0] and idle_s() >= every_s * 0.95:
            phase(f"{label} ({time.perf_counter() - start:.0f} s)")

    with polling(beat, interval_s=every_s / 4):
        yield
        running[0] = False  # the final poll says nothing


def _choose(mode: Mode, stream: IO[str], every_s: float | None = None) -> Reporter | None:
    if mode == "quiet":
        return None
    if mode == "auto":
        isatty = getattr(stream, "isatty", None)
        mode = "bar" if isatty is not None and isatty() else "lines"
    if mode == "bar":
        return RichReporter(stream)
    if mode == "lines":
        return LineReporter(stream) if every_s is None else LineReporter(stream, every_s=every_s)
    raise ValueError(f"progress mode must be auto, bar, lines or quiet, got {mode!r}")


@contextmanager
def reporting(
    mode: Mode | None = None,
    quiet: bool = False,
    stream: IO[str] | None = None,
    every_s: float | None = None,
) -> Iterator[Reporter | None]:
    """Install a reporter for the ``with`` block: ``quiet`` → none; else ``mode`` (default
    ``auto``: a bar when ``stream`` — default ``sys.stderr`` — is a terminal, plain lines
    otherwise; ``every_s``: the longest a counted loop that advances goes without a line,
    default 30 s). Yields the reporter (None when quiet)."""
    out = stream if stream is not None else sys.stderr
    reporter = _choose("quiet" if quiet else (mode or "auto"), out, every_s)
    token = _REPORTER.set(None if reporter is None else (os.getpid(), reporter))
    try:
        yield reporter
    finally:
        _REPORTER.reset(token)
        if reporter is not None:
            reporter.close()
