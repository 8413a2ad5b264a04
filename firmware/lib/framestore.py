# Ring buffer of sent frames, so a gap seen by the gateway can be filled after a reconnect.
# Frames are kept back to back in one preallocated bytearray (no allocation per frame, no
# fragmentation); when it is full the oldest frames are evicted. An index allocated with the
# store holds each frame's offset, stream and first sequence number, so finding a frame reads
# the index only and copies nothing but the frame found (docs/firmware.md, memory budget).
import array
import struct

from micropython import const

_LEN = const(2)  # u16 length prefix per stored frame
INDEX_BYTES = const(9)  # per slot: offset u32, seq u32, stream u8


def slots_for(nbytes, frame_bytes):
    """Index slots for a store of `nbytes` whose frames average `frame_bytes` (with their
    length prefix): enough that the bytes, not the index, decide how long frames are kept."""
    return max(16, nbytes // frame_bytes)


class FrameStore:
    def __init__(self, buf, max_frames):
        """`buf`: a size in bytes, or a bytearray the app allocated before the heap fragmented."""
        self.buf = bytearray(buf) if isinstance(buf, int) else buf
        self.cap = len(self.buf)
        self.head = 0  # write offset
        self.offs = array.array("I", bytes(4 * max_frames))  # offsets, oldest at self.first
        self.seqs = array.array("I", bytes(4 * max_frames))  # each frame's first seq
        self.streams = bytearray(max_frames)
        self.first = 0
        self.count = 0
        self.max_frames = max_frames
        self.evicted = 0  # frames evicted so far: also the position of the oldest held

    def _used_span(self):
        if not self.count:
            return 0
        return (self.head - self.offs[self.first]) % self.cap

    def _read(self, off, n):
        end = off + n
        mv = memoryview(self.buf)
        if end <= self.cap:
            return bytes(mv[off:end])
        return bytes(mv[off:]) + bytes(mv[: end - self.cap])

    def _write(self, off, data):
        n = len(data)
        end = off + n
        if end <= self.cap:
            self.buf[off:end] = data
        else:
            k = self.cap - off
            self.buf[off:] = data[:k]
            self.buf[: n - k] = data[k:]

    def _evict(self):
        self.first = (self.first + 1) % self.max_frames
        self.count -= 1
        self.evicted += 1

    def put(self, frame):
        need = _LEN + len(frame)
        if need >= self.cap:
            return
        while self.count and (
            self.count == self.max_frames or self.cap - self._used_span() <= need
        ):
            self._evict()
        if not self.count:
            self.head = 0
        slot = (self.first + self.count) % self.max_frames
        self.offs[slot] = self.head
        self.seqs[slot] = struct.unpack_from("<I", frame, 4)[0]
        self.streams[slot] = frame[1] & 0x1F
        b = self.buf
        h = self.head
        b[h] = len(frame) & 0xFF
        b[(h + 1) % self.cap] = len(frame) >> 8
        self._write((h + _LEN) % self.cap, frame)
        self.head = (h + need) % self.cap
        self.count += 1

    def frame(self, pos):
        """A copy of the frame at position `pos` (as `seek` gives it)."""
        off = self.offs[(self.first + pos - self.evicted) % self.max_frames]
        n = self.buf[off] | (self.buf[(off + 1) % self.cap] << 8)
        return self._read((off + _LEN) % self.cap, n)

    def seq_at(self, pos):
        """The first seq of the frame at position `pos`."""
        return self.seqs[(self.first + pos - self.evicted) % self.max_frames]

    def frames(self):
        """Yield stored frames, oldest first."""
        for i in range(self.count):
            yield self.frame(self.evicted + i)

    def seek(self, stream, seq_from, seq_to, start=0):
        """(position, oldest): the position of the oldest frame of `stream` whose first seq
        lies in [seq_from, seq_to), or -1; and the first seq still held for that stream (None
        if none), when the search began at the oldest frame. Positions only grow, so a resend
        goes on from where it found its last frame (`start`) instead of from the oldest."""
        oldest = None
        i = start - self.evicted
        if i < 0:
            i = 0
        mf = self.max_frames
        streams = self.streams
        seqs = self.seqs
        slot = (self.first + i) % mf
        n = self.count
        while i < n:
            if streams[slot] == stream:
                seq = seqs[slot]
                if oldest is None:
                    oldest = seq
                if seq_from <= seq < seq_to:
                    return self.evicted + i, oldest
            i += 1
            slot += 1
            if slot == mf:
                slot = 0
        return -1, oldest

    def find(self, stream, seq_from, seq_to):
        """The oldest stored frame of `stream` whose first seq lies in [seq_from, seq_to)
        (None if there is none), and the first seq still held for that stream."""
        pos, oldest = self.seek(stream, seq_from, seq_to)
        return (self.frame(pos) if pos >= 0 else None), oldest
