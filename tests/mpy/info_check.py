# Run under the MicroPython Unix port: the fetal monitor's device info (firmware/fetal_heart/
# main.py) carries the supervisor's reset cause and the loop's lateness. argv: firmware dir.
import sys

sys.path.append(sys.argv[1] + "/lib")
sys.path.append(sys.argv[1] + "/fetal_heart")
import main as app
import supervisor


class Hal:
    def cpu_ms(self):
        return 0

    def reset_cause(self):
        return "watchdog", "task tx ended"


sup = supervisor.Supervisor(Hal(), log=lambda *a: None)
sup.lag_max_ms = 37
state = app.State({})
state.sup = sup
print(app.info({"id": "fh-i"}, 3, state).decode())
