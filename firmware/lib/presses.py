# The fetal monitor's one button, told apart by how long it is held (docs/firmware.md, "The
# button"): a short press is a fetal movement mark (the mother felt the baby move), a press held
# LONG_MS or more the pairing gesture. A board's HAL feeds it the pin's edges from its IRQ and
# the button task polls it; the simulation's HAL is told the kind of each press instead. Pure:
# the time is passed in, so tests run it under the Unix port with made-up times.
from micropython import const

PRESS_SHORT = const(1)  # the same numbers as firmware/sim/sim_feed.py
PRESS_LONG = const(2)
LONG_MS = const(2000)  # held this long: the pairing gesture, told while still held
BOUNCE_MS = const(30)  # a mechanical switch settles within a few ms; the pin is read after this


class Presses:
    """Edges in (`edge`, from the pin's IRQ), presses out (`poll`): (kind, ms it began)."""

    def __init__(self):
        self.edge_at = 0  # ticks_ms of the last edge: the pin is trusted BOUNCE_MS after it
        self.first_at = 0  # ... of the first edge since the last poll: when a press began
        self.edges = 0  # edges since the last poll (a tap between two polls is not missed)
        self.down_at = 0  # when the press being held began
        self.held = False
        self.long_told = False

    def edge(self, now):
        """From the IRQ: only note the time (no allocation, no decision)."""
        if not self.edges:
            self.first_at = now
        self.edges += 1
        self.edge_at = now

    def poll(self, now, down, diff):
        """`down`: the pin reads pressed now; `diff`: time.ticks_diff. Returns a press once,
        or None: SHORT when released before LONG_MS, LONG as soon as LONG_MS is reached."""
        if self.edges and diff(now, self.edge_at) < BOUNCE_MS:
            return None  # still bouncing: read it next time
        edges = self.edges
        self.edges = 0
        if not self.held:
            if not edges:  # a press begins with an edge: a button held at power-on is none
                return None
            if not down:  # pressed and released between two polls (a tap), or a release
                return (PRESS_SHORT, self.first_at) if edges > 1 else None  # of one not seen
            self.held = True
            self.long_told = False
            self.down_at = self.first_at
            return None
        if not down:
            self.held = False
            return None if self.long_told else (PRESS_SHORT, self.down_at)
        if not self.long_told and diff(now, self.down_at) >= LONG_MS:
            self.long_told = True
            return (PRESS_LONG, self.down_at)
        return None
