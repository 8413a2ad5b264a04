"""The nurse view's gateway banner (docs/nurse-view.md, "The gateway banner"): what is wrong with
the gateway's own link to the hospital, shown apart from patients' alerts.

The rule (gateway/web/gateway_warnings.py) with time passed in; then the real conditions in
Debian's Chromium: a gateway whose messages the hospital's perimon-ingest refuses (a real
Mosquitto and ingest, receipts on), and a gateway whose broker cannot be reached until a broker
comes up on its port, and a gateway waiting for receipts from a hospital whose ingest is down
until it starts. Each banner's sentence is asserted in English and Chinese, with axe-core.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime

import pytest

from devtools.broker import free_port
from gateway.app import Gateway
from gateway.config import config_from_dict
from gateway.publish.mqtt import REJECTED_WARN_S, REJECTED_WARNING
from gateway.publish.outbox import PRIO_READING, Outbox
from gateway.times import iso_time
from gateway.web import gateway_warnings
from gateway.web.gateway_warnings import MESSAGES_WAITING, WAITING_WARN_S, LinkState, warnings_of
from gateway.web.nurses import NurseAccounts
from hospital.config import IngestConfig
from hospital.ingest import Ingest
from tests.harness import region as rg
from tests.harness.axe import describe, run_axe, serious
from tests.harness.browser import chromium, log_in_as, new_page
from tests.harness.chain import gateway_config, running_gateway
from tests.harness.mqtt import start_mosquitto
from tests.harness.paths import ARTIFACTS
from tests.harness.wait import eventually_async

USER, PASSWORD = "nurse.amy", "correct horse battery"
BANNER = "#gateway-banner"
NOW = 1_800_000_000.0


def _link(**changes) -> LinkState:
    base = LinkState(status_warnings=[], rejected_at=[], rejected_kept_max=200, waiting=0,
                     oldest_waiting=None, broker_connected=True)  # fmt: skip
    return LinkState(**{**base.__dict__, **changes})


# ---- the rule, time passed in -------------------------------------------------------------


@pytest.mark.unit
def test_a_healthy_link_raises_nothing():
    assert warnings_of(_link(), NOW) == []
    # messages that wait less than WAITING_WARN_S are a reconnection, not a problem
    assert warnings_of(_link(waiting=40, oldest_waiting=NOW - WAITING_WARN_S + 1), NOW) == []


@pytest.mark.unit
def test_refusals_are_counted_over_the_status_warnings_day():
    refused = [NOW - REJECTED_WARN_S - 60, NOW - 3600, NOW - 120, NOW - 60]
    (w,) = warnings_of(_link(status_warnings=[REJECTED_WARNING], rejected_at=refused), NOW)
    assert w == {"code": REJECTED_WARNING, "count": 3, "at_least": False,
                 "since": iso_time(NOW - 3600), "last": iso_time(NOW - 60)}  # fmt: skip
    # the outbox keeps the newest copies only: at its bound there may have been more
    full = [NOW - i for i in range(1, 6)]
    (w,) = warnings_of(_link(status_warnings=[REJECTED_WARNING], rejected_at=full,
                             rejected_kept_max=5), NOW)  # fmt: skip
    assert w["count"] == 5 and w["at_least"] is True
    # the gateway status decides (one rule, gateway/publish/mqtt.py): without its warning, none
    assert warnings_of(_link(rejected_at=refused), NOW) == []


@pytest.mark.unit
def test_messages_waiting_say_whether_the_broker_is_there():
    old = NOW - WAITING_WARN_S
    (down,) = warnings_of(_link(waiting=12, oldest_waiting=old, broker_connected=False), NOW)
    assert down == {"code": MESSAGES_WAITING, "count": 12, "since": iso_time(old),
                    "broker_connected": False}  # fmt: skip
    (slow,) = warnings_of(_link(waiting=12, oldest_waiting=old), NOW)
    assert slow["broker_connected"] is True
    both = warnings_of(_link(status_warnings=[REJECTED_WARNING], rejected_at=[NOW - 5],
                             waiting=1, oldest_waiting=old), NOW)  # fmt: skip
    assert [w["code"] for w in both] == [REJECTED_WARNING, MESSAGES_WAITING]


@pytest.mark.unit
def test_a_status_warning_the_banner_has_no_words_for_is_passed_on_by_its_code():
    later = warnings_of(_link(status_warnings=["disk_nearly_full", REJECTED_WARNING],
                              rejected_at=[NOW - 5]), NOW)  # fmt: skip
    assert [w["code"] for w in later] == [REJECTED_WARNING, "disk_nearly_full"]
    assert later[1] == {"code": "disk_nearly_full"}


@pytest.mark.unit
def test_the_outbox_says_when_its_oldest_message_was_stored():
    ob = Outbox(":memory:", 1 << 20, 0)
    assert ob.oldest_created() is None
    first = ob.add("perimon/v1/gw/device/tcb-01/tcb", b"{}", msg_id="tcb-01:1:tcb:1", retain=False,
                   priority=PRIO_READING, now=NOW - 600)  # fmt: skip
    ob.add("perimon/v1/gw/device/tcb-01/tcb", b"{}", msg_id="tcb-01:1:tcb:2", retain=False,
           priority=PRIO_READING, now=NOW - 60)  # fmt: skip
    assert ob.oldest_created() == NOW - 600
    ob.delivered([first], 60.0, now=NOW)  # delivered, waiting for its receipt: still here
    assert ob.oldest_created() == NOW - 600
    ob.confirm(["tcb-01:1:tcb:1"])
    assert ob.oldest_created() == NOW - 60


# ---- the page, with the real conditions ---------------------------------------------------


def _gateway(tmp_path, mqtt: dict | None = None) -> Gateway:
    NurseAccounts(tmp_path / "gw" / "nurses.json").add(USER, PASSWORD)
    return Gateway(config_from_dict(gateway_config(tmp_path, mqtt=mqtt, web=True)))


def _hhmm(iso: str) -> str:
    """A gateway time as the page writes it today, 24-hour, in this machine's time zone (the
    browser's too)."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone().strftime("%H:%M")


