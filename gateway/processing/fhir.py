"""Clinical readings as FHIR R4 Observations, in the style of the HL7 Personal Health Device
(PHD) implementation guide: one Observation per reading, LOINC codes, UCUM units, the sensor as
`Observation.device` and the gateway in the `observation-gatewayDevice` extension, the effective
time from the device clock corrected by the gateway's time sync, and a deterministic identifier
so a hospital de-duplicates redeliveries.

Published on `{prefix}/{gateway}/device/{device}/observation` (docs/mqtt.md). The builders are
pure functions; `publish_trace_observations` and `publish_tcb_observations` are the two hooks the
device processors call.

What is deliberately not claimed: PHD profiles require `subject`; the gateway does not know the
patient (the hospital maps device to patient), so there is no `subject` and no profile is
declared in `meta`.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dsp.arrays import Floats
from dsp.ctg_artefact import VALID_RANGE_BPM
from dsp.ctg_reference import POINT_S
from dsp.mhr import MHR_RANGE_BPM
from gateway.times import iso_time, parse_time

if TYPE_CHECKING:
    from gateway.processing.fetal import FetalProcessor
    from gateway.processing.jaundice import JaundiceProcessor

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
GATEWAY_EXTENSION = "http://hl7.org/fhir/StructureDefinition/observation-gatewayDevice"
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
IDENTIFIER_SYSTEM = "urn:perimon:observation"
DEVICE_SYSTEM = "urn:perimon:device"
GATEWAY_SYSTEM = "urn:perimon:gateway"
_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, IDENTIFIER_SYSTEM)

# kind -> (LOINC code, text, UCUM unit)
CODES = {
    "fhr": ("55283-6", "Fetal heart rate", "/min"),
    "mhr": ("8867-4", "Maternal heart rate", "/min"),
    "tcb_mg_dl": ("58941-6", "Transcutaneous bilirubin", "mg/dL"),
    "tcb_umol_l": ("72898-0", "Transcutaneous bilirubin", "umol/L"),
}

TRACE_POINT_MS = round(POINT_S * 1000)  # 250 ms: the CTG point rate, as on the live trace
TRACE_POINTS_PER_OBSERVATION = 240  # one Observation per minute of trace (SampledData)
# SampledData lowerLimit/upperLimit, per trace: the FHR's is the CTG chart's 50-210 bpm, the
# range outside which artefact rejection discards a value (dsp/ctg_artefact.py); the maternal
# rate's is its estimator's range (dsp/mhr.py). A point outside is "L" or "U", as FHIR says.
TRACE_LIMITS: dict[str, tuple[float, float]] = {"fhr": VALID_RANGE_BPM, "mhr": MHR_RANGE_BPM}


def resource_id(identifier: str) -> str:
    """A FHIR id derived from the identifier: the same reading always gets the same id."""
    return str(uuid.uuid5(_ID_NAMESPACE, identifier))


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _base(
    kind: str, identifier: str, gateway_id: str, device_id: str, device_type: str
) -> dict[str, Any]:
    code, text, _ = CODES[kind]
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": resource_id(identifier),
        "identifier": [{"system": IDENTIFIER_SYSTEM, "value": identifier}],
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}], "text": text},
        "device": {
            "identifier": {"system": DEVICE_SYSTEM, "value": device_id},
            "display": f"{device_type} {device_id}",
        },
        "extension": [
            {
                "url": GATEWAY_EXTENSION,
                "valueReference": {"identifier": {"system": GATEWAY_SYSTEM, "value": gateway_id}},
            }
        ],
    }
    if kind in ("fhr", "mhr"):
        obs["category"] = [{"coding": [{"system": CATEGORY, "code": "vital-signs"}]}]
    return obs


def _sampled(values: Sequence[float | None], limits: tuple[float, float]) -> str:
    """SampledData.data: values separated by spaces, "E" where there is no trustworthy value,
    "L" / "U" for a value below / above `limits` (lowerLimit, upperLimit)."""
    lo, hi = limits
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append("E")
        elif v < lo:
            out.append("L")
        elif v > hi:
            out.append("U")
        else:
            out.append(f"{float(v):.1f}")
    return " ".join(out)


def trace_observation(
    kind: str,
    gateway_id: str,
    device_id: str,
    boot: int,
    first_point: int,
    t_first_unix: float,
    values: Sequence[float | None],
) -> dict[str, Any]:
    """One window of the 4 Hz FHR or maternal trace as an Observation with SampledData.

    Points without a trustworthy estimate are "E" (error), never filled in: the hospital sees
    exactly the gaps the nurse sees. A rate off the chart (TRACE_LIMITS) is "L" or "U".
    """
    identifier = f"{device_id}:{boot}:{kind}-obs:{first_point}"
    obs = _base(kind, identifier, gateway_id, device_id, "fetal_heart")
    _, _, unit = CODES[kind]
    end = t_first_unix + len(values) * TRACE_POINT_MS / 1000.0
    obs["effectivePeriod"] = {"start": iso_time(t_first_unix), "end": iso_time(end)}
    obs["valueSampledData"] = {
        "origin": _quantity(0, unit),
        "period": TRACE_POINT_MS,
        "factor": 1,
        "lowerLimit": TRACE_LIMITS[kind][0],
        "upperLimit": TRACE_LIMITS[kind][1],
        "dimensions": 1,
        "data": _sampled(values, TRACE_LIMITS[kind]),
    }
    return obs


def tcb_observations(gateway_id: str, reading: dict[str, Any]) -> list[dict[str, Any]]:
    """A TcB reading (the `tcb` topic's payload) as two Observations, mg/dL and umol/L.

    A flagged measurement has no value and a dataAbsentReason naming the flag.
    """
    out = []
    for kind, key in (("tcb_mg_dl", "tcb_mg_dl"), ("tcb_umol_l", "tcb_umol_l")):
        identifier = f"{reading['msg_id']}:{kind}"
        obs = _base(kind, identifier, gateway_id, reading["device_id"], "jaundice")
        obs["effectiveDateTime"] = reading["t"]
        value = reading.get(key)
        if value is None:
            obs["dataAbsentReason"] = {
                "coding": [{"system": DATA_ABSENT, "code": "error"}],
                "text": reading.get("flag") or "no value",
            }
        else:
            obs["valueQuantity"] = _quantity(value, CODES[kind][2])
            lo, hi = reading.get("ci_low_mg_dl"), reading.get("ci_high_mg_dl")
            if kind == "tcb_mg_dl" and lo is not None and hi is not None:
                obs["note"] = [{"text": f"95% interval {lo:.1f}-{hi:.1f} mg/dL"}]
        out.append(obs)
    return out


class TraceWindow:
    """Collects contiguous 4 Hz points into windows aligned to multiples of the window length."""

    def __init__(self, boot: int | None, points: int = TRACE_POINTS_PER_OBSERVATION) -> None:
        self.boot = boot
        self.points = points
        self.start: int | None = None
        self.t_start = 0.0
        self.values: list[float | None] = []

    def add(
        self, first: int, t_first_unix: float, values: Sequence[float | None]
    ) -> list[tuple[int, float, list[float | None]]]:
        """Add points `first`.. ; return the windows completed by them."""
        if self.start is None or first != self.start + len(self.values):
            self.start, self.t_start, self.values = first, t_first_unix, []  # a break: restart
        done = []
        for i, v in enumerate(values):
            if not self.values:
                self.start = first + i
                self.t_start = t_first_unix + i * TRACE_POINT_MS / 1000.0
            self.values.append(None if v is None or math.isnan(v) else float(v))
            if (first + i + 1) % self.points == 0:
                done.append((self.start, self.t_start, self.values))
                self.start, self.values = first + i + 1, []
        return done


def publish_trace_observations(
    proc: FetalProcessor, kind: str, first: int, t_first_unix: float, values: Floats
) -> None:
    """Hook for gateway/processing/fetal.py: publish an Observation for every completed trace window."""
    session = proc.session
    boot = session.state.boot
    w = proc.fhir_windows.get(kind)
    if w is None or w.boot != boot:
        w = proc.fhir_windows[kind] = TraceWindow(boot, TRACE_POINTS_PER_OBSERVATION)
    gateway_id = proc.gateway_id
    for start, t0, vals in w.add(first, t_first_unix, list(values)):
        obs = trace_observation(kind, gateway_id, proc.device_id, boot or 0, start, t0, vals)
        proc.publish(("device", proc.device_id, "observation"), obs)


def resume_trace_window(
    proc: FetalProcessor, kind: str, last_point: int, published: list[dict[str, Any]]
) -> None:
    """Hook for gateway/processing/fetal.py after a gateway restart part-way through a boot: the window
    in progress is refilled with its points up to `last_point` from the trace messages the
    stopped gateway published (`published`, kept by the outbox), so its Observation still
    covers every point of the window."""
    boot = proc.session.state.boot
    w = proc.fhir_windows[kind] = TraceWindow(boot, TRACE_POINTS_PER_OBSERVATION)
    start = (last_point + 1) // w.points * w.points
    for m in published:
        t_first = parse_time(m.get("t_start"))
        if m.get("boot") != boot or t_first is None:
            continue
        for i, v in enumerate(m[f"{kind}_bpm"]):
            if start <= m["seq"] + i <= last_point:
                w.add(m["seq"] + i, t_first + i * TRACE_POINT_MS / 1000.0, [v])


def publish_tcb_observations(proc: JaundiceProcessor, reading: dict[str, Any]) -> None:
    """Hook for gateway/processing/jaundice.py: the reading just published, as FHIR Observations."""
    gateway_id = proc.gateway_id
    for obs in tcb_observations(gateway_id, reading):
        proc.publish(("device", proc.device_id, "observation"), obs)
