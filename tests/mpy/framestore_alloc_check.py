# Run under the MicroPython Unix port: a full resend store is searched without copying frames
# (gc.mem_alloc deltas, the collector off), and a resend of all of it goes on from where it
# found its last frame. argv: firmware/lib. Prints one JSON line.
import gc
import json
import sys
import time

sys.path.append(sys.argv[1])
import protocol as p
from framestore import FrameStore, slots_for

STORE = 96 * 1024
store = FrameStore(STORE, slots_for(STORE, 96))
doppler = bytes(230)
ppg = bytes(50)
seq = 0
pseq = 0
for i in range(2000):  # ADPCM Doppler with PPG, as a fetal monitor sends them
    store.put(p.encode_frame(p.F_ADPCM, 1, p.S_DOPPLER, 1, seq, i, doppler))
    seq += 454
    if i % 5 == 0:
        store.put(p.encode_frame(0, 1, p.S_PPG, 1, pseq, i, ppg))
        pseq += 25
out = {"held": store.count, "slots": store.max_frames, "evicted": store.evicted}
out["doppler_held"] = sum(1 for f in store.frames() if f[1] & 0x1F == p.S_DOPPLER)
newest = seq - 454


def alloc(fn):
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    r = fn()
    d = gc.mem_alloc() - a
    gc.enable()
    return d, r


out["seek_alloc"], (pos, _) = alloc(lambda: store.seek(p.S_DOPPLER, newest, newest + 1))
out["seek_found_newest"] = pos == store.evicted + store.count - 1
out["find_alloc"], (f, _) = alloc(lambda: store.find(p.S_DOPPLER, newest, newest + 1))
out["frame_len"] = len(f)
out["missing_alloc"], (pos, oldest) = alloc(lambda: store.seek(p.S_PPG, 0, 1))

# A resend of every Doppler frame held, as Link._resend_next does it: each search starts
# after the frame found last.
t0 = time.ticks_us()
pos = 0
nxt = 0
sent = 0
while True:
    pos, _ = store.seek(p.S_DOPPLER, nxt, 0xFFFFFFFF, pos)
    if pos < 0:
        break
    f = store.frame(pos)
    nxt = store.seq_at(pos) + 1
    pos += 1
    sent += 1
out["resent"] = sent
out["resend_us_per_frame"] = time.ticks_diff(time.ticks_us(), t0) // max(1, sent)
print(json.dumps(out))
