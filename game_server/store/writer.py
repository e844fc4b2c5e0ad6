"""The storage thread: one database connection, every job in order, off the event loop.

The game never waits on the disk. Writes are fire-and-forget: they gather on the loop for
up to ``HANDOFF_SECONDS`` and reach the thread together (waking it for each finished
match cost a busy server a tenth of its CPU in futex calls and GIL hand-offs), and a run of
finished matches becomes one bulk job whose statements are made on the loop
(``make_bulk``). Each wake-up's jobs run in one transaction. A read first hands over the
writes gathered before it, so it sees them, and comes back as a future.

A batch whose transaction fails as a whole (BEGIN, COMMIT or ROLLBACK: a full disk, an
I/O error, a lock held too long, a lost server connection) is given up: its reads raise
``StoreUnavailable``, its writes are lost and counted, and the thread goes on with a fresh
connection. The backlog is bounded: past ``backlog_max`` waiting jobs, new writes are
dropped (and counted) rather than kept in memory while the database is broken.

The database itself is the caller's: ``Database`` says how to open a connection, begin a
transaction and tell whether one is open, so SQLite and PostgreSQL share these rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from typing import Any, Generic, Protocol, TypeVar

import structlog

from game_server.core.ports import StoreUnavailable
from game_server.core.records import MatchRecord

log = structlog.get_logger("game_server.store")

T = TypeVar("T")
C = TypeVar("C")

# Jobs waiting for the writer beyond which new writes are dropped: about 15 s of a
# saturated server's writes, some 100 MiB. Normally the backlog is near zero.
BACKLOG_MAX = 50_000
# Writes wait on the loop this long (or until this many gather) before the writer wakes.
HANDOFF_SECONDS = 0.05
HANDOFF_MAX = 1000
FAILURE_PAUSE = 0.5  # after a failed batch: lets jobs gather instead of failing one by one


class Database(Protocol[C]):
    """What the writer needs to know about one database engine."""

    errors: tuple[type[Exception], ...]  # what a failed statement raises

    def connect(self) -> C:
        """A new connection, schema migrated; raises if the database cannot be opened."""
        ...

    def begin(self, conn: C, *, write: bool) -> None: ...

    def execute(self, conn: C, sql: str) -> None:
        """Run a statement without parameters (COMMIT, SAVEPOINT ...)."""
        ...

    def in_transaction(self, conn: C) -> bool: ...

    def close(self, conn: C) -> None: ...

    @property
    def reconnect_after_failure(self) -> bool:
        """False where a new connection would be a new, empty database (SQLite :memory:)."""
        ...

    @property
    def failure_aborts_transaction(self) -> bool:
        """True where any failed statement aborts the whole transaction (PostgreSQL), so
        a failed read must not be answered and then passed over as SQLite allows: the
        batch goes the careful way, with a savepoint around every job."""
        ...


def _nothing(conn: Any) -> None:
    """A job that only marks a place in the order of jobs."""


class Job(Generic[C]):
    __slots__ = ("fn", "future", "match", "parts", "write")

    def __init__(
        self,
        fn: Callable[[C], Any],
        future: Future[Any] | None,
        write: bool,
        match: MatchRecord | None = None,
        parts: list[Job[C]] | None = None,
    ) -> None:
        self.fn = fn
        self.future = future
        self.write = write
        self.match = match  # the finished match this write stores, if it is one
        # A run of match writes done as one (in bulk); a failed batch runs them one by one.
        self.parts = parts

    @property
    def writes(self) -> int:
        return len(self.parts) if self.parts else int(self.write)


BulkMaker = Callable[[list[MatchRecord]], Callable[[Any], None]]
Housekeeping = Callable[[Any], float]  # runs on the thread; returns when to run next


def answer(future: Future[Any], result: Any, error: BaseException | None) -> None:
    """Settle a read's future; one cancelled meanwhile (its caller gave up) is left alone."""
    try:
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
    except InvalidStateError:
        pass


_STOP = object()


class _WriteFailed(Exception):
    """A write failed on the fast path: the batch is run again, write by write."""


