"""The last seconds of each fetal monitor's samples, kept outside the gateway process.

A fetal heart rate point is published seconds after its audio arrives: it waits for the
window after it and for the mother's pulse around it (docs/fhr.md, "How long before the
first rate"). A gateway killed or crashed in that time loses the audio it had received and
not yet turned into points, and its restart has to get it back from the device's resend
buffer, which on a device without PSRAM holds only a few seconds (docs/firmware.md, "Memory
budget"). The journal keeps what the session delivered in order, so a restart replays it
(`gateway/processing/resume.py`) and asks the device only for what came after.

It lives in the service's runtime directory (tmpfs: systemd's RuntimeDirectory, kept across
a restart by RuntimeDirectoryPreserve=restart), so it costs the SD card no writes and
survives the process, not a power cut: after a power cut the device's buffer is all there
is. Without a runtime directory it goes in the data directory. SQLite, because a row
committed there is safe from a SIGKILL the moment the call returns, and one file holds every
device with an index on what is looked up.

Beside the samples it keeps each boot's clock offset (device time to wall time, from the
session's last TIME_SYNC): a restart replays the samples at once, timed as they were, without
waiting for a new sync while the device's live frames open a gap behind them.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from gateway.protocol import NOMINAL_RATE_HZ

log = logging.getLogger(__name__)

KEEP_S = 30.0  # longer than any point waits for its evidence (at most ~7 s), with room
_TRIM_EVERY = 64  # appends per device and stream between trims

_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    device TEXT NOT NULL, boot INTEGER NOT NULL, stream INTEGER NOT NULL,
    seq INTEGER NOT NULL, t_ms INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (device, boot, stream, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS clocks (
    device TEXT PRIMARY KEY, boot INTEGER NOT NULL, offset_ms REAL NOT NULL
)
"""


@dataclass(frozen=True)
class JournalItem:
    seq: int
    t_ms: int
    samples: NDArray[np.int16]


def journal_dir(data_dir: Path) -> Path:
    """systemd's RuntimeDirectory when the service has one, else the data directory."""
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return Path(runtime) if runtime else data_dir


def open_journal(path: Path) -> SampleJournal | None:
    """The journal at `path`, or None (logged) where it cannot be kept: the gateway runs
    without it, and a restart then asks the device for everything (as before it existed)."""
    try:
        return SampleJournal(path)
    except (OSError, sqlite3.Error) as exc:
        log.warning("sample journal %s not kept: %s", path, exc)
        return None


class SampleJournal:
    """Samples per (device, boot, stream), in order, the last `keep_s` seconds of each."""

    def __init__(self, path: Path, keep_s: float = KEEP_S) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.keep_s = keep_s
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # A committed row must survive the process, not a power cut (it is on tmpfs): no fsync.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.executescript(_SCHEMA)
        self._appends: dict[tuple[str, int], int] = {}

    def append(
        self, device: str, boot: int, stream: int, seq: int, t_ms: int,
        samples: NDArray[np.int16],
    ) -> None:  # fmt: skip
        """Samples the session delivered in order. A failure is logged, never raised: the
        journal only shortens what a restart must ask the device for. One committed row per
        frame (about 55 us on tmpfs or disk, measured: 0.4 % of a core for 7 monitors), so a
        kill loses none of what was delivered; batching them would save little."""
        try:
            self._db.execute(
                "INSERT OR IGNORE INTO samples VALUES (?, ?, ?, ?, ?, ?)",
                (device, boot, stream, seq, t_ms, samples.astype("<i2").tobytes()),
            )
            key = (device, stream)
            self._appends[key] = n = self._appends.get(key, 0) + 1
            if n % _TRIM_EVERY == 0:
                oldest = seq - int(self.keep_s * NOMINAL_RATE_HZ[stream])
                self._db.execute(
                    "DELETE FROM samples WHERE device = ? AND stream = ? AND (boot != ? OR seq < ?)",
                    (device, stream, boot, oldest),
                )
        except sqlite3.Error as exc:
            log.warning("%s: sample journal: %s", device, exc)

    def set_clock(self, device: str, boot: int, offset_ms: float) -> None:
        """The device's boot is synced: unix_ms = device_ms + offset_ms (one row per device, the
        latest boot's). Logged, never raised, like `append`."""
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO clocks VALUES (?, ?, ?)", (device, boot, offset_ms)
            )
        except sqlite3.Error as exc:
            log.warning("%s: sample journal: %s", device, exc)

    def clock(self, device: str, boot: int) -> float | None:
        """The boot's clock offset as last synced, or None (never synced, another boot)."""
        try:
            row = self._db.execute(
                "SELECT offset_ms FROM clocks WHERE device = ? AND boot = ?", (device, boot)
            ).fetchone()
        except sqlite3.Error as exc:
            log.warning("%s: sample journal: %s", device, exc)
            return None
        return None if row is None else float(row[0])

    def since(self, device: str, boot: int, stream: int, first: int) -> Iterator[JournalItem]:
        """The journal's samples of a boot's stream from sample `first` on, as long as they
        follow one another without a gap (what comes after a gap the device must resend)."""
        try:
            rows = self._db.execute(
                "SELECT seq, t_ms, data FROM samples WHERE device = ? AND boot = ? AND stream = ?"
                " AND seq >= (SELECT COALESCE(MAX(seq), 0) FROM samples WHERE device = ?"
                " AND boot = ? AND stream = ? AND seq <= ?) ORDER BY seq",
                (device, boot, stream, device, boot, stream, first),
            ).fetchall()
        except sqlite3.Error as exc:
            log.warning("%s: sample journal: %s", device, exc)
            return
        expected: int | None = None
        for seq, t_ms, data in rows:
            samples = np.frombuffer(data, dtype="<i2").astype(np.int16)
            if expected is not None and seq != expected:
                return
            if seq + len(samples) <= first:
                continue
            if expected is None and seq > first:
                return  # the journal starts after `first`: the device resends it all
            expected = seq + len(samples)
            yield JournalItem(seq, t_ms, samples)

    def close(self) -> None:
        self._db.close()
