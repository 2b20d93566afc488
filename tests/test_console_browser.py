"""The web console in a real browser: Playwright for Python driving Debian's Chromium against the live app.

Covers logging in (and a wrong password), a worker resolving a ticket filed through the web chat (needs Rasa),
an admin editing and hit-testing a knowledge entry, publishing a notice and watching each group's delivery, a
viewer seeing no action buttons, and a resident's `<script>` showing as text. Every page is photographed at a
desk and a phone size under reports/screens/, and each picture is checked not to be blank.

Chromium comes from `scripts/install-browser.sh` (apt's `chromium`); without it these tests skip and say so.
"""

from __future__ import annotations

import base64
import io
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy.orm import Session, sessionmaker

from bot.auth.demo import DEMO_PASSWORD
from bot.demo import load_demo
from bot.embedded import app_server, free_port
from bot.media_store import MediaStore
from bot.settings import Settings
from grid.service import TicketService
from storage.engine import make_engine, make_session_factory, unit_of_work
from tests.servers import Chat

CHROMIUM = Path("/usr/bin/chromium")
SCREENS = Path(__file__).resolve().parent.parent / "reports" / "screens"
SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
TICKET_NUMBER = re.compile(r"GD\d{8}-\d{4}")
Factory = sessionmaker[Session]
SCRIPT = "<script>alert(1)</script>"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Chromium is not installed: run scripts/install-browser.sh (apt-get install chromium)"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed in .venv")
Page = sync_api.Page
expect = sync_api.expect


# --- the browser and the app ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    import os

    with sync_api.sync_playwright() as playwright:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def console_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, sessionmaker[Session]]]:
    """A demo database of this module's own (SQLite): the pages are the same on either database."""
    url = f"sqlite:///{tmp_path_factory.mktemp('console') / 'gridbot.db'}"
    load_demo(url, updated_by="test")
    engine = make_engine(url)
    yield url, make_session_factory(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def console_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def console_url(console_db: tuple[str, sessionmaker[Session]], console_media: Path) -> Iterator[str]:
    """The real app without Rasa (nothing here chats), lexical knowledge search (fast to start)."""
    url, _ = console_db
    settings = Settings(
        database_url=url,
        rasa_url=f"http://127.0.0.1:{free_port()}",
        app_port=free_port(),
        kb_embedding_model="none",
        media_dir=console_media,
    )
    with app_server(settings) as base:
        yield base


@pytest.fixture(scope="module")
def script_ticket(console_db: tuple[str, sessionmaker[Session]]) -> str:
    """A report whose description and reporter name are markup, as a resident could type them."""
    _, factory = console_db
    with unit_of_work(factory) as session:
        filing = TicketService(session).file_report(
            group_id="demo-grid-1",
            reporter_id=f"resident-{uuid.uuid4().hex[:6]}",
            reporter_name="<b>小王</b>",
            description=f"{SCRIPT} 楼道灯坏了<img src=x onerror=alert(2)>",
            location="9号楼1单元",
        )
        return filing.ticket.number


def new_page(browser: object, size: str = "desktop") -> Page:
    context = browser.new_context(viewport=SIZES[size], locale="zh-CN", timezone_id="Asia/Shanghai")  # type: ignore[attr-defined]
    page = context.new_page()
    page.dialogs = []  # type: ignore[attr-defined]
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))  # type: ignore[attr-defined]
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda error: page.errors.append(str(error)))  # type: ignore[attr-defined]
    return page


def login(page: Page, base: str, username: str, password: str = DEMO_PASSWORD, then: str | None = None) -> None:
    page.goto(f"{base}/console/login" + (f"?next={then}" if then else ""))
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login-submit")
    page.wait_for_url(re.compile(r"/console/(?!login)"))


def open_page(page: Page, base: str, path: str) -> None:
    page.goto(f"{base}{path}")
    page.wait_for_selector("body[data-ready='1']")


# --- screenshots ----------------------------------------------------------------------------------------------


PIXELS_JS = """async (source) => {
  const image = new Image();
  image.src = source;
  await image.decode();
  const canvas = document.createElement("canvas");
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
  const counts = new Map();
  for (let i = 0; i < data.length; i += 4) {
    const key = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
    counts.set(key, (counts.get(key) || 0) + 1);
  }
  const commonest = Math.max(...counts.values());
  return [canvas.width, canvas.height, counts.size, commonest / (data.length / 4)];
}"""


