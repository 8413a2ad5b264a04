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

Also modelled: detector dark offset, and per LED what the factory white reference cannot see
(it is spectrally flat) or sees only at one drive and temperature:

* peak wavelength: binned LEDs sit anywhere within +-10 nm of their nominal peak (ordinary LED
  binning; e.g. the dominant-wavelength bins of mid-power LED datasheets are 5-10 nm wide), one
  LED independently of another; emission width 16-30 nm FWHM;
* the peak moving with temperature: 0.03-0.06 nm/K for InGaN (450-550 nm) and 0.10-0.15 nm/K
  for AlInGaP (590, 650 nm) LEDs (E. F. Schubert, Light-Emitting Diodes, 2nd ed., Cambridge
  2006, ch. 6; the typical coefficients on LED datasheets);
* output falling with temperature: -0.1..-0.4 %/K (InGaN) and -0.6..-1.2 %/K (AlInGaP), the
  same sources (AlInGaP's lower characteristic temperature);
* droop: output P(I) = I / (1 + I / I0) with I0 1-5 A, 1.5-7 % less light at 102 mA than
  proportionality from a 20 mA factory drive predicts (InGaN efficiency droop and heating within
  the pulse: J. Piprek, Phys Status Solidi A 2010;207:2217-2225; "a few percent over 10-100 mA",
  docs/jaundice.md);
* the built-in white tile in the probe's holder (the start-up self-check's target): a flat
  diffuser of 75-90 % of the factory white phantom's reflectance.

`bands_at(temperature_c)` gives the unit's true LED centres and widths at a probe temperature:
pass them to simulators.skin.skin_reflectance to get what this unit really measures.

LED drive settings are codes of the constant-current driver, 1 code = 0.1 mA, in steps of
DRIVE_STEP_CODE (an 8-bit DAC over 0-102 mA).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from dsp.tcb_unit import (  # noqa: F401  (DRIVE_*: the driver's, re-exported)
    DRIVE_MAX_CODE,
    DRIVE_STEP_CODE,
    TargetReading,
    calibrate_unit,
    quantise_drive,
    reading_from_presses,
)
from dsp.tissue_optics import NOMINAL_FWHM_NM, NOMINAL_LED_NM, led_band_weights

LED_NM = tuple(int(x) for x in NOMINAL_LED_NM)
DETECTORS = ("near", "far")
N_FLASHES = 5
ADC_MAX = 65535
ADC_STEP_COUNTS = 2  # 15-bit single-ended ADS1115 code, doubled by the HAL
REFERENCE_TEMPERATURE_C = 25.0
LED_BIN_TOLERANCE_NM = 10.0
_ALINGAP = (False, False, False, False, True, True)  # 590 and 650 nm; the others are InGaN
FACTORY_HOT_C = 40.0  # the calibration fixture's second temperature

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
PROBE_DIVISOR = 4  # the probe flash runs at factory drive / 4
EXPOSURE_TARGET_COUNTS = 40000  # the brighter detector's light at the chosen drive (61 % FS)

AMBIENT_FULL_SCALE_COUNTS = 20000.0  # ambient=1.0 adds this to every frame on the near PD
AMBIENT_FAR_FRACTION = 0.35
FLICKER_DEPTH = 0.3  # magnetic-ballast fluorescent light (IEEE Std 1789-2015)
MAINS_HZ = 50.0


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
    unit: the per-unit calibration (dsp.tcb_unit.UnitCalibration.to_dict): LED bands, their
      temperature coefficients, droop, the self-check and weekly-check references. None for a
      unit calibrated before per-unit calibration existed: its readings are never shown.
    """

    dark_offset: tuple[int, int]
    white_ref: tuple[tuple[int, int], ...]
    led_drive: tuple[int, ...]
    tempco_per_c: float
    unit: dict | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["dark_offset"] = list(self.dark_offset)
        d["white_ref"] = [list(p) for p in self.white_ref]
        d["led_drive"] = list(self.led_drive)
        if self.unit is None:
            del d["unit"]
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
        unit = d.get("unit")
        if unit is not None and not isinstance(unit, dict):
            raise ValueError("factory calibration unit must be an object")
        return cls(dark, white, drive, tempco, unit)  # type: ignore[arg-type]


@dataclass(frozen=True)
class _HiddenOptics:
    """What the factory cannot see directly: the unit's true LED spectra, gains and drifts."""

    led_centre_nm: tuple[float, ...]  # at 25 C
    led_fwhm_nm: tuple[float, ...]
    gain: np.ndarray  # 6 x 2 counts for reflectance 1.0 at 25 C and the factory drive
    tempco_per_c: np.ndarray  # output, per LED
    centre_tempco_nm_per_c: np.ndarray
    droop_ma: np.ndarray  # I0 of P(I) = I / (1 + I / I0), per LED
    tile_reflectance: float  # the built-in white tile, relative to the factory white phantom

    @property
    def tempco_true_per_c(self) -> float:
        return float(np.mean(self.tempco_per_c))


