"""End to end in headless Chromium: sign-in, keys, the overview, the request log and its data-flow view,
revocation, knowledge bases, the playground — and a screenshot of every page into docs/console/."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.console.conftest import ADMIN_KEY, SHOTS
from tests.helpers import RunningServer

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


class Console:
    """One signed-in browser context."""

    def __init__(self, browser: Any, server: RunningServer, key: str, viewport: dict[str, int] = DESKTOP) -> None:
        self.base = server.base_url
        self.context = browser.new_context(viewport=viewport, timezone_id="Europe/Berlin")
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: d.accept())
        self.page.goto(f"{self.base}/console/")
        self.page.fill("#key", key)
        self.page.click("form button[type=submit]")
        self.page.wait_for_selector("nav.nav")

    def open(self, route: str) -> Any:
        self.page.goto(f"{self.base}/console/#/{route}")
        self.page.wait_for_selector("main h1")
        return self.page

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.wait_for_timeout(300)  # charts draw on the next frame
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=name != "phone-overview")

    def close(self) -> None:
        assert self.errors == [], self.errors
        self.context.close()


@pytest.fixture(scope="module")
def admin(browser: Any, console_server: RunningServer) -> Iterator[Console]:
    console = Console(browser, console_server, ADMIN_KEY)
    yield console
    console.close()


def chat(server: RunningServer, key: str, text: str = "Say hello in three words.") -> httpx.Response:
    body = {"model": "default", "messages": [{"role": "user", "content": text}], "max_tokens": 12}
    return httpx.post(
        f"{server.base_url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=120
    )


def admin_api(server: RunningServer, method: str, path: str, **kw: Any) -> Any:
    resp = httpx.request(
        method, server.base_url + path, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30, **kw
    )
    resp.raise_for_status()
    return resp.json()


def test_admin_creates_a_key_sees_it_once_and_follows_its_requests_to_the_data_flow(
    admin: Console, console_server: RunningServer
) -> None:
    page = admin.open("keys")
    page.fill("input[name=tenant_name]", "browser-co")
    page.click("form[aria-label='Create a tenant'] button")
    page.locator("td", has_text="browser-co").wait_for()
    page.select_option("select[aria-label='Privacy policy of browser-co']", "local_only")
    page.locator("select[aria-label='Privacy policy of browser-co'] option[selected]", has_text="local_only").wait_for(
        state="attached"
    )
    tenants = admin_api(console_server, "GET", "/admin/tenants")["data"]
    assert next(t for t in tenants if t["name"] == "browser-co")["privacy"] == "local_only"
    page.select_option("select[name=key_tenant]", label="browser-co")
    page.fill("input[name=key_name]", "ci-key")
    page.click("form[aria-label='Create a key'] button")
    secret = page.locator("#new-key").inner_text()
    assert secret.startswith("om-")
    assert page.locator("button:has-text('Copy')").is_visible()
    admin.shot("keys")
    page.reload()
    page.locator("td", has_text="ci-key").wait_for()
    assert secret not in page.content()  # shown once
    assert page.evaluate("Object.keys(localStorage).length + Object.keys(sessionStorage).length") == 0
    assert "openmaas_console" not in page.evaluate("document.cookie")  # HttpOnly
    cookie = next(c for c in admin.context.cookies() if c["name"] == "openmaas_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    ids = [chat(console_server, secret).headers["x-request-id"] for _ in range(2)]

    page = admin.open("overview")
    page.locator(".card", has_text="Requests").wait_for()  # (wait_for_function would need 'unsafe-eval': CSP says no)
    requests_card = page.locator(".card", has_text="Requests").locator(".value").inner_text()
    assert int(requests_card.replace(",", "").replace(".", "")) >= 2
    assert page.locator("table", has_text="browser-co").count() == 1  # by tenant
    assert page.locator(".uplot").count() >= 5
    admin.shot("overview")

    page = admin.open("requests")
    link = page.locator(f"a:has-text('{ids[-1]}')")
    link.wait_for()
    row = page.locator("tr", has=link)
    assert "smollm2-135m" in row.inner_text() and "local" in row.inner_text()
    admin.shot("requests")
    link.click()
    page.wait_for_selector("section.panel")
    flow = page.locator("section.panel").first.inner_text()
    assert "smollm2-135m" in flow and "local" in flow and "kept" in flow and "Candidates" in flow
    assert re.search(r"\$0\.00", flow)
    admin.shot("data-flow")

    # rotate it: a new secret, shown once; the old one stops working
    page = admin.open("keys")
    page.locator("tr", has_text="ci-key").locator("button:has-text('Rotate')").click()
    page.locator("#new-key").wait_for()
    rotated = page.locator("#new-key").inner_text()
    assert rotated.startswith("om-") and rotated != secret
    assert chat(console_server, secret).status_code == 401
    assert chat(console_server, rotated).status_code == 200
    # revoke it in the console: its next request is refused
    page.locator("tr", has_text="ci-key").locator("button:has-text('Revoke')").click()
    page.locator("tr", has_text="ci-key").locator("text=revoked").wait_for()
    refused = chat(console_server, rotated)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "key_revoked"


def test_models_usage_and_tools_pages_render_live_data(admin: Console) -> None:
    page = admin.open("models")
    page.locator("td", has_text="smollm2-135m").first.wait_for()
    assert page.locator("tr", has_text="smollm2-135m").locator(".badge", has_text="closed").count() == 1
    admin.shot("models")
    page = admin.open("usage")
    page.locator("table").wait_for()
    assert "Requests" in page.locator("table").inner_text()
    with page.expect_download() as download:
        page.click("button:has-text('Export CSV')")
    path = download.value.path()
    assert Path(path).read_text().startswith("model,day,requests")
    admin.shot("usage")
    page = admin.open("tools")
    row = page.locator("tr", has_text="time__")
    row.wait_for()
    assert "ready" in row.inner_text() and "local" in row.inner_text()
    admin.shot("tools")


def test_a_tenant_key_sees_only_its_tenant(browser: Any, console_server: RunningServer) -> None:
    keys = {}
    for name in ("iso-a", "iso-b"):
        admin_api(console_server, "POST", "/admin/tenants", json={"name": name})
        keys[name] = admin_api(console_server, "POST", "/admin/keys", json={"tenant": name, "name": f"{name}-key"})[
            "key"
        ]
    ids = {name: chat(console_server, key).headers["x-request-id"] for name, key in keys.items()}
    console = Console(browser, console_server, keys["iso-a"])
    try:
        page = console.open("requests")
        page.locator(f"a:has-text('{ids['iso-a']}')").wait_for()
        assert ids["iso-b"] not in page.content()
        assert page.locator("input[name=tenant]").count() == 0  # no tenant filter for a tenant
        page = console.open("keys")
        page.locator("td", has_text="iso-a-key").wait_for()
        assert "iso-b" not in page.locator("main").inner_text()
        assert page.locator("form[aria-label='Create a key']").count() == 0
        page.goto(f"{console.base}/console/#/requests/{ids['iso-b']}")
        page.locator(".error").wait_for()
        assert "No request" in page.locator(".error").inner_text()
    finally:
        console.close()


def test_a_knowledge_base_upload_and_search_and_a_streamed_playground_answer(
    browser: Any, console_server: RunningServer, tmp_path: Path
) -> None:
    admin_api(console_server, "POST", "/admin/tenants", json={"name": "kb-co"})
    key = admin_api(console_server, "POST", "/admin/keys", json={"tenant": "kb-co"})["key"]
    console = Console(browser, console_server, key)
    try:
        page = console.open("kbs")
        page.fill("input[name=kb_name]", "handbook")
        page.click("form[aria-label='Create a knowledge base'] button")
        page.wait_for_selector("form[aria-label='Upload documents']")
        doc = tmp_path / "leave-policy.md"
        doc.write_text(
            "# Leave policy\n\nEmployees get 28 days of paid leave per year. Unused leave carries over until March.\n\n"
            "# Expenses\n\nTravel expenses are reimbursed within 14 days of a receipt being filed.\n"
        )
        page.set_input_files("input[type=file]", str(doc))
        page.click("form[aria-label='Upload documents'] button")
        page.locator("td", has_text="leave-policy.md").wait_for(timeout=60_000)
        assert page.get_attribute("[role=progressbar]", "aria-valuenow") == "100"
        page.fill("input[name=query]", "how many days of paid leave")
        page.click("form[role=search] button")
        results = page.locator("table", has_text="Fused score")
        results.wait_for()
        text = results.inner_text()
        assert "28 days" in text and re.search(r"(dense|sparse|bm25|vector)\w* rank", text, re.I)
        console.shot("knowledge-bases")

        page = console.open("playground")
        page.locator("select[name=model] option").first.wait_for(state="attached")
        page.fill("textarea[name=prompt]", "Name one colour.")
        page.fill("input[name=max_tokens]", "16")
        page.click("form button[type=submit]")
        page.locator(".meta", has_text="Route:").wait_for(timeout=120_000)
        assert page.locator(".msg.assistant").inner_text().strip()
        page.locator(".meta .cost", has_text="$").wait_for(timeout=30_000)
        meta = page.locator(".meta").inner_text()
        assert "chosen=smollm2-135m" in meta and "out tokens" in meta
        console.shot("playground")
    finally:
        console.close()


def test_the_console_fits_a_phone_and_signs_out(browser: Any, console_server: RunningServer) -> None:
    console = Console(browser, console_server, ADMIN_KEY, viewport=PHONE)
    try:
        page = console.open("overview")
        page.locator(".cards, .empty").first.wait_for()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"] + 1  # no sideways scrolling of the page (tables scroll in their box)
        console.shot("phone-overview")
        page.reload()
        page.locator("nav.nav").wait_for()
        page.keyboard.press("Tab")  # keyboard: the skip link first, then the navigation
        assert page.evaluate("document.activeElement.className") == "skip"
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Overview"
        page.click("button:has-text('Sign out')")
        page.wait_for_selector("#key")
        started = time.time()
        after = httpx.get(
            f"{console.base}/admin/overview", cookies={c["name"]: c["value"] for c in console.context.cookies()}
        )
        assert after.status_code in (401, 403) and time.time() - started < 30
    finally:
        console.close()


def test_the_embedded_default_opens_in_open_mode_without_a_key(browser: Any, tmp_path: Path) -> None:
    """`make serve` on a fresh machine: no admin key, no API key — the console opens without a key (reads only)."""
    from tests.helpers import start_server

    server = start_server("console-open", tmp_path, None, env={"OPENMAAS_ADMIN_KEY": ""})
    context = browser.new_context(viewport=DESKTOP)
    try:
        body = {"model": "default", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
        sent = httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=120)
        page = context.new_page()
        page.goto(f"{server.base_url}/console")  # the redirect to /console/
        page.click("#open-mode")
        page.locator(".card", has_text="Requests").wait_for()
        page.goto(f"{server.base_url}/console/#/requests")
        page.locator(f"a:has-text('{sent.headers['x-request-id']}')").wait_for()
        page.goto(f"{server.base_url}/console/#/keys")
        page.locator("text=Open mode: start the gateway with OPENMAAS_ADMIN_KEY set").wait_for()
    finally:
        context.close()
        server.stop()
