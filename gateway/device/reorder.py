"""Put one stream's frames back in sequence order, find gaps, and decide when a gap is lost.

Sequence numbers count samples (Doppler, PPG) or frames (records). Frames that arrive after a
gap are held until the gap is filled by a resend or its deadline passes; then the missing range
is released as an explicit `Lost` item, so time never silently shifts downstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def unwrap_u32(value: int, near: int) -> int:
    """The number whose low 32 bits are `value` that lies nearest `near` (within 2**31, as
    RFC 1982's serial-number arithmetic compares). A device's `seq` and `t_ms` are 32-bit
    counters that wrap (Doppler's seq after 12.4 days, t_ms after 49.7); the gateway numbers a
    boot's frames on from the last one it verified, so order, gaps and resends hold across."""
    return near + ((value - near + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


@dataclass(frozen=True)
class Item:
    seq: int
    count: int  # sequence numbers this item covers
    value: Any


@dataclass(frozen=True)
class Lost:
    seq: int
    count: int


@dataclass
class ReorderStats:
    in_order: int = 0
    duplicates: int = 0
    gaps_seen: int = 0
    gaps_filled: int = 0
    lost_seqs: int = 0


class Reorderer:
    def __init__(self, gap_timeout_s: float, max_held: int = 4096) -> None:
        self.gap_timeout_s = gap_timeout_s
        self.max_held = max_held
        self.next_seq: int | None = None
        self.held: dict[int, Item] = {}
        self.gap_since: float | None = None
        self.stats = ReorderStats()

    def add(self, seq: int, count: int, value: Any, now: float) -> list[Item | Lost]:
        """Accept one frame; returns what is now deliverable, in order."""
        if self.next_seq is None:
            self.next_seq = seq
        if seq < self.next_seq or seq in self.held:
            self.stats.duplicates += 1
            return []
        self.held[seq] = Item(seq, count, value)
        if seq > self.next_seq and self.gap_since is None:
            self.gap_since = now
            self.stats.gaps_seen += 1
        out = self._drain(now)
        if len(self.held) > self.max_held:
            out += self.give_up_gap(now=now)
        return out

    def _drain(self, now: float) -> list[Item | Lost]:
        out: list[Item | Lost] = []
        had_gap = self.gap_since is not None
        while self.next_seq in self.held:
            item = self.held.pop(self.next_seq)
            out.append(item)
            self.next_seq += item.count
            self.stats.in_order += 1
        if had_gap and out:
            self.stats.gaps_filled += 1
        if not self.held:
            self.gap_since = None
        elif out or self.gap_since is None:
            self.gap_since = now  # a gap remains (or a new one starts) from here
        return out

    def missing(self) -> list[tuple[int, int]]:
        """Ranges [from, to) not yet received below the highest held frame."""
        if self.next_seq is None or not self.held:
            return []
        ranges = []
        cursor = self.next_seq
        for seq in sorted(self.held):
            if seq > cursor:
                ranges.append((cursor, seq))
            cursor = max(cursor, seq + self.held[seq].count)
        return ranges

    def expired(self, now: float) -> bool:
        return self.gap_since is not None and now - self.gap_since >= self.gap_timeout_s

    def restart_gap_clock(self, now: float) -> None:
        """The source can answer again (a reconnect): a gap held now gets its whole timeout
        from here. Only time in which a resend could have come counts against a gap."""
        if self.gap_since is not None:
            self.gap_since = now

    def give_up_gap(self, upto: int | None = None, now: float = 0.0) -> list[Item | Lost]:
        """Declare the first gap (or everything below `upto`) lost and release what follows."""
        if self.next_seq is None or not self.held:
            return []
        first_held = min(self.held)
        end = first_held if upto is None else min(max(upto, self.next_seq), first_held)
        if end <= self.next_seq:
            return []
        lost = Lost(self.next_seq, end - self.next_seq)
        self.stats.lost_seqs += lost.count
        self.next_seq = end
        self.gap_since = None
        return [lost, *self._drain(now)]

    def skip_to(self, seq: int, now: float = 0.0) -> list[Item | Lost]:
        """The source no longer holds anything below `seq`: what is missing below it is lost
        (even with nothing held after it yet), and what follows is released."""
        if self.next_seq is None or seq <= self.next_seq:
            return []
        if self.held:
            return self.give_up_gap(upto=seq, now=now)
        lost = Lost(self.next_seq, seq - self.next_seq)
        self.stats.lost_seqs += lost.count
        self.next_seq = seq
        self.gap_since = None
        return [lost]

    def reset(self) -> None:
        self.next_seq = None
        self.held.clear()
        self.gap_since = None
