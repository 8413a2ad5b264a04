"""The packages the wheel holds; everything else about the build is in pyproject.toml.

The code packages are found by name, as new ones appear. Two more are mapped from where their
files live in the tree (pyproject.toml, [tool.setuptools.package-dir]), so each file has one
copy: `perimon_schemas` is docs/schemas, the MQTT contract's JSON Schemas, and
`perimon_firmware` is firmware/, the MicroPython tree the boards are flashed from and the
virtual devices run (simulators/fleet.py). pyproject.toml alone cannot find packages and also
rename some, hence this file.
"""

from setuptools import find_namespace_packages, setup

CODE = ["gateway*", "dsp*", "simulators*", "hospital*", "devtools*"]
FIRMWARE = [f"perimon_firmware.{p}" for p in find_namespace_packages("firmware")]

setup(packages=[*find_namespace_packages(include=CODE), "perimon_schemas", "perimon_firmware",
                *FIRMWARE])  # fmt: skip
