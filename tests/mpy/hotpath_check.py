# Run under the MicroPython Unix port: what the Doppler path allocates per block, measured with
# gc.mem_alloc deltas (the collector off), on the board HAL (hal_esp32 on fake_machine) and the
# simulation HAL; and the board HAL's overrun detection against a clock the script moves.
# argv: firmware dir, this directory. Prints one JSON line.
import array
import gc
import json
import sys

sys.path.append(sys.argv[1] + "/lib")
sys.path.append(sys.argv[1] + "/fetal_heart")
sys.path.append(sys.argv[2])
import asyncio
import time

import fake_machine

sys.modules["machine"] = fake_machine  # before the board HAL imports it
import hal_esp32  # noqa: E402
import hal_sim  # noqa: E402
import protocol as p  # noqa: E402
from feedback import Feedback  # noqa: E402
from framestore import FrameStore  # noqa: E402
from link import Link  # noqa: E402

out = {}
buf = array.array("h", bytes(2 * 480))


async def per_call(fn, reps=50):
    await fn()  # once first: views made, code warm
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    for _ in range(reps):
        await fn()
    d = gc.mem_alloc() - a
    gc.enable()
    return d // reps


def per_call_sync(fn, reps=50):
    fn()
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    for _ in range(reps):
        fn()
    d = gc.mem_alloc() - a
    gc.enable()
    return d // reps


async def board():
    i2s = hal_esp32._i2s
    out["i2s_ibuf"] = i2s.ibuf
    out["cpu_hz"] = fake_machine.freq()

    async def read48():
        await hal_esp32.doppler_read(buf, 48)

    async def read438():
        await hal_esp32.doppler_read(buf, 438)

    out["board_read_48"] = await per_call(read48)
    out["board_read_438"] = await per_call(read438)
    out["board_samples_ok"] = all(buf[i + 1] - buf[i] in (1, -65535) for i in range(437))

    # Overrun: reads keep up (the DMA runs dry each block), then the loop stalls 2 s.
    clock = [0]

    class Clock:
        def ticks_us(self):
            return clock[0]

        def ticks_diff(self, a, b):
            return a - b

    hal_esp32.time = Clock()
    hal_esp32._adc.caught_up(0, 0)
    hal_esp32._dma[0] = 0
    for _ in range(20):  # 110 ms of samples every 110 ms, the last bit arriving late
        clock[0] += 438 * 250
        i2s.available = 400
        await hal_esp32.doppler_read(buf, 438)  # partial: the rest comes in a second read
    out["lost_keeping_up"] = hal_esp32.doppler_lost()
    out["waiting_keeping_up"] = hal_esp32.doppler_waiting()
    clock[0] += 2_000_000  # a 2 s stall: 8000 samples made, 4096 held by the DMA
    i2s.available = None
    await hal_esp32.doppler_read(buf, 438)
    out["lost_after_stall"] = hal_esp32.doppler_lost()
    out["waiting_after_stall"] = hal_esp32.doppler_waiting()
    out["lost_reported_once"] = hal_esp32.doppler_lost()


def sim():
    ch = hal_sim.doppler
    block = bytes(2 * 438)

    def push_take():  # the simulated ADC's DMA, then the read
        ch.push(block)
        ch.take(buf, 438)

    out["sim_push_take_438"] = per_call_sync(push_take)
    ch.push(bytes(2 * 5000))  # more than the ring holds
    out["sim_lost"] = hal_sim.doppler_lost()


async def sim_clock():
    """The simulated ring's ADC clock: a read that had to wait leaves what came after its
    block; one after the process was held up 2 s counts what was made meanwhile."""
    ch = hal_sim.doppler
    ch.n = 0  # empty
    ch.push(bytes(2 * 500))
    await ch.read(buf, 438)  # enough at once: not caught up, the clock just started
    ch.n = 0
    waiter = asyncio.create_task(ch.read(buf, 438))
    await asyncio.sleep(0)
    ch.push(bytes(2 * 500))  # the read was waiting for it: caught up
    await waiter
    out["sim_waiting_caught_up"] = hal_sim.doppler_waiting()
    t0 = time.ticks_us()
    ch.clock.caught_up(time.ticks_add(t0, -2_000_000), 0)  # last empty 2 s ago
    ch.push(bytes(2 * 1000))  # what the pipe gave so far
    await ch.read(buf, 438)
    out["sim_waiting_after_hold"] = hal_sim.doppler_waiting()
    # how long ago "last empty" is by now: the clock counts on while this process runs
    out["sim_hold_us"] = 2_000_000 + time.ticks_diff(time.ticks_us(), t0)


def feedback():
    fb = Feedback(hal_sim, time.ticks_ms, time.ticks_diff, True, log=lambda *a: None)
    out["feedback_feed_438"] = per_call_sync(lambda: fb.feed(buf, 438))


class Radio:
    connected = True
    mtu = 247
    on_write = None


def frame_cost():
    """Encoding, signing, storing and queueing one Doppler frame (per frame, not per sample)."""
    link = Link(Radio(), FrameStore(22000, 230), p.DT_FETAL_HEART, 1, lambda *a: None)
    link.set_key(bytes(32))
    codec = [0, 0]
    seq = [0]

    def block():
        n = 2 * (link.payload_room() - p.ADPCM_HEADER_LEN)
        link.send(p.S_DOPPLER, seq[0], 0, p.adpcm_encode(buf, 0, n, codec), p.F_ADPCM)
        seq[0] += n
        link.txq.clear()

    out["frame_alloc"] = per_call_sync(block)
    out["frame_samples"] = 2 * (link.payload_room() - p.ADPCM_HEADER_LEN)


asyncio.run(board())
sim()
asyncio.run(sim_clock())
feedback()
frame_cost()
print(json.dumps(out))