def _hidden_optics(seed: int, leds: str = "binned") -> _HiddenOptics:
    """One unit's optics (module docstring); leds="nominal": every LED exactly at its nominal
    peak and width (the reference unit the estimator's calibration population stands for)."""
    rng = np.random.default_rng([seed, 1])
    shift = rng.uniform(-LED_BIN_TOLERANCE_NM, LED_BIN_TOLERANCE_NM, size=6)
    spread = rng.normal(0.0, 2.0, size=6)
    if leds == "nominal":
        shift[:] = 0.0
        spread[:] = 0.0
    elif leds != "binned":
        raise ValueError(f"leds must be 'binned' or 'nominal', not {leds!r}")
    centre = tuple(float(c + d) for c, d in zip(NOMINAL_LED_NM, shift, strict=True))
    fwhm = tuple(
        float(np.clip(w + d, 16.0, 30.0)) for w, d in zip(NOMINAL_FWHM_NM, spread, strict=True)
    )
    # Far detector sees ~1/8 of the near light from the phantom; drive is set so the
    # phantom reads 35-55 % of full scale on the near detector.
    near = rng.uniform(24000, 36000, size=6)
    far = near * rng.uniform(0.10, 0.16, size=6)
    gain = np.column_stack([near, far])
    alingap = np.array(_ALINGAP)
    tempco = np.where(
        alingap, rng.uniform(-0.012, -0.006, size=6), rng.uniform(-0.004, -0.001, size=6)
    )
    centre_tempco = np.where(
        alingap, rng.uniform(0.10, 0.15, size=6), rng.uniform(0.03, 0.06, size=6)
    )
    droop = rng.uniform(1000.0, 5000.0, size=6)
    tile = float(rng.uniform(0.75, 0.9))
    return _HiddenOptics(centre, fwhm, gain, tempco, centre_tempco, droop, tile)


def _optics_of(calibration: FactoryCalibration, own: _HiddenOptics) -> _HiddenOptics:
    """Optics that agree with a calibration made for another unit: its gains and, when it has
    a per-unit part, its bands, drifts, droop and tile; otherwise this unit's bands, the
    batch tempco and no droop."""
    white = np.asarray(calibration.white_ref, float)
    if calibration.unit is None:
        return replace(
            own,
            gain=white,
            tempco_per_c=np.full(6, calibration.tempco_per_c),
            droop_ma=np.full(6, 1.0e9),
        )
    u = calibration.unit
    tile = np.asarray(u["white_tile"], float) / white
    return _HiddenOptics(
        led_centre_nm=tuple(float(x) for x in u["led_centre_nm"]),
        led_fwhm_nm=tuple(float(x) for x in u["led_fwhm_nm"]),
        gain=white,
        tempco_per_c=np.asarray(u["output_tempco_per_c"], float),
        centre_tempco_nm_per_c=np.asarray(u["centre_tempco_nm_per_c"], float),
        droop_ma=np.asarray(u["droop_ma"], float),
        tile_reflectance=float(np.mean(tile)),
    )


def random_factory_calibration(
    seed: int, *, per_unit: bool = True, leds: str = "binned", certificate_seed: int = 0
) -> FactoryCalibration:
    """Provision one manufactured unit.

    Dark offsets and the factory drive, then the factory procedure of docs/jaundice.md run on
    the simulated unit and the certified phantoms (factory_readings, dsp.tcb_unit): white
    reference, per-LED temperature coefficients, LED bands, droop, self-check references.
    per_unit=False: the procedure before per-unit calibration (white phantom at 25 C and the
    LED batch's tempco only). Cached: the same seed gives the same unit.
    """
    return _factory_calibration(seed, per_unit, leds, certificate_seed)


