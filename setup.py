"""The packages the wheel holds; everything else about the build is in pyproject.toml.

The code packages are found by name, as new ones appear. One more package is mapped from where
its files live in the tree (pyproject.toml, [tool.setuptools.package-dir]), so each file has one
copy: `perimon_schemas` is docs/schemas, the MQTT contract's JSON Schemas. pyproject.toml alone
cannot find packages and also rename one, hence this file.
"""

from setuptools import find_namespace_packages, setup

CODE = ["gateway*", "dsp*", "simulators*", "hospital*", "devtools*"]

setup(packages=[*find_namespace_packages(include=CODE), "perimon_schemas"])
