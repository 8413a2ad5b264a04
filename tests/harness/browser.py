"""Debian's Chromium, headless, for Playwright (never `playwright install`: its own browser
download is not available to the tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

    from gateway.web.server import WebServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


async def new_page(browser: Browser, **options: Any) -> tuple[Page, list[str]]:
    """A new page of `browser` (Playwright's `new_page` options) and the list that collects
    the page's uncaught script errors, for a test to assert empty."""
    page = await browser.new_page(**options)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page, errors


async def submit_login(page: Page, user: str, password: str) -> None:
    """Fill in the nurse view's login form, on the page now, and send it."""
    await page.fill("input[name=user]", user)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")


async def log_in_as(page: Page, url: str, user: str, password: str, path: str = "/") -> None:
    """Open `path` of the nurse view at `url` (a page a stranger asks for sends them to the
    login form) and log in; the caller waits for what it expects to see."""
    await page.goto(url + path)
    await submit_login(page, user, password)


@asynccontextmanager
async def served_to_chromium(
    gw: Any, **web_options: Any
) -> AsyncIterator[tuple[WebServer, Browser]]:
    """The nurse view of `gw` (`WebServer` options), started, and Debian's Chromium for a test's
    pages; the server stops after them, whatever happened."""
    from playwright.async_api import async_playwright

    from gateway.web.server import WebServer

    web = WebServer(gw, **web_options)
    await web.start()
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield web, browser
            await browser.close()
    finally:
        await web.stop()


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Debian's Chromium for a test's pages, closed after them whatever happened."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()
