# What the fetal monitor shows the mother while she searches for the baby's heartbeat: an LED
# colour and a short tone that follow the signal quality, the Doppler sound on the speaker,
# battery low and "session complete". The quality comes from the gateway (FEEDBACK, computed
# from its FHR estimate) while the link is up; when none has arrived for _STALE_MS it is
# estimated here from the periodicity of the Doppler envelope.
#
# Cost (measured under the Unix port, docs/protocol.md "Feedback"): one Feedback object with its
# envelope ring is about 1 KiB of heap; the decimation touches every 4th sample (1000 samples/s)
# and the periodicity check (18 lags x 128 points, small integers only) runs once a second.
import array

import protocol as p
from micropython import const

_DECIM = const(80)  # Doppler samples per envelope point: 4 kHz -> 50 Hz
_STRIDE = const(4)  # the envelope sums every 4th sample's magnitude
_N = const(128)  # envelope points analysed: 2.56 s
_LAG_MIN = const(14)  # 214 bpm at 50 Hz
_LAG_MAX = const(31)  # 97 bpm: the fetal range, below the mother's usual rate
# Thresholds on the smoothed periodicity (per cent). On the simulator's Doppler (beat-to-beat
# variation in timing and strength) noise alone gives 7-17, a fetal heart at 0-15 dB SNR 25-40.
_GOOD = const(30)  # "good"
_WEAK = const(20)  # "weak"
_STALE_MS = const(5000)  # no FEEDBACK for this long: the link is down, estimate locally
_LOCAL_EVERY_MS = const(1000)
_TONE_EVERY_MS = const(3000)  # the guiding tone repeats while searching or weak
_BATTERY_EVERY_MS = const(30000)  # a red flash and a low tone while the battery is low
_BATTERY_FLASH_MS = const(1000)

# Level -> (LED colour, blinking, tone Hz). The tone rises as the signal gets better.
_LOOK = (("blue", True, 440), ("yellow", True, 660), ("green", False, 880))
_LEVEL_NAMES = ("searching", "weak", "good")
# The gateway's "only the mother's pulse" flag: magenta, blinking, a low tone then 440 Hz.
_MOVE_PROBE = ("magenta", True, 440)


