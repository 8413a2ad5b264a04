# Run under the MicroPython Unix port with a board's heap size: what the fetal monitor's resend
# store gets (bytes, index slots) once its app is loaded. argv: firmware dir. Prints JSON.
import sys

sys.path.append(sys.argv[1] + "/lib")
sys.path.append(sys.argv[1] + "/fetal_heart")
import gc
import json

import main as app

gc.collect()
print(json.dumps({"heap": gc.mem_free() + gc.mem_alloc(), "store_bytes": app._STORE_BYTES,
                  "slots": app._STORE.max_frames, "free_after_load": gc.mem_free()}))  # fmt: skip