async def _banner(page, code: str) -> str:
    item = f"{BANNER} li[data-code='{code}']"
    await page.wait_for_selector(item, timeout=20000)
    return str(await page.text_content(item))


async def _axe_clean(page) -> None:
    blocking = serious(await run_axe(page))
    assert not blocking, describe(blocking)


@pytest.mark.system
def test_the_banner_says_the_hospital_refuses_messages(broker, tmp_path):
    """A reading the hospital's ingest refuses as not of the contract (a TcB reading without
    `boot`): the gateway keeps it aside, and the nurse is told, apart from patients' alerts."""
    ingest = Ingest(IngestConfig(host=broker.host, port=broker.port, worker="w1",
                                 db=str(tmp_path / "ingest.sqlite"), ack_alerts=False))  # fmt: skip
    ingest.start()
    assert ingest.ready.wait(10)
    gw = _gateway(tmp_path, {"host": broker.host, "port": broker.port, "await_receipts": True,
                             "receipt_timeout_s": 2.0})  # fmt: skip
    seen: dict = {}

    async def main():
        async with running_gateway(gw):
            await eventually_async(lambda: gw.publisher.subscribed.is_set(), 10, "no SUBACK")
            (good,) = rg.outbox("gw-test", 1, devices=1, observations=False)
            bad = json.loads(good.body)
            del bad["boot"]  # not of the contract: docs/schemas/tcb.schema.json requires it
            gw.publisher.publish(tuple(good.topic.split("/")[3:]), bad)
            await eventually_async(lambda: len(gw.outbox.rejected()) == 1, 15,
                                   lambda: f"{gw.outbox.rows} rows, {ingest.counts}")  # fmt: skip
            seen["api"] = gateway_warnings.read_warnings(gw.publisher)
            async with chromium() as browser:
                page, errors = await new_page(browser, viewport={"width": 1280, "height": 900},
                                              locale="en-GB")  # fmt: skip
                await log_in_as(page, gw.web.url, USER, PASSWORD)
                seen["en"] = await _banner(page, REJECTED_WARNING)
                seen["role"] = await page.get_attribute(BANNER, "role")
                seen["live"] = await page.get_attribute(BANNER, "aria-live")
                seen["alerts_waiting"] = await page.get_attribute("#alert-banner", "data-count")
                seen["shown"] = await page.is_visible(BANNER)
                await page.screenshot(path=str(ARTIFACTS / "gateway-banner-rejects.png"))
                await _axe_clean(page)
                await page.click("#lang-toggle")
                await page.wait_for_selector(f"{BANNER} li:has-text('医院系统')")
                seen["zh"] = await _banner(page, REJECTED_WARNING)
                seen["label_zh"] = await page.text_content(f"{BANNER} .gw-label")
                await _axe_clean(page)
                seen["errors"] = errors

    ARTIFACTS.mkdir(exist_ok=True)
    try:
        asyncio.run(main())
    finally:
        ingest.stop()
        ingest.store.close()
    (w,) = seen["api"]
    assert w["code"] == REJECTED_WARNING and w["count"] == 1 and not w["at_least"]
    at = _hhmm(w["since"])
    assert seen["en"] == (f"The hospital's system is refusing this gateway's messages: 1 message "
                          f"since {at}. They still show here but may be missing at the hospital. "
                          "Call IT.")  # fmt: skip
    assert seen["zh"].startswith(f"医院系统正在拒收本网关的消息：自 {at} 起1 条。")
    assert "请联系信息科（IT）" in seen["zh"] and seen["label_zh"] == "网关:"
    # polite, visible, and not a patient's alert: the alert banner still has none waiting
    assert (seen["role"], seen["live"], seen["shown"]) == ("status", "polite", True)
    assert seen["alerts_waiting"] == "0"
    assert seen["errors"] == []


