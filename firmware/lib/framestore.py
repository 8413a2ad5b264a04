# Ring buffer of sent frames, so a gap seen by the gateway can be filled after a reconnect.
# Frames are kept back to back in one preallocated bytearray (no allocation per frame, no
# fragmentation); when it is full the oldest frames are evicted. The header of each stored
# frame names its stream and sequence number, so the index holds only offsets and lengths.
import array
import struct

from micropython import const

_LEN = const(2)  # u16 length prefix per stored frame


class FrameStore:
    def __init__(self, buf, max_frames):
        """`buf`: a size in bytes, or a bytearray the app allocated before the heap fragmented."""
        self.buf = bytearray(buf) if isinstance(buf, int) else buf
        self.cap = len(self.buf)
        self.head = 0  # write offset
        self.offs = array.array("I", bytes(4 * max_frames))  # offsets, oldest at self.first
        self.first = 0
        self.count = 0
        self.max_frames = max_frames
        self.evicted = 0

    def _used_span(self):
        if not self.count:
            return 0
        return (self.head - self.offs[self.first]) % self.cap

    def _read(self, off, n):
        end = off + n
        if end <= self.cap:
            return bytes(self.buf[off:end])
        return bytes(self.buf[off:]) + bytes(self.buf[: end - self.cap])

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
        self._write(self.head, struct.pack("<H", len(frame)))
        self._write((self.head + _LEN) % self.cap, frame)
        self.head = (self.head + need) % self.cap
        self.count += 1

    def frames(self):
        """Yield stored frames, oldest first."""
        for i in range(self.count):
            off = self.offs[(self.first + i) % self.max_frames]
            n = struct.unpack("<H", self._read(off, _LEN))[0]
            yield self._read((off + _LEN) % self.cap, n)

    def find(self, stream, seq_from, seq_to):
        """The oldest stored frame of `stream` whose first seq lies in [seq_from, seq_to)
        (None if there is none), and the first seq still held for that stream."""
        oldest = None
        for f in self.frames():
            if f[1] & 0x1F != stream:
                continue
            seq = struct.unpack_from("<I", f, 4)[0]
            if oldest is None:
                oldest = seq
            if seq_from <= seq < seq_to:
                return f, oldest
        return None, oldest
