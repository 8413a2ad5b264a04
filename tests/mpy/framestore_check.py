import sys

sys.path.append(sys.argv[1])
import protocol as p
from framestore import FrameStore

s = FrameStore(600, 16)
frames = [p.encode_frame(0, 1, p.S_DOPPLER, 1, i * 100, i, bytes(40 + i)) for i in range(20)]
for f in frames:
    s.put(f)
held = list(s.frames())
# capacity 600 bytes: only the newest frames survive, oldest evicted first, bytes intact
assert held == frames[-len(held) :], "store corrupted frames"
found, oldest = s.find(p.S_DOPPLER, 1500, 1800)
assert found == frames[15]
assert oldest == int.from_bytes(held[0][4:8], "little")
found, _ = s.find(p.S_PPG, 0, 10**9)
assert found is None
print(len(held), s.evicted, oldest)
