# Run under the MicroPython Unix port: what each kind of press does to the pairing window
# (firmware/lib/pairing.py): a long press is Pairing.press, a short one in the window
# Pairing.confirm (fetal_heart/main.py's button task). argv: firmware/lib. Prints the states.
import json
import sys

sys.path.append(sys.argv[1])
import pairing


class Hal:
    def led(self, colour, blink):
        pass

    def tone(self, hz, ms):
        pass


class Radio:
    def readvertise(self):
        pass


class Fb:
    pairing = False


def window(state=None):
    w = pairing.Pairing({"id": "fh-01"}, "/dev/null", None, Radio(), {}, Fb(), Hal(), log=id)
    if state is not None:
        w.press()  # opened by a long press
        w.state = state  # ... and as far as the exchange under test
    return w


def after(w, press):
    press(w)
    return w.state


print(json.dumps({
    "idle_short": after(window(), lambda w: w.confirm()),
    "idle_long": after(window(), lambda w: w.press()),
    "open_short": after(window(pairing.OPEN), lambda w: w.confirm()),
    "code_short": after(window(pairing.CODE), lambda w: w.confirm()),
    "code_long": after(window(pairing.CODE), lambda w: w.press()),
}))  # fmt: skip