class Writer(Generic[C]):
    """The thread that owns the connection; the loop's side gathers and hands over."""

    def __init__(
        self,
        database: Database[C],
        *,
        name: str,
        make_bulk: BulkMaker,
        backlog_max: int = BACKLOG_MAX,
        housekeeping: Housekeeping | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.database = database
        self.make_bulk = make_bulk
        self.backlog_max = backlog_max
        self.housekeeping = housekeeping
        self.clock = clock
        self.failures = 0  # batches given up because their transaction failed
        self.batches = 0  # transactions run (wake-ups with work)
        self.retries = 0  # batches run again write by write after a write failed
        self._lost = 0  # writes in failed batches (counted on the writer thread)
        self._overflow = 0  # writes dropped because the backlog was full (the loop's thread)
        # Items: a read or claim (Job), a list of writes handed over together, or _STOP.
        self._jobs: queue.SimpleQueue[Job[C] | list[Job[C]] | object] = queue.SimpleQueue()
        self._gathered: list[Job[C]] = []  # writes not handed over yet (the loop's thread)
        self._handoff: asyncio.TimerHandle | None = None
        self._submitted = 0  # jobs handed to the writer (counted on the loop's thread)
        self._taken = 0  # jobs the writer has taken up (counted on its thread)
        self._opened: Future[None] = Future()
        self.closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._opened.result()  # raise here if the database cannot be opened or migrated

    # ------------------------------------------------------------ the loop's side

    @property
    def backlog(self) -> int:
        """Jobs waiting for the thread: steady near zero, or the disk cannot keep up."""
        return len(self._gathered) + self._submitted - self._taken

    @property
    def writes_dropped(self) -> int:
        """Writes lost: in failed batches, or refused because the backlog was full."""
        return self._lost + self._overflow

    def submit(self, fn: Callable[[C], T], *, write: bool) -> Future[T]:
        """Run ``fn`` on the thread after every write made so far; its answer, as a future."""
        if self.closed:
            raise RuntimeError("the store is closed")
        self.hand_over()  # a read sees every write made before it
        future: Future[T] = Future()
        self._submitted += 1
        self._jobs.put(Job(fn, future, write))
        return future

    async def read(self, fn: Callable[[C], T]) -> T:
        return await asyncio.wrap_future(self.submit(fn, write=False))

    def committed(self) -> Future[None]:
        """Done once every write made so far is committed (or its batch failed: then
        ``StoreUnavailable``), without hurrying them: unlike a read, which hands the
        gathered writes over at once, this rides along with the next hand-over, so the
        writes still go in batches."""
        if self.closed:
            raise RuntimeError("the store is closed")
        future: Future[None] = Future()
        self._gather(Job(_nothing, future, False))
        return future

    def write(self, fn: Callable[[C], Any], *, match: MatchRecord | None = None) -> None:
        """Fire and forget; ``match`` marks a finished match's write, stored in bulk."""
        if self.closed:
            log.error("write_after_close")
            return
        if self.backlog >= self.backlog_max:
            # The writer is stuck (a broken or hopelessly slow disk): keep memory bounded.
            self._overflow += 1
            if self._overflow % 10_000 == 1:
                log.error("store_backlog_full", backlog=self.backlog_max, dropped=self._overflow)
            return
        self._gather(Job(fn, None, True, match))

    def _gather(self, job: Job[C]) -> None:
        gathered = self._gathered
        gathered.append(job)
        if len(gathered) >= HANDOFF_MAX:
            self.hand_over()
        elif self._handoff is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # called off the loop (a script, a test): no waiting
                self.hand_over()
            else:
                self._handoff = loop.call_later(HANDOFF_SECONDS, self.hand_over)

    def hand_over(self) -> None:
        """Pass the gathered writes to the thread in one queue item."""
        if self._handoff is not None:
            self._handoff.cancel()
            self._handoff = None
        if not self._gathered:
            return
        gathered, self._gathered = self._gathered, []
        self._submitted += len(gathered)
        jobs: list[Job[C]] = []
        run: list[Job[C]] = []  # consecutive finished matches: one job, in bulk
        for job in gathered:
            if job.match is not None:
                run.append(job)
                continue
            if run:
                jobs.append(self._bulk(run))
                run = []
            jobs.append(job)
        if run:
            jobs.append(self._bulk(run))
        self._jobs.put(jobs)

    def _bulk(self, run: list[Job[C]]) -> Job[C]:
        """One write for a run of match writes, its statements made here, on the loop."""
        fn = self.make_bulk([job.match for job in run if job.match is not None])
        return Job(fn, None, True, parts=run)

    async def close(self) -> None:
        if self.closed:
            return
        self.hand_over()
        self.closed = True
        self._jobs.put(_STOP)
        await asyncio.to_thread(self._thread.join)

    # ------------------------------------------------------------ the thread

    def _run(self) -> None:
        database = self.database
        conn: C | None
        try:
            conn = database.connect()
        except BaseException as exc:
            self._opened.set_exception(exc)
            return
        self._opened.set_result(None)
        stop = False
        next_chore = self.clock()  # at start-up
        while not stop:
            if self.housekeeping is not None and conn is not None and self.clock() >= next_chore:
                next_chore = self.housekeeping(conn)
            timeout = None if self.housekeeping is None else max(0.0, next_chore - self.clock())
            try:
                batch = [self._jobs.get(timeout=timeout)]
            except queue.Empty:
                continue
            while True:  # everything already waiting goes into this wake-up's batch
                try:
                    batch.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            jobs: list[Job[C]] = []
            for item in batch:
                if isinstance(item, list):
                    jobs += item
                elif isinstance(item, Job):
                    jobs.append(item)
                else:
                    stop = True  # the stop marker
            self._taken += sum(job.writes or 1 for job in jobs)
            if not jobs:
                continue
            try:
                if conn is None:
                    conn = database.connect()
                self._run_batch(conn, jobs)
            except Exception as exc:
                conn = self._batch_failed(conn, jobs, exc)
                if not stop:
                    time.sleep(FAILURE_PAUSE)
        if conn is not None:
            database.close(conn)

    def _batch_failed(self, conn: C | None, jobs: list[Job[C]], exc: Exception) -> C | None:
        """Give up a batch whose transaction failed; the connection to go on with."""
        self.failures += 1
        lost = sum(job.writes for job in jobs)
        self._lost += lost
        log.error(
            "store_batch_failed",
            error=repr(exc),
            jobs=len(jobs),
            writes_lost=lost,
            failures=self.failures,
            exc_info=exc,
        )
        unavailable = StoreUnavailable(f"storage failed: {exc}")
        for job in jobs:
            if job.future is not None and not job.future.done():
                answer(job.future, None, unavailable)
        if conn is None:
            return None
        database = self.database
        # The database may have rolled back already (a full disk, an I/O error), or not (a
        # failed COMMIT leaves the transaction open).
        with contextlib.suppress(*database.errors):
            if database.in_transaction(conn):
                database.execute(conn, "ROLLBACK")
        if not database.reconnect_after_failure:
            return conn
        # Start over on a fresh connection (opened with the next batch, so a database that
        # cannot be opened fails that batch too instead of ending the thread).
        with contextlib.suppress(Exception):
            database.close(conn)
        return None

    def _run_batch(self, conn: C, jobs: list[Job[C]]) -> None:
        """Run one wake-up's jobs in one transaction; answer reads after the commit.

        The fast path has no savepoints. If a write fails, the transaction is rolled back
        and the batch runs again with a savepoint around each write, so only the failing
        write is lost (a deadlock PostgreSQL broke costs this one retry). Where a failed
        statement aborts the transaction (``failure_aborts_transaction``), a failed read
        does the same, and the careful run guards reads too. Reads are answered only after
        the commit, so ``flush`` means "committed". Anything else that fails (BEGIN,
        COMMIT, a rollback, a lost connection) fails the batch.
        """
        self.batches += 1
        write = any(job.write for job in jobs)
        try:
            answers = self._apply(conn, jobs, write, careful=False)
        except _WriteFailed:
            if self.database.in_transaction(conn):  # some errors roll back by themselves
                self.database.execute(conn, "ROLLBACK")
            self.retries += 1
            answers = self._apply(conn, jobs, write, careful=True)
        for future, result, error in answers:
            answer(future, result, error)

    def _apply(
        self, conn: C, jobs: list[Job[C]], write: bool, *, careful: bool
    ) -> list[tuple[Future[Any], Any, BaseException | None]]:
        database = self.database
        answers: list[tuple[Future[Any], Any, BaseException | None]] = []
        if careful:  # a run of matches one by one, so only a failing match is lost
            jobs = [part for job in jobs for part in job.parts or (job,)]
        aborts = database.failure_aborts_transaction
        database.begin(conn, write=write)
        for job in jobs:
            guarded = careful and (job.write or aborts)
            if guarded:
                database.execute(conn, "SAVEPOINT job")
            try:
                result = job.fn(conn)
            except Exception as exc:
                if (job.write or aborts) and not careful:
                    raise _WriteFailed from exc
                if guarded:
                    database.execute(conn, "ROLLBACK TO SAVEPOINT job")
                    database.execute(conn, "RELEASE SAVEPOINT job")
                    log.exception("store_write_failed" if job.write else "store_read_failed")
                if job.future is not None:
                    answers.append((job.future, None, exc))
                continue
            if guarded:
                database.execute(conn, "RELEASE SAVEPOINT job")
            if job.future is not None:
                answers.append((job.future, result, None))
        database.execute(conn, "COMMIT")
        return answers
