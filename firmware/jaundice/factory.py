# The jaundice meter's factory measurements for the provisioning console (MEASURE d1 .. d6: one
# press at those LED drives on whatever the calibration fixture holds, as JSON). Loaded only when
# the console runs, so a meter's normal start-up never compiles it.


def handler(path, hal, cycle, n_leds):
    """measure(drives) -> one press as a dict (dark frames, drives, flashes, temperature)."""

    def measure(drives):
        bad = [d for d in drives if d % hal.DRIVE_STEP or not hal.DRIVE_STEP <= d <= hal.DRIVE_MAX]
        if len(drives) != n_leds or bad:
            raise ValueError("MEASURE needs %d drives, multiples of %d up to %d"
                             % (n_leds, hal.DRIVE_STEP, hal.DRIVE_MAX))  # fmt: skip
        hal.fixture(path)
        dark0, dark1, drive, flashes = cycle(drives, drives)
        return {"dark_before": list(dark0), "dark_after": list(dark1), "led_drive": drive,
                "flashes": [[near, far] for near, far in flashes],
                "temperature_c": hal.temperature_c()}  # fmt: skip

    return measure