def pixel_summary(browser: object, png: bytes) -> tuple[int, int, int, float]:
    """Width, height, number of distinct colours and the commonest colour's share of the pixels.

    Decoded by Chromium itself on a blank page of its own (Pillow is not installed): a blank screenshot is one
    colour; a page with text, fields and cards has many, and no colour covers nearly all of it.
    """
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    page = browser.new_page()  # type: ignore[attr-defined]
    try:
        width, height, colours, share = page.evaluate(PIXELS_JS, "data:image/png;base64," + base64.b64encode(png).decode())
    finally:
        page.close()
    return int(width), int(height), int(colours), float(share)


def screenshot(page: Page, name: str) -> Path:
    """Save the whole page under reports/screens/ and check the picture has content."""
    SCREENS.mkdir(parents=True, exist_ok=True)
    path = SCREENS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    width, height, colours, share = pixel_summary(page.context.browser, path.read_bytes())
    assert width == page.viewport_size["width"] and height >= page.viewport_size["height"], (width, height)
    assert colours >= 16 and share < 0.97, f"{path} looks blank ({colours} colours, {share:.1%} of it one colour)"
    return path


def both_sizes(browser: object, base: str, username: str, path: str, name: str) -> None:
    """The same page at a desk and on a phone: both readable (no horizontal overflow of the page itself)."""
    for size in SIZES:
        page = new_page(browser, size)
        login(page, base, username)
        open_page(page, base, path)
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 1, f"{path} is {overflow}px wider than the {size} screen"
        screenshot(page, f"{name}-{size}")
        assert not page.errors, page.errors  # type: ignore[attr-defined]
        page.context.close()


def a_photo(browser: object, media_dir: Path) -> str:
    """A real picture in the app's media store (drawn and photographed by the browser); its /media/ address."""
    page = browser.new_page(viewport={"width": 200, "height": 200})  # type: ignore[attr-defined]
    page.set_content("<div style='width:160px;height:120px;background:linear-gradient(#fc0,#06c)'>新灯泡</div>")
    png = page.screenshot(clip={"x": 0, "y": 0, "width": 160, "height": 120})
    page.close()
    return MediaStore(media_dir, 10 * 1024 * 1024).save_image(png).url


def resolve_in_browser(browser: object, base: str, number: str, shot: str, media_dir: Path) -> None:
    """张敏 (worker-1), on a phone-sized screen, accepts the ticket and resolves it with a result and a photo."""
    page = new_page(browser, "phone")  # workers handle tickets on their phones
    login(page, base, "worker-1")
    open_page(page, base, f"/console/tickets#{number}")
    expect(page.locator("#ticket-description")).to_contain_text("楼道灯")
    page.locator("#actions form[data-action=accept] button").click()
    expect(page.locator("#ticket-status")).to_have_text("处理中")
    resolve = page.locator("#actions form[data-action=resolve]")
    resolve.locator("[name=note]").fill("已更换灯泡")
    resolve.locator("[name=photos]").fill(a_photo(browser, media_dir))
    resolve.locator("button").click()
    expect(page.locator("#ticket-status")).to_have_text("已办结待评价")
    timeline = page.locator("#timeline")
    expect(timeline.locator("li").last).to_contain_text("办结")
    expect(timeline.locator("li").last).to_contain_text("已更换灯泡")
    photo = timeline.locator(".photos img")
    expect(photo).to_have_count(1)
    photo.scroll_into_view_if_needed()
    page.wait_for_function("img => img.complete && img.naturalWidth === 160", arg=photo.element_handle())  # shown
    assert page.locator("#actions form[data-action=resolve]").count() == 0  # nothing left to resolve
    screenshot(page, shot)
    page.context.close()


# --- tests ----------------------------------------------------------------------------------------------------


def test_login_refuses_a_wrong_password_and_lets_the_right_one_in(chromium: object, console_url: str) -> None:
    for size in SIZES:
        page = new_page(chromium, size)
        page.goto(f"{console_url}/console/tickets")
        page.wait_for_url(re.compile(r"/console/login\?next="))  # no session: sent to the login, and back afterwards
        screenshot(page, f"login-{size}")
        page.fill("#username", "admin")
        page.fill("#password", "not-the-password")
        page.click("#login-submit")
        expect(page.locator("#login-error")).to_contain_text("用户名或密码错误")
        assert "/console/login" in page.url
        page.fill("#password", DEMO_PASSWORD)
        page.click("#login-submit")
        page.wait_for_url(re.compile(r"/console/tickets"))
        expect(page.locator("#who")).to_contain_text("管理员")
        page.click("#logout")
        expect(page).to_have_url(re.compile(r"/console/login$"))  # the logout's own page, not a ?next= detour
        page.context.close()


