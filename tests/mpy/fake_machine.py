# A stand-in for the ESP32 port's `machine` module under the Unix port, so the board HALs
# (firmware/*/hal_esp32.py) import and run in a test: the constructors and methods the HALs
# call, with the ESP32 port's signatures. Installed as sys.modules["machine"] by the scripts.
# Nothing here allocates in a read path, so gc.mem_alloc measures the HAL, not the stand-in.
import io

from micropython import const

PWRON_RESET = const(1)
HARD_RESET = const(2)
WDT_RESET = const(3)
DEEPSLEEP_RESET = const(4)
SOFT_RESET = const(5)

state = {"freq": 160_000_000, "reset_cause": PWRON_RESET, "resets": 0, "fed": 0}
pins = []  # every Pin made, in order: (id, mode)


def freq(hz=None):
    if hz is None:
        return state["freq"]
    state["freq"] = hz


def reset_cause():
    return state["reset_cause"]


def reset():
    state["resets"] += 1
    raise SystemExit("machine.reset")


def disable_irq():
    return 0


def enable_irq(_state):
    pass


class Pin:
    IN = const(1)
    OUT = const(3)
    PULL_UP = const(1)
    IRQ_RISING = const(1)  # the ESP32 port's values
    IRQ_FALLING = const(2)

    def __init__(self, pin_id, mode=None, pull=None, value=None):
        self.id = pin_id
        self._v = value or 0
        pins.append((pin_id, mode))

    def value(self, v=None):
        if v is None:
            return self._v
        self._v = v

    def irq(self, handler=None, trigger=None):
        self.handler = handler
        self.trigger = trigger


class ADC:
    ATTN_11DB = const(3)

    def __init__(self, pin, atten=None):
        self.pin = pin

    def read_u16(self):
        return 32768

    def read_uv(self):
        return 2_000_000


class Timer:
    PERIODIC = const(1)
    ONE_SHOT = const(0)

    def __init__(self, timer_id):
        self.callback = None

    def init(self, freq=None, period=None, mode=None, callback=None):
        self.callback = callback

    def deinit(self):
        self.callback = None


class PWM:
    def __init__(self, pin, freq=1000, duty_u16=0):
        self.pin = pin
        self._freq = freq
        self._duty = duty_u16

    def freq(self, f=None):
        if f is None:
            return self._freq
        self._freq = f

    def duty_u16(self, d=None):
        if d is None:
            return self._duty
        self._duty = d


class DAC:
    def __init__(self, pin):
        self.pin = pin

    def write(self, v):
        self.v = v


class I2C:
    def __init__(self, bus_id, sda=None, scl=None, freq=400_000):
        self.mem = {}

    def writeto_mem(self, addr, reg, data):
        self.mem[(addr, reg)] = bytes(data)

    def readfrom_mem(self, addr, reg, n):
        return bytes(n)


class WDT:
    def __init__(self, id=0, timeout=5000):
        state["wdt_timeout"] = timeout

    def feed(self):
        state["fed"] += 1


class RTC:
    _memory = bytearray()

    def memory(self, data=None):
        if data is None:
            return bytes(RTC._memory)
        RTC._memory[:] = data


class I2S(io.IOBase):
    """RX: a ramp of samples; `available` (once) says how much the DMA holds for the next read
    (None: always enough); TX: takes what it is given."""

    RX = const(0)
    TX = const(1)
    MONO = const(0)
    STEREO = const(1)

    def __init__(self, i2s_id, sck=None, ws=None, sd=None, mode=0, bits=16, format=0, rate=0,
                 ibuf=0):  # fmt: skip
        self.mode = mode
        self.ibuf = ibuf
        self.rate = rate
        self.available = None  # samples the DMA holds now (RX), None: always enough
        self.next = 0

    def ioctl(self, req, arg):
        if req == 3:  # MP_STREAM_POLL: always ready
            return arg
        return 0

    def readinto(self, buf):
        n = len(buf)  # items of the array the view is of (int16 samples)
        if self.available is not None:  # what the DMA holds now; the rest comes by the next
            n = min(n, self.available)
            self.available = None
        v = self.next
        for i in range(n):
            buf[i] = v
            v += 1
            if v == 32768:
                v = -32768
        self.next = v
        return 2 * n

    def write(self, buf):
        return len(buf)

    def irq(self, handler):
        self.handler = handler