@functools.lru_cache(maxsize=256)
def _factory_calibration(
    seed: int, per_unit: bool, leds: str, certificate_seed: int
) -> FactoryCalibration:
    rng = np.random.default_rng([seed, 2])
    hidden = _hidden_optics(seed, leds)
    dark = (int(rng.integers(180, 420)), int(rng.integers(180, 420)))
    # the factory averages many flashes: the stored white reference is within ~0.1 % of truth
    measured = hidden.gain * (1.0 + rng.normal(0.0, 0.001, size=hidden.gain.shape))
    white = tuple((int(round(n)), int(round(f))) for n, f in measured)
    # drive codes the DAC can set (multiples of DRIVE_STEP_CODE), 15-40 mA
    drive = tuple(DRIVE_STEP_CODE * int(rng.integers(38, 100)) for _ in LED_NM)
    # the tempco is characterised per LED batch: close to, not exactly, the unit's own
    tempco = round(hidden.tempco_true_per_c + float(rng.normal(0.0, 0.0002)), 5)
    plain = FactoryCalibration(dark, white, drive, tempco)
    if not per_unit:
        return plain
    from simulators.tcb_phantoms import certificate

    cert = certificate(certificate_seed)
    device = TcbDeviceModel(plain, seed=seed, leds=leds)
    unit, white_25 = calibrate_unit(factory_readings(device), cert)
    return FactoryCalibration(
        dark, white_25.white_ref, drive, white_25.tempco_per_c, unit.to_dict()
    )


