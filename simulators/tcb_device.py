"""The jaundice meter's optics and ADC: reflectance in, raw counts out.

What a press produces: a dark frame (all LEDs off) on both photodiodes, each LED in turn on
both photodiodes five times, and a second dark frame; plus the probe temperature and the
skin-contact switch. Counts are 16-bit and saturate at 65535.

Error sources modelled: detector dark offset and read noise, photon (shot) noise, LED output
falling with temperature (tempco, corrected at the gateway from the factory constant), ambient
light leaking under the probe (raises dark frames, flickers at mains frequency so flashes
disagree), LED centre wavelength drift and emission width per unit (hidden: the white
reference is spectrally flat so it cannot see them; pass `led_centre_nm`/`led_fwhm_nm` to
simulators.skin.skin_reflectance to get what this unit really measures).

LED drive settings are DAC codes of the constant-current driver, 1 code = 0.1 mA.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

LED_NM = (450, 470, 505, 550, 590, 650)
DETECTORS = ("near", "far")
N_FLASHES = 5
ADC_MAX = 65535
REFERENCE_TEMPERATURE_C = 25.0
NOMINAL_FWHM_NM = (20.0, 25.0, 30.0, 28.0, 18.0, 18.0)
READ_NOISE_COUNTS = 3.0
COUNTS_PER_PHOTOELECTRON = 0.25  # shot-noise scale: variance = counts / 4
AMBIENT_FULL_SCALE_COUNTS = 20000.0  # ambient=1.0 adds this to every frame on the near PD


@dataclass(frozen=True)
class FactoryCalibration:
    """Constants stored at provisioning and reported in the device info.

    dark_offset: ADC counts with all LEDs off, per detector (near, far).
    white_ref: counts per LED (6) and detector (near, far) on the reference phantom at the
      nominal drive and 25 C, dark already subtracted.
    led_drive: the 6 LED drive settings (DAC codes, 1 code = 0.1 mA) used for white_ref and
      for every measurement.
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
    drive = tuple(int(rng.integers(150, 400)) for _ in LED_NM)
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
    led_drive: tuple[int, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return asdict(self)


class TcbDeviceModel:
    """One unit of the jaundice meter. Seed the calibration and the device alike for a
    consistent unit: `TcbDeviceModel(random_factory_calibration(7), seed=7)`."""

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

    def _frame(self, offset: np.ndarray, light: np.ndarray) -> np.ndarray:
        """Noisy ADC reading: electronic offset + light (shot noise on the light only)."""
        light = np.maximum(np.asarray(light, float), 0.0)
        shot = np.sqrt(light * COUNTS_PER_PHOTOELECTRON)
        sigma = np.hypot(shot, READ_NOISE_COUNTS)
        noisy = offset + light + self._rng.normal(0.0, 1.0, light.shape) * sigma
        return np.clip(np.round(noisy), 0, ADC_MAX).astype(int)

    def press(
        self,
        reflectance_near: np.ndarray,
        reflectance_far: np.ndarray,
        *,
        contact: bool = True,
        ambient: float = 0.0,
        temperature_c: float = 30.0,
    ) -> PressCounts:
        """Counts for one press on skin of the given reflectance (6 values per detector).

        ambient: ambient light level under the probe (0 none, 1 = bright room light
        leaking fully); without contact the probe sees the room, not the skin.
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
        ambient_level = np.array([1.0, 0.35]) * AMBIENT_FULL_SCALE_COUNTS * max(ambient, 0.0)
        temp_factor = 1.0 + self._tempco * (temperature_c - REFERENCE_TEMPERATURE_C)
        mean_signal = self._gain * r * temp_factor

        def dark_frame() -> tuple[int, int]:
            amb = ambient_level * (1.0 + 0.1 * self._rng.normal())
            return tuple(int(v) for v in self._frame(self._dark, amb))  # type: ignore[return-value]

        dark_before = dark_frame()
        flashes: list[list[list[int]]] = []
        for led in range(6):
            per_det: list[list[int]] = []
            for det in range(2):
                # mains flicker: ambient varies flash to flash by ~30 %
                amb = ambient_level[det] * (1.0 + 0.3 * self._rng.normal(size=N_FLASHES))
                light = mean_signal[led, det] + amb
                per_det.append([int(v) for v in self._frame(self._dark[det], light)])
            flashes.append(per_det)
        dark_after = dark_frame()
        return PressCounts(
            dark_before=dark_before,
            dark_after=dark_after,
            flashes=flashes,
            temperature_c=float(temperature_c + self._rng.normal(0.0, 0.1)),
            contact=bool(contact),
            led_drive=tuple(self.calibration.led_drive),
        )