@pytest.mark.system
def test_the_banner_says_the_hospital_cannot_be_reached_until_it_can(tmp_path, monkeypatch):
    """A broker that is not there: what the gateway stores waits in its outbox, and after
    WAITING_WARN_S (1 s here: the rule, not the wait, is under test) the banner says so; a
    broker started on that port takes the messages, and the banner empties."""
    monkeypatch.setattr(gateway_warnings, "WAITING_WARN_S", 1.0)
    port = free_port()
    gw = _gateway(tmp_path, {"host": "127.0.0.1", "port": port})
    seen: dict = {}

    async def main():
        async with running_gateway(gw):
            gw.publisher.publish(("device", "tcb-01", "status"), {"device_id": "tcb-01"},
                                 retain=True)  # fmt: skip
            async with chromium() as browser:
                page, errors = await new_page(browser, viewport={"width": 390, "height": 844},
                                              locale="en-GB")  # fmt: skip
                await log_in_as(page, gw.web.url, USER, PASSWORD)
                seen["en"] = await _banner(page, MESSAGES_WAITING)
                seen["api"] = gateway_warnings.read_warnings(gw.publisher)
                await page.screenshot(path=str(ARTIFACTS / "gateway-banner-unreachable.png"))
                await _axe_clean(page)
                await page.click("#lang-toggle")
                await page.wait_for_selector(f"{BANNER} li:has-text('网关无法连接')")
                seen["zh"] = await _banner(page, MESSAGES_WAITING)
                broker = start_mosquitto(tmp_path / "late-broker", port)
                try:
                    await eventually_async(lambda: gw.outbox.rows == 0, 30, "not sent")
                    await page.wait_for_selector(
                        f"{BANNER}[data-count='0']", state="attached", timeout=20000
                    )
                    seen["after"] = await page.text_content(BANNER)
                    seen["after_on"] = await page.get_attribute(BANNER, "class")
                finally:
                    broker.stop()
                seen["errors"] = errors

    ARTIFACTS.mkdir(exist_ok=True)
    asyncio.run(main())
    (w,) = seen["api"]
    assert w["code"] == MESSAGES_WAITING and w["broker_connected"] is False and w["count"] >= 1
    at = _hhmm(w["since"])
    m = re.fullmatch(r"The gateway cannot reach the hospital's system: (\d+) messages? waiting "
                     rf"since {at}\. They are kept on the gateway and sent when the link is back\. "
                     r"Call IT if this lasts\.", seen["en"])  # fmt: skip
    assert m is not None, seen["en"]
    assert re.fullmatch(rf"网关无法连接医院系统：自 {at} 起有 \d+ 条消息等待发送。消息保存在网关上，"
                        r"连接恢复后会发送。如持续，请联系信息科（IT）。", seen["zh"]), seen["zh"]  # fmt: skip
    assert seen["after"] == "" and "on" not in (seen["after_on"] or "").split()
    assert seen["errors"] == []


