# The simulated ADC and sensors: the simulator process writes what the analogue front end would
# see into the firmware's stdin, paced in real time, as blocks [u8 channel][u16 length][bytes].
# The HALs read from here exactly where a board's HAL would read its ADC DMA buffer or GPIO.
import asyncio
import struct
import sys

from micropython import const

CH_DOPPLER = const(0)  # int16 samples
CH_PPG = const(1)  # int16 samples
CH_BATTERY = const(2)  # u16 millivolts
CH_CONTACT = const(3)  # u8 0/1: probe on skin / contact switch
CH_PRESS = const(4)  # JSON: one jaundice press (the light on the photodiodes: TcbDeviceModel.scene)
CH_BUTTON = const(5)  # u8: the device's button was pressed: 1 briefly (a fetal movement mark),
# 2 held 2 s or more (the pairing gesture): presses.PRESS_SHORT and PRESS_LONG
CH_QUIT = const(255)


class Feed:
    def __init__(self, handlers):
        self.handlers = handlers  # channel -> callable(bytes)
        self.eof = asyncio.Event()

    async def run(self):
        r = asyncio.StreamReader(sys.stdin.buffer)
        try:
            while True:
                head = await r.readexactly(3)
                ch, n = struct.unpack("<BH", head)
                body = await r.readexactly(n) if n else b""
                if ch == CH_QUIT:
                    break
                h = self.handlers.get(ch)
                if h:
                    h(body)
        except (EOFError, OSError):
            pass
        self.eof.set()