def test_a_residents_script_shows_as_text(chromium: object, console_url: str, script_ticket: str) -> None:
    page = new_page(chromium)
    login(page, console_url, "worker-1")
    open_page(page, console_url, f"/console/tickets#{script_ticket}")
    description = page.locator("#ticket-description")
    expect(description).to_contain_text(SCRIPT)
    expect(description).to_contain_text("<img src=x onerror=alert(2)>")
    expect(page.locator("#detail")).to_contain_text("<b>小王</b>")
    expect(page.locator("#ticket-rows")).to_contain_text(SCRIPT[:20])
    assert page.locator("#app script, #app img[src='x']").count() == 0
    assert page.dialogs == []  # type: ignore[attr-defined]
    screenshot(page, "ticket-script-as-text-desktop")
    page.context.close()
    both_sizes(chromium, console_url, "worker-1", f"/console/tickets#{script_ticket}", "tickets")


def test_a_viewer_sees_no_action_buttons(chromium: object, console_url: str, script_ticket: str) -> None:
    page = new_page(chromium)
    login(page, console_url, "viewer")
    open_page(page, console_url, f"/console/tickets#{script_ticket}")
    expect(page.locator("#timeline li").first).to_be_visible()
    assert page.locator("#actions").count() == 0
    assert page.locator("#detail form, #detail button").count() == 0
    open_page(page, console_url, "/console/notices")
    assert page.locator("#compose").count() == 0
    open_page(page, console_url, "/console/knowledge")
    assert page.locator("#entries, #questions, #files").count() == 0
    expect(page.locator("#hit-test")).to_be_visible()  # reading what the bot would say is allowed
    open_page(page, console_url, "/console/groups")
    assert page.locator("#group-new").count() == 0
    screenshot(page, "groups-viewer-desktop")
    page.context.close()
    # the same ticket as an admin does have actions, so their absence above is the role's doing
    admin = new_page(chromium)
    login(admin, console_url, "admin")
    open_page(admin, console_url, f"/console/tickets#{script_ticket}")
    expect(admin.locator("#actions form").first).to_be_visible()
    admin.context.close()


def test_admin_edits_an_entry_and_hit_tests_it(chromium: object, console_url: str) -> None:
    phrase = f"银发{uuid.uuid4().hex[:4]}补助去哪里领"
    page = new_page(chromium)
    login(page, console_url, "admin")
    open_page(page, console_url, "/console/knowledge")
    page.fill("#entry-search", "高龄")
    page.locator("#entries form button[type=submit]").click()
    row = page.locator("#entry-rows tr", has_text="高龄").first
    row.click()
    form = page.locator("#entry-form")
    expect(form).to_be_visible()
    title = form.locator("[name=title]").input_value()
    questions = form.locator("[name=questions]")
    questions.fill(questions.input_value() + f"\n{phrase}")
    answer = form.locator("[name=answer]")
    answer.fill(answer.input_value() + "\n（控制台测试补充）")
    page.click("#entry-save")
    expect(page.locator(".toast").last).to_contain_text("已保存")
    expect(page.locator("#history-list li").first).to_contain_text("修改")
    expect(page.locator("#entry-save")).to_contain_text("v2")
    page.fill("#hit-query", phrase)
    page.click("#hit-submit")
    first_hit = page.locator("#hit-result tbody tr").first
    expect(first_hit).to_contain_text(title)
    expect(first_hit).to_contain_text("控制台测试补充")
    screenshot(page, "knowledge-edited-desktop")
    # export, then import the file back as a dry run; a picture renamed .csv is refused by the server
    exported = page.request.get(f"{console_url}/api/v1/knowledge/export?format=yaml")
    assert exported.ok and phrase in exported.text()
    page.set_input_files("#import-file", {"name": "kb.yml", "mimeType": "application/yaml", "buffer": exported.body()})
    page.locator("#files button[type=submit]").click()
    expect(page.locator("#import-result")).to_contain_text("检查通过")
    expect(page.locator("#import-result")).to_contain_text("修改 0")
    fake = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
    page.set_input_files("#import-file", {"name": "kb.csv", "mimeType": "text/csv", "buffer": fake})
    page.locator("#files button[type=submit]").click()
    expect(page.locator("#import-result .error")).to_be_visible()
    page.context.close()
    both_sizes(chromium, console_url, "admin", "/console/knowledge", "knowledge")