@pytest.mark.system
def test_the_banner_says_messages_are_delayed_while_the_hospital_confirms_none(
    broker, tmp_path, monkeypatch
):
    """The broker is there but the hospital's ingest is not: with receipts on, a reading waits
    in the outbox for a receipt that does not come, and after WAITING_WARN_S (1 s here) the
    banner says messages are delayed; perimon-ingest started, the reading sent again is stored
    and confirmed, and the banner empties."""
    monkeypatch.setattr(gateway_warnings, "WAITING_WARN_S", 1.0)
    gw = _gateway(tmp_path, {"host": broker.host, "port": broker.port, "await_receipts": True,
                             "receipt_timeout_s": 1.0})  # fmt: skip
    seen: dict = {}

    async def main():
        async with running_gateway(gw):
            (reading,) = rg.outbox("gw-test", 1, devices=1, observations=False)
            gw.publisher.publish(tuple(reading.topic.split("/")[3:]), json.loads(reading.body))
            await eventually_async(lambda: gw.outbox.awaiting() == 1, 10, "not delivered")
            async with chromium() as browser:
                page, errors = await new_page(browser, viewport={"width": 1024, "height": 768},
                                              locale="en-GB")  # fmt: skip
                await log_in_as(page, gw.web.url, USER, PASSWORD)
                seen["en"] = await _banner(page, MESSAGES_WAITING)
                seen["api"] = gateway_warnings.read_warnings(gw.publisher)
                await page.click("#lang-toggle")
                await page.wait_for_selector(f"{BANNER} li:has-text('发往医院的消息延迟')")
                seen["zh"] = await _banner(page, MESSAGES_WAITING)
                ingest = Ingest(IngestConfig(host=broker.host, port=broker.port, worker="w1",
                                             db=str(tmp_path / "ingest.sqlite"),
                                             ack_alerts=False))  # fmt: skip
                ingest.start()
                try:
                    assert ingest.ready.wait(10)
                    await eventually_async(lambda: gw.outbox.rows == 0, 30,
                                           lambda: f"{gw.outbox.rows} rows, {ingest.counts}")  # fmt: skip
                    await page.wait_for_selector(f"{BANNER}[data-count='0']", state="attached",
                                                 timeout=20000)  # fmt: skip
                    seen["after"] = await page.text_content(BANNER)
                finally:
                    ingest.stop()
                    ingest.store.close()
                seen["errors"] = errors

    asyncio.run(main())
    (w,) = seen["api"]
    assert w == {"code": MESSAGES_WAITING, "count": 1, "since": w["since"],
                 "broker_connected": True}  # fmt: skip
    at = _hhmm(w["since"])
    assert seen["en"] == (f"Messages to the hospital are delayed: 1 waiting since {at}. "
                          "Call IT if this lasts.")  # fmt: skip
    assert seen["zh"] == (f"发往医院的消息延迟：自 {at} 起有 1 条等待发送。"
                          "如持续，请联系信息科（IT）。")  # fmt: skip
    assert seen["after"] == "" and seen["errors"] == []
