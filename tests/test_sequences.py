"""Sequence numbers (docs/mqtt.md, "Sequence numbers"): the kinds the gateway numbers itself
continue across a gateway restart, never reusing a number; the reference subscriber finds the
numbers missing between those it received, whatever the order they arrive in (on SQLite and on
PostgreSQL)."""

from __future__ import annotations

import json

import pytest

from gateway.config import MqttSection
from gateway.publish.mqtt import Publisher
from gateway.publish.outbox import Outbox
from hospital.messages import NO_BOOT, sequence_of
from hospital.store import Gap, Store
from tests.harness import postgres as _postgres

postgres, new_database = _postgres.postgres, _postgres.new_database  # fixtures, for this module


def _publish_all(path, device: str, n: int) -> None:
    pub = Publisher(MqttSection(), "gw-t", Outbox(path, 1 << 20, 0))  # never started
    for i in range(n):
        for kind in ("alert", "ctg", "session"):
            pub.publish(("device", device, kind), {"msg_id": f"{device}:{kind}:{i}"})
    pub.publish(("device", device, "fhr"), {"msg_id": f"{device}:1:fhr:5", "seq": 5, "count": 4})
    pub.outbox.close()


@pytest.mark.unit
def test_gateway_numbers_continue_across_a_restart(tmp_path):
    path = tmp_path / "outbox.sqlite"
    _publish_all(path, "fh-01", 2)
    _publish_all(path, "fh-01", 1)  # the gateway restarted: the unsent rows are still there
    _publish_all(path, "fh-02", 1)
    rows = Outbox(path, 1 << 20, 0).pending(0, 100)
    seqs: dict[tuple[str, str], list[int]] = {}
    for r in rows:
        *_, device, kind = r.topic.split("/")
        seqs.setdefault((device, kind), []).append(json.loads(r.payload)["seq"])
    for kind in ("alert", "ctg", "session"):
        assert seqs["fh-01", kind] == [1, 2, 3], kind
        assert seqs["fh-02", kind] == [1], kind
    assert seqs["fh-01", "fhr"] == [5, 5]  # the trace keeps the device's numbering


@pytest.mark.system  # PostgreSQL is a server
def test_gaps_between_received_numbers_in_any_order(new_database):
    store = Store(new_database())
    for seq in (5, 1, 2, 7):  # out of order, as two workers may store them
        store.add_sequence("gw", "fh-01", "alert", NO_BOOT, seq, 1)
    for seq, count in ((1, 4), (5, 4), (13, 4), (9, 2)):  # 11-12 missing; overlaps are fine
        store.add_sequence("gw", "fh-01", "fhr", 3, seq, count)
    store.add_sequence("gw", "fh-01", "fhr", 3, 5, 4)  # a redelivery adds nothing
    store.add_sequence("gw", "tcb-01", "tcb", 0, 0, 1)
    store.add_sequence("gw", "tcb-01", "tcb", 1, 2, 1)  # another boot: its own series
    assert store.gaps() == [
        Gap("gw", "fh-01", "alert", NO_BOOT, 3, 4),
        Gap("gw", "fh-01", "alert", NO_BOOT, 6, 6),
        Gap("gw", "fh-01", "fhr", 3, 11, 12),
    ]
    assert str(store.gaps()[0]) == "gw/fh-01 alert: seq 3-4 missing"
    assert store.gaps()[0].missing == 2
    store.add_sequence("gw", "fh-01", "alert", NO_BOOT, 3, 1)
    store.add_sequence("gw", "fh-01", "alert", NO_BOOT, 4, 1)  # late, but here: no longer a gap
    assert [g.kind for g in store.gaps()] == ["alert", "fhr"]
    store.close()


@pytest.mark.unit
def test_sequence_of_every_stored_kind():
    assert sequence_of("alert", {"seq": 4}) == ("alert", NO_BOOT, 4, 1)
    assert sequence_of("tcb", {"boot": 2, "seq": 0}) == ("tcb", 2, 0, 1)
    obs = {"identifier": [{"value": "fh-01:3:fhr-obs:241"}],
           "valueSampledData": {"data": "140.0 E 141.2"}}  # fmt: skip
    assert sequence_of("observation", obs) == ("fhr-obs", 3, 241, 3)
    tcb_obs = {"identifier": [{"value": "tcb-01:1:tcb:4:tcb_mg_dl"}]}
    assert sequence_of("observation", tcb_obs) == ("tcb_mg_dl-obs", 1, 4, 1)
    assert sequence_of("observation", {"identifier": [{"value": "elsewhere:x"}]}) is None