def test_admin_publishes_a_notice_and_sees_each_groups_delivery(chromium: object, console_url: str) -> None:
    title = f"冬季供暖补贴开始申请 {uuid.uuid4().hex[:4]}"
    page = new_page(chromium)
    login(page, console_url, "admin")
    open_page(page, console_url, "/console/notices")
    form = page.locator("#notice-form")
    form.locator("[name=title]").fill(title)
    form.locator("[name=body]").fill("符合条件的家庭请于12月31日前到社区服务站申请。")
    form.locator("input[name=grids][value=grid-1]").check()
    form.locator("input[name=grids][value=grid-3]").check()
    page.click("#notice-submit")
    expect(page.locator("#notice-detail h2")).to_contain_text(title)
    deliveries = page.locator("#deliveries tbody tr")
    sent = page.locator("#deliveries tbody tr[data-status=sent]")
    for _ in range(40):  # the web chat paces pushes (up to 2 s each): refresh until both groups have it
        if sent.count() == 2:
            break
        page.wait_for_timeout(1000)
        page.click("#notice-refresh")
        page.wait_for_timeout(300)
    expect(deliveries).to_have_count(2)
    expect(sent).to_have_count(2)
    groups = {row.get_attribute("data-group") for row in deliveries.all()}
    assert groups == {"demo-grid-1", "demo-grid-3"}
    expect(page.locator("#notice-counts")).to_contain_text("已发送 2")
    screenshot(page, "notices-sent-desktop")
    page.context.close()
    both_sizes(chromium, console_url, "admin", "/console/notices", "notices")


def test_dashboard_groups_and_weekly_report(chromium: object, console_url: str, script_ticket: str) -> None:
    page = new_page(chromium)
    login(page, console_url, "admin")
    open_page(page, console_url, "/console/dashboard")
    assert int(page.locator("#kpi-total b").inner_text()) >= 1
    assert page.locator("#figures svg.chart").count() >= 4
    href = page.locator("#report-download").get_attribute("href")
    assert href and href.startswith("/api/v1/reports/weekly?week=")
    response = page.request.get(f"{console_url}{href}")
    assert response.status == 200 and response.body()[:4] == b"PK\x03\x04"
    book = load_workbook(io.BytesIO(response.body()))
    assert book.sheetnames[0] == "概览"
    numbers = [row[0] for row in book["工单明细"].iter_rows(min_row=2, values_only=True)]
    assert script_ticket in numbers
    # groups: an admin gives demo-grid-2 a prefix of its own
    open_page(page, console_url, "/console/groups")
    page.locator("#group-rows tr[data-id=demo-grid-2]").click()
    settings = page.locator("#settings-form")
    settings.locator("[name=prefixes]").fill("小网格")
    settings.locator("button[type=submit]").click()
    expect(page.locator("#group-rows tr[data-id=demo-grid-2]")).to_contain_text("小网格")
    screenshot(page, "groups-edited-desktop")
    page.context.close()
    both_sizes(chromium, console_url, "admin", "/console/dashboard", "dashboard")
    both_sizes(chromium, console_url, "worker-1", "/console/groups", "groups")


def test_worker_accepts_and_resolves_a_ticket(
    chromium: object, console_url: str, console_db: tuple[str, Factory], console_media: Path
) -> None:
    """The worker's loop in the browser on a ticket filed directly (the chat-filed case below needs Rasa)."""
    _, factory = console_db
    with unit_of_work(factory) as session:
        number = (
            TicketService(session)
            .file_report(
                group_id="demo-grid-1",
                reporter_id=f"resident-{uuid.uuid4().hex[:6]}",
                reporter_name="居民小王",
                description="楼道灯坏了 晚上黑乎乎的",
                location=f"{uuid.uuid4().int % 900 + 100}号楼2单元",
            )
            .ticket.number
        )
    resolve_in_browser(chromium, console_url, number, "ticket-resolved-phone", console_media)


@pytest.mark.rasa
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_worker_resolves_a_ticket_filed_in_the_web_chat(chromium: object, app_url: str) -> None:
    """A resident reports in the group through the web chat API (Rasa files it); 张敏 accepts and resolves it."""
    chat = Chat(app_url)
    sender = f"resident-{uuid.uuid4().hex[:8]}"
    place = f"{uuid.uuid4().int % 900 + 100}号楼2单元"
    try:
        asked = chat.say("楼道灯坏了 晚上黑乎乎的", group="demo-grid-1", sender=sender, name="居民小王", mention=True)
        assert asked, "the bot asked nothing"
        filed = chat.say(place, group="demo-grid-1", sender=sender, name="居民小王")
    finally:
        chat.http.close()
    found = TICKET_NUMBER.search(" ".join(r["text"] for r in filed))
    assert found, filed
    number = found.group(0)
    resolve_in_browser(chromium, app_url, number, "ticket-resolved-chat-phone", Settings().media_dir)


