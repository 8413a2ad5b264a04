# Run under the MicroPython Unix port: the fetal monitor's Doppler task (firmware/fetal_heart/
# main.py on its simulation HAL) when the ADC's ring overflows. The samples lost are skipped in
# the sequence numbers (the timeline keeps its place) and an EV_GAP event says so.
# argv: firmware dir. Prints one JSON line.
import json
import sys

sys.path.append(sys.argv[1] + "/lib")
sys.path.append(sys.argv[1] + "/fetal_heart")
import asyncio

import main as app
import protocol as p


class Link:
    def __init__(self):
        self.sent = []  # (stream, seq, samples or event)

    def payload_room(self):
        return p.max_payload(247, True)

    def now_ms(self):
        return 0

    def send(self, stream, seq, t_ms, payload, flags=0):
        self.sent.append((stream, seq, 2 * (len(payload) - p.ADPCM_HEADER_LEN)))

    def send_record(self, stream, t_ms, payload):
        self.sent.append((stream, None, payload[0]))


async def run():
    link = Link()
    state = app.State({})
    task = asyncio.create_task(app.doppler_task(link, state))
    ch = app.hal.doppler
    block = bytes(2 * 438)
    for _ in range(3):  # three blocks, read as they come
        ch.push(block)
        await asyncio.sleep_ms(5)
    for _ in range(12):  # the loop was away: 12 blocks come, the ring holds 4096 samples
        ch.push(block)
    await asyncio.sleep_ms(20)
    task.cancel()
    return link.sent


sent = asyncio.run(run())
print(json.dumps({"sent": sent, "ev_gap": p.EV_GAP, "event": p.S_EVENT}))