def factory_readings(device: TcbDeviceModel, presses: int = 3) -> list[TargetReading]:
    """The factory procedure's readings on a simulated unit (docs/jaundice.md, "Factory
    calibration"): W and the spectral phantoms at 25 and 40 C at the factory drive, the grey
    at four drives up to the maximum and the built-in tile, at 25 C."""
    from simulators.tcb_phantoms import GREY_PHANTOM, SPECTRAL_PHANTOMS

    factory = tuple(int(x) for x in device.calibration.led_drive)
    out: list[TargetReading] = []

    def read(target: str, near: np.ndarray, far: np.ndarray, temp: float,
             drives: tuple[int, ...]) -> None:  # fmt: skip
        sc = device.scene(near, far, temperature_c=temp)
        ps = [device.measure(sc, drives=drives).to_dict() for _ in range(presses)]
        out.append(reading_from_presses(target, ps))

    for temp in (REFERENCE_TEMPERATURE_C, FACTORY_HOT_C):
        for name in ("W", *SPECTRAL_PHANTOMS):
            read(name, *device.phantom(name, temp), temp, factory)
    g_near, g_far = device.phantom(GREY_PHANTOM, REFERENCE_TEMPERATURE_C)
    for mult in (1, 2, 4, 100):
        drives = factory if mult == 1 else tuple(quantise_drive(d * mult) for d in factory)
        read(GREY_PHANTOM, g_near, g_far, REFERENCE_TEMPERATURE_C, drives)
    tile = np.full(6, device.tile_reflectance)
    read("tile", tile, tile, REFERENCE_TEMPERATURE_C, factory)
    return out


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

    def __init__(
        self, calibration: FactoryCalibration, seed: int = 0, *, leds: str = "binned"
    ) -> None:
        self.calibration = calibration
        self._hidden = _hidden_optics(seed, leds)
        self._rng = np.random.default_rng([seed, 3])
        self._dark = np.asarray(calibration.dark_offset, float)
        # A calibration made for another seed describes another unit: then the device takes
        # its gains, drifts and bands from that calibration, so calibration and optics agree.
        white = np.asarray(calibration.white_ref, float)
        if not np.allclose(white, self._hidden.gain, rtol=0.01):
            self._hidden = _optics_of(calibration, self._hidden)

    @property
    def led_centre_nm(self) -> tuple[float, ...]:
        """True LED peaks at 25 C."""
        return self._hidden.led_centre_nm

    @property
    def led_fwhm_nm(self) -> tuple[float, ...]:
        return self._hidden.led_fwhm_nm

    @property
    def tile_reflectance(self) -> float:
        return self._hidden.tile_reflectance

    def bands_at(self, temperature_c: float) -> tuple[np.ndarray, np.ndarray]:
        """(centres, widths) of this unit's LEDs at a probe temperature: what it measures."""
        h = self._hidden
        centre = np.asarray(h.led_centre_nm) + h.centre_tempco_nm_per_c * (
            temperature_c - REFERENCE_TEMPERATURE_C
        )
        return centre, np.asarray(h.led_fwhm_nm, float)

    def aged(self, output_change: float | np.ndarray = 1.0,
             centre_shift_nm: float | np.ndarray = 0.0) -> TcbDeviceModel:  # fmt: skip
        """The same unit after its LEDs changed: output multiplied by output_change (per LED
        or all), peaks moved by centre_shift_nm. The calibration stays the factory's."""
        dev = TcbDeviceModel.__new__(TcbDeviceModel)
        dev.calibration = self.calibration
        dev._rng = self._rng
        dev._dark = self._dark
        h = self._hidden
        change = np.broadcast_to(np.asarray(output_change, float), (6,))
        dev._hidden = replace(
            h,
            gain=h.gain * change[:, None],
            led_centre_nm=tuple(
                float(c) for c in np.asarray(h.led_centre_nm) + np.asarray(centre_shift_nm)
            ),
        )
        return dev

    def phantom(self, name: str, temperature_c: float) -> tuple[np.ndarray, np.ndarray]:
        """(near, far): what phantom `name` (simulators/tcb_phantoms.py) reflects in this unit's
        own LED bands at `temperature_c`."""
        from simulators.tcb_phantoms import phantom_reflectance

        weights = led_band_weights(*self.bands_at(temperature_c))
        spec_near, spec_far = phantom_reflectance(name)
        return weights @ spec_near, weights @ spec_far

    def self_check_info(self, temperature_c: float = REFERENCE_TEMPERATURE_C) -> dict:
        """The firmware's start-up self-check (firmware/jaundice/main.py, self_check): the
        built-in tile at the factory drive, dark-subtracted mean counts per LED and detector,
        as the device info reports it."""
        tile = np.full(6, self._hidden.tile_reflectance)
        drives = tuple(int(d) for d in self.calibration.led_drive)
        press = self.measure(self.scene(tile, tile, temperature_c=temperature_c), drives=drives)
        dark = 0.5 * (np.asarray(press.dark_before, float) + np.asarray(press.dark_after, float))
        counts = np.asarray(press.flashes, float).mean(axis=2) - dark[None, :]
        return {
            "counts": [[round(float(n), 1), round(float(f), 1)] for n, f in counts],
            "led_drive": list(press.led_drive),
            "temperature_c": press.temperature_c,
        }

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
        step (ADC step), temperature_c, phase (flicker phase at the start, radians),
        droop_code (per LED: the light at drive d is per_code * d / (1 + d / droop_code)).
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
        h = self._hidden
        temp_factor = 1.0 + h.tempco_per_c * (temperature_c - REFERENCE_TEMPERATURE_C)
        drive0 = np.asarray(self.calibration.led_drive, float)
        # light at drive d = per_code * d / (1 + d / droop_code): P(I) = I / (1 + I / I0),
        # scaled so the factory drive gives the gain
        droop_code = h.droop_ma * 10.0
        per_code = (
            h.gain * r * temp_factor[:, None] * ((1.0 + drive0 / droop_code) / drive0)[:, None]
        )
        return {
            "dark": [float(x) for x in self._dark],
            "per_code": per_code.tolist(),
            "droop_code": droop_code.tolist(),
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
        self,
        scene: dict,
        *,
        contact: bool = True,
        exposure_control: bool = True,
        drives: tuple[int, ...] | None = None,
    ) -> PressCounts:
        """The firmware's measurement cycle (firmware/jaundice/main.py, measure()) on a scene:
        dark frame; per LED a probe flash, the drive it sets, five flashes; dark frame."""
        front = _FrontEnd(scene, self._rng)
        dark_before = front.dark()
        drive: list[int] = []
        flashes: list[list[list[int]]] = []
        for led, factory in enumerate(self.calibration.led_drive):
            if drives is not None:  # the factory's fixed drives (provisioning console)
                d = int(drives[led])
            elif exposure_control:
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
        droop = self.s.get("droop_code")
        light = drive / (1.0 + drive / droop[led]) if droop else float(drive)
        return (self._convert(0, per[0] * light), self._convert(1, per[1] * light))
