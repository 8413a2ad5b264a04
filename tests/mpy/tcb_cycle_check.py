# Run under the MicroPython Unix port: the jaundice firmware's measurement cycle on one scene
# (JSON on stdin: {"scene": ..., "factory_drive": [...]}) through the simulation HAL; prints the
# decoded record as JSON.
import json
import random
import struct
import sys

sys.path.append(sys.argv[1] + "/lib")
sys.path.append(sys.argv[1] + "/jaundice")
import main  # first, as a board runs it: it takes its store before the heap fragments

hal_sim = main.hal

job = json.loads(sys.stdin.read())
# the simulation HAL's noise (random) from the job's seed: the same job reads the same counts
random.seed(job.get("seed", 1))
hal_sim._press(json.dumps(job["scene"]).encode())
hal_sim._state["contact"] = True
rec = main.measure(job["factory_drive"])
bits, temp, d0, d1, d2, d3, n_led, n_flash = struct.unpack_from("<Bh4HBB", rec, 0)
off = struct.calcsize("<Bh4HBB")
drive = list(struct.unpack_from("<" + str(n_led) + "H", rec, off))
off += 2 * n_led
counts = list(struct.unpack_from("<" + str(n_led * 2 * n_flash) + "H", rec, off))
flashes = [
    [counts[(led * 2 + det) * n_flash : (led * 2 + det + 1) * n_flash] for det in (0, 1)]
    for led in range(n_led)
]
print(
    json.dumps(
        {
            "bits": bits,
            "temperature_c": temp / 100,
            "dark_before": [d0, d1],
            "dark_after": [d2, d3],
            "led_drive": drive,
            "flashes": flashes,
        }
    )
)
