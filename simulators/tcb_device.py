"""The jaundice meter's optics and analogue front end: reflectance in, raw counts out.

What a press produces, exactly as the firmware's measurement cycle (firmware/jaundice/main.py)
drives the hardware: a dark frame (all LEDs off) on both photodiodes, then for each LED a short
probe flash that gauges how much light comes back and sets that LED's drive current (exposure
control, below), five flashes at that drive on both photodiodes, and a second dark frame; plus
the probe temperature and the skin-contact switch. Counts are 16-bit (0..65535).

Exposure control. The LED current is chosen per LED so that the brighter detector (nearly
always the near one) lands at EXPOSURE_TARGET_COUNTS above dark: skin that returns little light
(dark skin, blue LEDs, high bilirubin) is lit harder, up to DRIVE_MAX_CODE, so the far detector's
few counts rise above the read noise; bright skin is lit less so the near detector never clips.
The probe flash runs at a quarter of the factory drive (the phantom reads 35-55 % of full scale
at factory drive, so the probe cannot clip on skin). The chosen drive is sent with the counts
and the gateway scales the factory white reference by drive / factory drive: LED output is
taken as proportional to the forward current (see LIMITS in docs/jaundice.md).

Noise model (the linear photon-transfer model of EMVA Standard 1288, Release 4.0, 2021, applied
to a photodiode + transimpedance amplifier + ADC; one conversion, in counts):

    variance = K * (signal + ambient light) + read_noise^2,   then quantised in steps of 2

* Shot noise: photocurrent I in a bandwidth B has variance 2 q I B (Schottky; Hamamatsu,
  "Si photodiodes" technical information, noise section). Through a feedback resistor R_f and an
  ADC of V per count this is K = 2 q B R_f / V per count of signal. With R_f = 1 MOhm (near) and
  4.7 MOhm (far), B = 1 kHz and V = 62.5 uV per count (ADS1115 on its +-4.096 V range, 125 uV
  per code, TI datasheet SBAS444; single-ended codes are 15-bit and the HAL doubles them), K is
  ~5e-6 and ~2.4e-5 counts: shot noise is small beside the read noise at these photocurrents.
* Read noise: the ADC's input noise at 860 samples/s is taken as one code rms = 2 counts (the
  order of the SBAS444 noise tables at the fastest rate, where the delta-sigma converter is
  close to its LSB; the exact figure for this range is still to check against the table); the
  TIA's Johnson noise sqrt(4 k T B R_f) is 4-9 uV (about 0.1 count) and is included.
* Quantisation: the ADC step of 2 counts adds step^2/12 (Widrow & Kollar, Quantization Noise,
  Cambridge 2008), modelled by rounding.

Dark frames average DARK_CONVERSIONS conversions per detector spread over about two mains
flicker periods, so a dark frame is both quieter than one conversion and blind to flicker's
phase. Ambient light leaking under the probe raises every frame; mains-powered lamps flicker at
twice the mains frequency (100 or 120 Hz) with a modulation depth of tens of percent for
magnetic-ballast fluorescent lamps (IEEE Std 1789-2015, "percent flicker" of common sources).
Each conversion samples the flicker at its own time (CONVERSION_S apart), so the five flashes of
one LED, spread over more than one flicker period, disagree when the probe lets room light in.

Also modelled: detector dark offset, LED output falling with temperature (tempco, corrected at
the gateway from the factory constant), LED centre wavelength drift and emission width per unit
(hidden: the white reference is spectrally flat so it cannot see them; pass
`led_centre_nm`/`led_fwhm_nm` to simulators.skin.skin_reflectance to get what this unit really
measures).

LED drive settings are codes of the constant-current driver, 1 code = 0.1 mA, in steps of
DRIVE_STEP_CODE (an 8-bit DAC over 0-102 mA).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

LED_NM = (450, 470, 505, 550, 590, 650)
DETECTORS = ("near", "far")
N_FLASHES = 5
ADC_MAX = 65535
ADC_STEP_COUNTS = 2  # 15-bit single-ended ADS1115 code, doubled by the HAL
REFERENCE_TEMPERATURE_C = 25.0
NOMINAL_FWHM_NM = (20.0, 25.0, 30.0, 28.0, 18.0, 18.0)

# Front end (sources in the module docstring)
_Q_C = 1.602176634e-19
_K_B = 1.380649e-23
TIA_BANDWIDTH_HZ = 1000.0
TIA_FEEDBACK_OHM = (1.0e6, 4.7e6)  # near, far
VOLTS_PER_COUNT = 125e-6 / ADC_STEP_COUNTS
ADC_NOISE_COUNTS = 2.0  # about one ADS1115 code rms at 860 SPS, +-4.096 V range
SHOT_VARIANCE_PER_COUNT = tuple(
    2.0 * _Q_C * TIA_BANDWIDTH_HZ * r / VOLTS_PER_COUNT for r in TIA_FEEDBACK_OHM
)
READ_NOISE_COUNTS = tuple(
    math.hypot(
        ADC_NOISE_COUNTS, math.sqrt(4 * _K_B * 300.0 * TIA_BANDWIDTH_HZ * r) / VOLTS_PER_COUNT
    )
    for r in TIA_FEEDBACK_OHM
)

# Timing of the measurement cycle (ADS1115 at 860 samples/s, LED and amplifier settling)
CONVERSION_S = 1.0 / 860.0 + 0.2e-3  # conversion + I2C transfer
SETTLE_S = 0.4e-3
DARK_CONVERSIONS = 8  # per detector and dark frame: ~20 ms, two 100 Hz flicker periods

# Exposure control (firmware/jaundice/main.py uses the same numbers)
DRIVE_STEP_CODE = 4  # 0.4 mA: 8-bit DAC over 0-102 mA
DRIVE_MAX_CODE = 1020  # 102 mA for ~20 ms per LED: mid-power LEDs (docs/jaundice.md)
PROBE_DIVISOR = 4  # the probe flash runs at factory drive / 4
EXPOSURE_TARGET_COUNTS = 40000  # the brighter detector's light at the chosen drive (61 % FS)

AMBIENT_FULL_SCALE_COUNTS = 20000.0  # ambient=1.0 adds this to every frame on the near PD
AMBIENT_FAR_FRACTION = 0.35
FLICKER_DEPTH = 0.3  # magnetic-ballast fluorescent light (IEEE Std 1789-2015)
MAINS_HZ = 50.0


def quantise_drive(code: float) -> int:
    """The drive the LED driver can really set: a multiple of the DAC step, within range."""
    step = DRIVE_STEP_CODE
    return int(max(step, min(DRIVE_MAX_CODE, int(code) // step * step)))


def exposure_drive(probe_drive: int, probe_counts: tuple[int, int], dark: tuple[int, int]) -> int:
    """Drive for one LED from its probe flash (the firmware's rule, integer arithmetic)."""
    signal = max(probe_counts[0] - dark[0], probe_counts[1] - dark[1], 1)
    return quantise_drive(probe_drive * EXPOSURE_TARGET_COUNTS // signal)


def probe_drive(factory_drive: int) -> int:
    return quantise_drive(factory_drive // PROBE_DIVISOR)


@dataclass(frozen=True)
class FactoryCalibration:
    """Constants stored at provisioning and reported in the device info.

    dark_offset: ADC counts with all LEDs off, per detector (near, far).
    white_ref: counts per LED (6) and detector (near, far) on the reference phantom at the
      nominal drive and 25 C, dark already subtracted.
    led_drive: the 6 LED drive settings (codes, 1 code = 0.1 mA) at which white_ref was
      measured. A press reports the drive it really used; the gateway scales white_ref by it.
    tempco_per_c: relative LED output change per degree C (negative: LEDs dim when warm).
    """

    dark_offset: tuple[int, int]
    white_ref: tuple[tuple[int, int], ...]
    led_drive: tuple[int, ...]
    tempco_per_c: float

    def to_dict(self) -> dict:
        d = asdict(self)
        d["dark_offset"] = list(self.dark_offset)
        d["white_ref"] = [list(p) for p in self.white_ref]
        d["led_drive"] = list(self.led_drive)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FactoryCalibration:
        try:
            dark = tuple(int(x) for x in d["dark_offset"])
            white = tuple(tuple(int(x) for x in pair) for pair in d["white_ref"])
            drive = tuple(int(x) for x in d["led_drive"])
            tempco = float(d["tempco_per_c"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"bad factory calibration: {exc}") from exc
        if len(dark) != 2 or len(white) != 6 or any(len(p) != 2 for p in white):
            raise ValueError("factory calibration needs 2 dark offsets and 6x2 white references")
        if len(drive) != 6:
            raise ValueError("factory calibration needs 6 LED drive settings")
        if any(w <= 0 for p in white for w in p):
            raise ValueError("white reference counts must be positive")
        return cls(dark, white, drive, tempco)  # type: ignore[arg-type]


@dataclass(frozen=True)
class _HiddenOptics:
    """What the factory cannot see: the unit's true LED spectra and exact gains."""

    led_centre_nm: tuple[float, ...]
    led_fwhm_nm: tuple[float, ...]
    gain: np.ndarray  # 6 x 2 counts for reflectance 1.0 at 25 C, dark-subtracted
    tempco_true_per_c: float


def _hidden_optics(seed: int) -> _HiddenOptics:
    rng = np.random.default_rng([seed, 1])
    centre = tuple(float(c + rng.normal(0.0, 2.0)) for c in LED_NM)
    fwhm = tuple(float(np.clip(w + rng.normal(0.0, 2.0), 16.0, 30.0)) for w in NOMINAL_FWHM_NM)
    # Far detector sees ~1/8 of the near light from the phantom; drive is set so the
    # phantom reads 35-55 % of full scale on the near detector.
    near = rng.uniform(24000, 36000, size=6)
    far = near * rng.uniform(0.10, 0.16, size=6)
    gain = np.column_stack([near, far])
    tempco = float(rng.uniform(-0.006, -0.002))
    return _HiddenOptics(centre, fwhm, gain, tempco)


def random_factory_calibration(seed: int) -> FactoryCalibration:
    """Provision one manufactured unit: measure its dark and the white phantom at 25 C."""
    rng = np.random.default_rng([seed, 2])
    hidden = _hidden_optics(seed)
    dark = (int(rng.integers(180, 420)), int(rng.integers(180, 420)))
    # the factory averages many flashes: the stored white reference is within ~0.1 % of truth
    measured = hidden.gain * (1.0 + rng.normal(0.0, 0.001, size=hidden.gain.shape))
    white = tuple((int(round(n)), int(round(f))) for n, f in measured)
    # drive codes the DAC can set (multiples of DRIVE_STEP_CODE), 15-40 mA
    drive = tuple(DRIVE_STEP_CODE * int(rng.integers(38, 100)) for _ in LED_NM)
    # the tempco is characterised per LED batch: close to, not exactly, the unit's own
    tempco = round(hidden.tempco_true_per_c + float(rng.normal(0.0, 0.0002)), 5)
    return FactoryCalibration(dark, white, drive, tempco)


@dataclass
class PressCounts:
    """One measurement exactly as the firmware reads it from the ADC."""

    dark_before: tuple[int, int]
    dark_after: tuple[int, int]
    flashes: list[list[list[int]]]  # [led][detector][flash], 6 x 2 x 5, 0..65535
    temperature_c: float
    contact: bool
    led_drive: tuple[int, ...] = field(default_factory=tuple)  # the drive each LED really used

    def to_dict(self) -> dict:
        return asdict(self)


class TcbDeviceModel:
    """One unit of the jaundice meter. Seed the calibration and the device alike for a
    consistent unit: `TcbDeviceModel(random_factory_calibration(7), seed=7)`.

    `scene()` describes the light on the photodiodes for one press (what simulators/fleet.py
    sends to the firmware under the Unix port, whose hal_sim.py evaluates the same noise
    model); `press()` runs the firmware's measurement cycle on it here, in numpy.
    """

    def __init__(self, calibration: FactoryCalibration, seed: int = 0) -> None:
        self.calibration = calibration
        self._hidden = _hidden_optics(seed)
        self._rng = np.random.default_rng([seed, 3])
        self._dark = np.asarray(calibration.dark_offset, float)
        # A calibration made for another seed describes another unit: then the device takes
        # its gains and tempco from that calibration, so calibration and optics agree.
        white = np.asarray(calibration.white_ref, float)
        if np.allclose(white, self._hidden.gain, rtol=0.01):
            self._gain, self._tempco = self._hidden.gain, self._hidden.tempco_true_per_c
        else:
            self._gain, self._tempco = white, calibration.tempco_per_c

    @property
    def led_centre_nm(self) -> tuple[float, ...]:
        return self._hidden.led_centre_nm

    @property
    def led_fwhm_nm(self) -> tuple[float, ...]:
        return self._hidden.led_fwhm_nm

    def scene(
        self,
        reflectance_near: np.ndarray,
        reflectance_far: np.ndarray,
        *,
        contact: bool = True,
        ambient: float = 0.0,
        temperature_c: float = 30.0,
        flicker_depth: float = FLICKER_DEPTH,
        mains_hz: float = MAINS_HZ,
    ) -> dict:
        """The light reaching the photodiodes during one press, as plain numbers.

        ambient: ambient light level under the probe (0 none, 1 = bright room light leaking
        fully); without contact the probe sees the room, not the skin. Keys: dark (offset per
        detector), per_code (counts per drive code, per LED and detector), ambient (counts per
        detector), flicker_depth, flicker_hz, shot (variance per count), read_noise (counts),
        step (ADC step), temperature_c, phase (flicker phase at the start, radians).
        """
        r = np.column_stack(
            [np.asarray(reflectance_near, float), np.asarray(reflectance_far, float)]
        )
        if r.shape != (6, 2):
            raise ValueError("reflectance_near and reflectance_far need 6 values each")
        r = np.nan_to_num(np.clip(r, 0.0, None))
        if not contact:
            r = np.full((6, 2), 0.02)
            ambient = max(ambient, 0.5)
        level = max(ambient, 0.0) * AMBIENT_FULL_SCALE_COUNTS
        temp_factor = 1.0 + self._tempco * (temperature_c - REFERENCE_TEMPERATURE_C)
        drive0 = np.asarray(self.calibration.led_drive, float)[:, None]
        per_code = self._gain * r * temp_factor / drive0
        return {
            "dark": [float(x) for x in self._dark],
            "per_code": per_code.tolist(),
            "ambient": [level, level * AMBIENT_FAR_FRACTION],
            "flicker_depth": float(flicker_depth),
            "flicker_hz": 2.0 * float(mains_hz),
            "shot": list(SHOT_VARIANCE_PER_COUNT),
            "read_noise": list(READ_NOISE_COUNTS),
            "step": ADC_STEP_COUNTS,
            "temperature_c": float(temperature_c + self._rng.normal(0.0, 0.1)),
            "phase": float(self._rng.uniform(0.0, 2.0 * np.pi)),
        }

    def press(
        self,
        reflectance_near: np.ndarray,
        reflectance_far: np.ndarray,
        *,
        contact: bool = True,
        ambient: float = 0.0,
        temperature_c: float = 30.0,
        flicker_depth: float = FLICKER_DEPTH,
        mains_hz: float = MAINS_HZ,
        exposure_control: bool = True,
    ) -> PressCounts:
        """Counts for one press on skin of the given reflectance (6 values per detector),
        through the firmware's measurement cycle (exposure_control=False: every LED at its
        factory drive, the cycle before exposure control, for comparison)."""
        sc = self.scene(reflectance_near, reflectance_far, contact=contact, ambient=ambient,
                        temperature_c=temperature_c, flicker_depth=flicker_depth,
                        mains_hz=mains_hz)  # fmt: skip
        return self.measure(sc, contact=contact, exposure_control=exposure_control)

    def measure(
        self, scene: dict, *, contact: bool = True, exposure_control: bool = True
    ) -> PressCounts:
        """The firmware's measurement cycle (firmware/jaundice/main.py, measure()) on a scene:
        dark frame; per LED a probe flash, the drive it sets, five flashes; dark frame."""
        front = _FrontEnd(scene, self._rng)
        dark_before = front.dark()
        drive: list[int] = []
        flashes: list[list[list[int]]] = []
        for led, factory in enumerate(self.calibration.led_drive):
            if exposure_control:
                probe = probe_drive(int(factory))
                d = exposure_drive(probe, front.flash(led, probe), dark_before)
            else:
                d = int(factory)
            drive.append(d)
            shots = [front.flash(led, d) for _ in range(N_FLASHES)]
            flashes.append([[a for a, _ in shots], [b for _, b in shots]])
        dark_after = front.dark()
        return PressCounts(
            dark_before=dark_before,
            dark_after=dark_after,
            flashes=flashes,
            temperature_c=scene["temperature_c"],
            contact=bool(contact),
            led_drive=tuple(drive),
        )


class _FrontEnd:
    """LEDs, photodiodes and ADC for one press: the same arithmetic as firmware/jaundice/
    hal_sim.py, with its own clock for the flicker phase."""

    def __init__(self, scene: dict, rng: np.random.Generator) -> None:
        self.s = scene
        self.rng = rng
        self.t = 0.0

    def _convert(self, det: int, light: float) -> int:
        s = self.s
        amb = s["ambient"][det] * (
            1.0 + s["flicker_depth"] * math.sin(2 * math.pi * s["flicker_hz"] * self.t + s["phase"])
        )
        self.t += CONVERSION_S
        light = max(light + amb, 0.0)
        sigma = math.sqrt(s["shot"][det] * light + s["read_noise"][det] ** 2)
        v = s["dark"][det] + light + sigma * float(self.rng.standard_normal())
        step = s["step"]
        return int(min(ADC_MAX, max(0, step * round(v / step))))

    def dark(self) -> tuple[int, int]:
        self.t += SETTLE_S
        acc = [0, 0]
        for _ in range(DARK_CONVERSIONS):
            for det in (0, 1):
                acc[det] += self._convert(det, 0.0)
        return (
            (acc[0] + DARK_CONVERSIONS // 2) // DARK_CONVERSIONS,
            (acc[1] + DARK_CONVERSIONS // 2) // DARK_CONVERSIONS,
        )

    def flash(self, led: int, drive: int) -> tuple[int, int]:
        self.t += SETTLE_S
        per = self.s["per_code"][led]
        return (self._convert(0, per[0] * drive), self._convert(1, per[1] * drive))
