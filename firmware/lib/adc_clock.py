# An ADC's clock as its reader keeps it (docs/firmware.md, "Real-time budget"): the ADC makes a
# sample every 1/hz s whether or not the firmware reads, so the samples made since the reads
# last caught up with it, less those read since, are the ones still waiting. The board's HAL
# tells a DMA overrun and how old a block is by it (hal_esp32.doppler_read); the simulation's
# HAL a backlog the process was held up for (hal_sim._Channel). Pure and allocation-free (small
# ints only: ticks_us wraps below 2**30): the time and ticks_diff are passed in, and the
# Doppler's read path calls it every block.


class AdcClock:
    def __init__(self, hz, now, ticks_diff):
        self.us_per_sample = 1_000_000 // hz
        self.diff = ticks_diff
        self.since = now  # ticks_us when the reads last caught up
        self.read = 0  # samples read (or dropped) since then, less any still held then

    def behind(self, now):
        """Samples made since the reads caught up and not read yet (the block just taken
        included)."""
        return self.diff(now, self.since) // self.us_per_sample - self.read

    def caught_up(self, now, held):
        """The reads caught up at `now`: from here the clock counts on; `held` samples made
        before it are still to be read."""
        self.since = now
        self.read = -held