def periodicity(env, n, d=None):
    """Largest normalised autocorrelation (per cent) of env[:n] over the fetal lags.

    Integer arithmetic on values scaled to 0..255, so no intermediate becomes a big int even
    with the ESP32's 31-bit small ints. `d` is scratch space for n int16 values."""
    top = 0
    total = 0
    for i in range(n):
        v = env[i]
        total += v
        if v > top:
            top = v
    if n < _LAG_MAX + 16 or top == 0:
        return 0
    shift = 0
    while (top >> shift) > 255:
        shift += 1
    mean = (total // n) >> shift
    if d is None:
        d = array.array("h", bytes(2 * n))
    energy = 0
    for i in range(n):
        x = (env[i] >> shift) - mean
        d[i] = x
        energy += x * x
    if energy == 0:
        return 0
    best = 0
    for lag in range(_LAG_MIN, _LAG_MAX + 1):
        acc = 0
        for i in range(n - lag):
            acc += d[i] * d[i + lag]
        if acc > best:
            best = acc
    # normalised by the overlap so short and long lags compare fairly
    return best * 100 * n // (energy * (n - _LAG_MIN))


def level_of(percent):
    if percent >= _GOOD:
        return p.FB_GOOD
    if percent >= _WEAK:
        return p.FB_WEAK
    return p.FB_SEARCHING


class Feedback:
    def __init__(self, hal, ticks_ms, ticks_diff, speaker=True, log=print):
        self.hal = hal
        self._ticks = ticks_ms
        self._diff = ticks_diff
        self.log = log
        self.env = array.array("i", bytes(4 * _N))  # ring of envelope points
        self._flat = array.array("i", bytes(4 * _N))  # scratch: the ring unrolled
        self._d = array.array("h", bytes(2 * _N))  # scratch: scaled, mean removed
        self.n_env = 0  # points written so far (the ring holds the last _N)
        self._acc = 0
        self._k = 0  # strided samples in the point being summed
        self._phase = 0  # offset of the next strided sample in the next block
        self.level = p.FB_SEARCHING
        self.flags = 0
        self.source = None  # "gateway" or "local"
        self.remote_at = None
        self.local_at = None
        self.local_percent = 0
        self.speaker_setting = speaker
        self.battery_low = False
        self.pairing = False  # the pairing window owns the LED while open
        self._shown = None
        self._tone_at = None
        self._battery_at = None
        self._speaker = None

    # ---- inputs ----

    def feed(self, buf, n):
        """A block of Doppler samples: decimated to the envelope (every 4th |sample|)."""
        acc = self._acc
        k = self._k
        i = self._phase
        env = self.env
        while i < n:
            v = buf[i]
            acc += v if v >= 0 else -v
            k += 1
            if k == _DECIM // _STRIDE:
                env[self.n_env % _N] = acc
                self.n_env += 1
                acc = 0
                k = 0
            i += _STRIDE
        self._phase = i - n
        self._acc = acc
        self._k = k

    def on_remote(self, level, flags):
        """FEEDBACK from the gateway."""
        self.remote_at = self._ticks()
        self.level = min(level, p.FB_GOOD)
        self.flags = flags
        self._source("gateway")

    @property
    def speaker_on(self):
        return self.speaker_setting and not self.flags & p.FBF_MUTE

    # ---- the task's step ----

    def _source(self, s):
        if s != self.source:
            self.source = s
            self.log("IND source " + s)

    def local_estimate(self):
        n = min(self.n_env, _N)
        if n < _N:
            return 0
        # unroll the ring so the oldest point comes first
        start = self.n_env % _N
        flat = self._flat
        for i in range(_N):
            flat[i] = self.env[(start + i) % _N]
        return periodicity(flat, _N, self._d)

    def step(self, on_skin=True):
        """Called every 250 ms: choose the level, drive LED, tone and speaker."""
        now = self._ticks()
        if self.remote_at is None or self._diff(now, self.remote_at) > _STALE_MS:
            if self.local_at is None or self._diff(now, self.local_at) >= _LOCAL_EVERY_MS:
                self.local_at = now
                # smoothed over about three estimates: one lucky window is not "good"
                self.local_percent = (2 * self.local_percent + self.local_estimate()) // 3
                self.level = level_of(self.local_percent)
                self._source("local")
        if not on_skin:
            self.flags &= ~p.FBF_COMPLETE  # the probe came off: the next session may begin
        if self.speaker_on != self._speaker:
            self._speaker = self.speaker_on
            if not self._speaker:
                self.hal.speaker(None, 0)
        if self.pairing:
            self._shown = None
            return
        if self.flags & p.FBF_COMPLETE:
            self._show(("white", False, 0), now, ("complete",))
            return
        if self.flags & p.FBF_MATERNAL and self.source == "gateway":
            # only the mother's pulse is heard: the two-note "move the probe" call
            self._show(_MOVE_PROBE, now, None)
            if self._tone_at == now:
                self.hal.tone(330, 120)
            return
        if self.battery_low and (
            self._battery_at is None or self._diff(now, self._battery_at) >= _BATTERY_EVERY_MS
        ):
            self._battery_at = now
            self._shown = ("red", True, 0)
            self.hal.led("red", True)
            self.hal.tone(330, 200)
            return
        if self._battery_at is not None and self._diff(now, self._battery_at) < _BATTERY_FLASH_MS:
            return
        look = _LOOK[self.level]
        self._show(look, now, None)

    def _show(self, look, now, chime):
        colour, blink, freq = look
        changed = self._shown != look
        if changed:
            self._shown = look
            self.hal.led(colour, blink)
        if chime and changed:
            self.hal.tone(1320, 400)  # one long high note, once
            return
        if freq and (
            changed
            or (
                blink
                and (self._tone_at is None or self._diff(now, self._tone_at) >= _TONE_EVERY_MS)
            )
        ):
            self._tone_at = now
            self.hal.tone(freq, 80)


def name_of(level):
    return _LEVEL_NAMES[level]