# --- the web chat page: pictures ------------------------------------------------------------------------------------

NOISY_PNG_JS = """([width, height]) => {
  const canvas = document.createElement("canvas");
  canvas.width = width; canvas.height = height;
  const context = canvas.getContext("2d");
  const pixels = context.createImageData(width, height);
  for (let i = 0; i < pixels.data.length; i += 4) {  // a gradient with grain: a photo's size, not a drawing's
    const x = (i / 4) % width, y = Math.floor(i / 4 / width), grain = Math.random() * 40;
    pixels.data[i] = (x * 255) / width - grain; pixels.data[i + 1] = (y * 255) / height - grain;
    pixels.data[i + 2] = 160 + grain; pixels.data[i + 3] = 255;
  }
  context.putImageData(pixels, 0, 0);
  return canvas.toDataURL("image/png").split(",")[1];
}"""


def drawn_png(browser: object, width: int, height: int) -> bytes:
    page = browser.new_page()  # type: ignore[attr-defined]
    try:
        return base64.b64decode(page.evaluate(NOISY_PNG_JS, [width, height]))
    finally:
        page.close()


def open_chat(browser: object, base: str, size: str = "desktop") -> Page:
    """The /chat page as a resident of the first group, with a fresh identity (so the pictures are this test's)."""
    page = new_page(browser, size)
    page.goto(f"{base}/chat")
    expect(page.locator("#chat-title")).not_to_have_text("请选择会话")
    page.fill("#res-id", f"resident-{uuid.uuid4().hex[:8]}")
    page.locator("#mention").uncheck()
    return page


def test_a_resident_sends_pictures_from_the_chat_page(chromium: object, console_url: str) -> None:
    """A small picture goes as it is; a photo too big for the API's body is sent shrunk as a JPEG; both show in the
    conversation as pictures (from the transcript the page polls, so they reached the server and its media store)."""
    page = open_chat(chromium, console_url)
    small = drawn_png(chromium, 120, 90)
    page.set_input_files("#file", files=[{"name": "lamp.png", "mimeType": "image/png", "buffer": small}])
    mine = page.locator("#messages .msg.in:not(.other) img")
    expect(mine).to_have_count(1)
    page.wait_for_function("img => img.complete && img.naturalWidth === 120", arg=mine.first.element_handle())
    assert mine.first.get_attribute("src").endswith(".png")  # type: ignore[union-attr]
    big = drawn_png(chromium, 1400, 1000)
    assert len(base64.b64encode(big)) > Settings().max_request_body_bytes  # refused by the API as it is
    page.set_input_files("#file", files=[{"name": "photo.png", "mimeType": "image/png", "buffer": big}])
    expect(mine).to_have_count(2)
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=mine.nth(1).element_handle())
    assert mine.nth(1).get_attribute("src").endswith(".jpg")  # type: ignore[union-attr]
    expect(page.locator("#error")).to_be_hidden()
    assert not page.errors, page.errors  # type: ignore[attr-defined]
    screenshot(page, "chat-pictures-desktop")
    page.context.close()


def test_the_chat_page_says_why_a_file_is_not_sent(chromium: object, console_url: str) -> None:
    page = open_chat(chromium, console_url, "phone")
    error = page.locator("#error")
    page.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": "不是图片".encode()}])
    expect(error).to_contain_text("只能发送 JPG、PNG、GIF 或 WebP 格式的图片")
    huge = b"\x89PNG\r\n\x1a\n" + bytes(Settings().media_max_bytes)  # beyond the media store's limit
    page.set_input_files("#file", files=[{"name": "huge.png", "mimeType": "image/png", "buffer": huge}])
    expect(error).to_contain_text("图片太大")
    broken = b"\x89PNG\r\n\x1a\n" + bytes(200_000)  # a PNG's name and header, no picture: too big to send as is
    page.set_input_files("#file", files=[{"name": "broken.png", "mimeType": "image/png", "buffer": broken}])
    expect(error).to_contain_text("不是能打开的图片")
    fake = "一段文字，名字叫 .png".encode()  # small enough to send as is: the server looks inside and refuses it
    page.set_input_files("#file", files=[{"name": "fake.png", "mimeType": "image/png", "buffer": fake}])
    expect(error).to_contain_text("服务器拒收这张图片")
    expect(page.locator("#messages .msg.in:not(.other)")).to_have_count(0)  # nothing of this resident's was sent
    expect(page.locator("#send")).to_be_enabled()  # ready for the next message
    screenshot(page, "chat-picture-refused-phone")
    page.context.close()
