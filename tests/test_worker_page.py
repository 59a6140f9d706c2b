"""The worker page (/worker/) in a real browser: Debian's chromium driven by Playwright, against
`marketplace serve` on PostgreSQL. Screenshots of each state go to the test's tmp folder (and
to $WORKER_PAGE_SCREENSHOTS when set, e.g. docs/worker-page to refresh the README's pictures).

Box, polygon, keypoint and multi-label tasks run against the server too: what the page draws
is checked by the server (a refused box is shown beside it) and stored. The lease's pay fields
and a countdown to a short lease are shown from a task fulfilled in the browser.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from marketplace.client import Client
from tests.live import LiveServer, live_fixture  # noqa: F401 - the `live` fixture

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# CI (CI=true) installs chromium (.ci/run), so there a missing browser fails instead of skipping.
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not os.environ.get("CI"), reason="needs Debian's chromium (.ci/run installs it)"
)
LABELS = ["cat", "dog", "bird"]
COLOURS = {"cat": "#e8a33d", "dog": "#6b8e23", "bird": "#4682b4"}


def picture(label: str, n: int, width: int = 320, height: int = 200) -> str:
    """A small SVG as a data URL: the page shows real images without any network."""
    svg = (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}'>"
        f"<rect width='100%' height='100%' fill='{COLOURS[label]}'/>"
        "<text x='50%' y='55%' font-size='40' text-anchor='middle' fill='white' font-family='sans-serif'>"
        f"{label} {n}</text>"
        "</svg>"
    )
    return "data:image/svg+xml," + svg.replace("#", "%23")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Shots:
    """Screenshots named by state, in the test's folder (and the README's folder when asked)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.keep = Path(os.environ["WORKER_PAGE_SCREENSHOTS"]) if os.environ.get("WORKER_PAGE_SCREENSHOTS") else None

    def __call__(self, page: Any, name: str) -> None:
        path = self.folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        if self.keep:
            self.keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, self.keep / path.name)


@pytest.fixture
def shots(tmp_path: Path) -> Shots:
    return Shots(tmp_path)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    # HTTP error statuses are part of the tests ("Failed to load resource"); script errors and
    # CSP refusals ("Refused to ...") are not.
    opened.on(
        "console",
        lambda m: problems.append(m.text) if m.type == "error" and not m.text.startswith("Failed to load") else None,
    )
    opened.problems = problems
    yield opened
    context.close()
    assert not problems, problems  # no script errors, no CSP violations


def image_job(live: LiveServer, items: int = 3, **overrides: Any) -> tuple[Client, dict[str, Any]]:
    boss = Client(live.url, live.key("requester", "req"))
    live.fund(boss.me()["id"], 100_000)
    spec = {
        "title": "Which animal is it?",
        "instructions": "Look at the picture and choose the animal shown.",
        "annotation": {"type": "classification", "labels": LABELS},
        "overlap": 1,
        "golden_ratio": 0.0,
        "items_per_task": items,
        "reward_cents": 3,
        "budget_cents": 10_000,
        "aggregation": "majority_vote",
        "acceptance": {"auto_accept_seconds": 0},
        **overrides,
    }
    job = boss.create_job(spec)
    truth = [LABELS[n % 3] for n in range(items)]
    boss.add_items(job["id"], [{"data": {"image_url": picture(t, n), "n": n}} for n, t in enumerate(truth)])
    boss.launch(job["id"])
    return boss, job


def sign_in(page: Any, live: LiveServer, key: str) -> None:
    page.goto(f"{live.url}/worker/")
    page.get_by_label("Worker key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Next task").wait_for()


def shown_n(page: Any) -> int:
    """The `n` field of the item on screen (the page lists an item's plain fields)."""
    return int(page.locator("#item dd").first.inner_text())


def test_a_worker_signs_in_answers_a_classification_task_and_is_paid_for_it(
    page: Any, live: LiveServer, shots: Shots
) -> None:
    image_job(live)
    key = live.key("worker", "ada")
    page.goto(f"{live.url}/worker/")
    shots(page, "1-sign-in")
    sign_in(page, live, key)
    assert key not in page.url and page.evaluate("sessionStorage.getItem('marketplace.worker.key')") == key
    assert page.locator("#worker-key").input_value() == ""
    assert page.locator("#me-earned").inner_text() == "0.00 USD"

    page.get_by_role("button", name="Next task").click()
    page.get_by_role("heading", name="Which animal is it?").wait_for()
    assert "Look at the picture" in page.locator("#task-instructions").inner_text()
    assert page.get_by_role("timer").inner_text().startswith(("9:5", "10:0"))
    shots(page, "2-classification-task")
    chosen: dict[int, str] = {}
    for step in range(3):
        n = shown_n(page)
        label = LABELS[n % 3] if n != 1 else "bird"  # one answer differs from the picture, as people do
        if step == 0:
            page.keyboard.press(str(LABELS.index(label) + 1))  # the shortcut
        else:
            page.get_by_role("button", name=label, exact=True).click()
        chosen[n] = label
    assert page.locator("#item-position").inner_text().endswith("3 answered")
    shots(page, "3-answered")
    page.get_by_role("button", name="Submit").click()
    page.get_by_text("No work for you right now").wait_for()

    assert {data["n"]: label for data, label in live.answers_of(key)} == chosen  # exactly what was chosen
    assert sorted(chosen) == [0, 1, 2]
    live.run_background_jobs()  # aggregation, then acceptance (auto_accept_seconds 0): the task is paid
    page.reload()  # still signed in (sessionStorage)
    page.get_by_role("button", name="Next task").wait_for()
    assert page.locator("#me-earned").inner_text() == "0.09 USD"  # 3 items at 3 cents
    assert page.locator("#me-pending").inner_text() == "0.09 USD"
    page.get_by_role("button", name="Next task").click()
    page.get_by_text("No work for you right now").wait_for()
    shots(page, "4-no-work")


def test_a_refused_answer_shows_the_servers_message_next_to_its_item(page: Any, live: LiveServer, shots: Shots) -> None:
    image_job(live)
    key = live.key("worker", "bob")
    sign_in(page, live, key)
    sent: list[dict[str, Any]] = []

    def tamper(route: Any) -> None:
        """Bad input from the page: the server must refuse it, not trust it."""
        body = json.loads(route.request.post_data)
        body["answers"][1]["label"] = "horse"
        sent.append({"body": body, "key": route.request.headers.get("idempotency-key")})
        route.continue_(post_data=json.dumps(body))

    page.route("**/v1/assignments/*/submit", tamper)
    page.get_by_role("button", name="Next task").click()
    for _ in range(3):
        page.get_by_role("button", name=LABELS[shown_n(page) % 3], exact=True).click()
    page.get_by_role("button", name="Submit").click()
    alert = page.locator("#item-error")
    alert.wait_for()
    assert "label" in alert.inner_text() and "not one of the labels" in alert.inner_text()
    assert page.locator("#item-position").inner_text().startswith("Item 2 of 3")  # the item it names
    assert "Not accepted" in page.locator("#task-error").inner_text()
    shots(page, "5-refused")
    assert live.answers_of(key) == []  # nothing of that submit was stored

    page.unroute("**/v1/assignments/*/submit")
    page.get_by_role("button", name="Submit").click()  # the answers are still there
    page.get_by_text("No work for you right now").wait_for()
    assert sorted(label for _, label in live.answers_of(key)) == sorted(LABELS)
    assert sent[0]["key"]


def answer_the_only_task(page: Any) -> None:
    """Next task, each of its 3 items by its true label, Submit; then the page finds no more work."""
    page.get_by_role("button", name="Next task").click()
    for _ in range(3):
        page.get_by_role("button", name=LABELS[shown_n(page) % 3], exact=True).click()
    page.get_by_role("button", name="Submit").click()
    page.get_by_text("No work for you right now").wait_for(timeout=15_000)


def test_a_submit_lost_on_the_network_is_sent_again_with_the_same_key(page: Any, live: LiveServer) -> None:
    image_job(live)
    key = live.key("worker", "cy")
    sign_in(page, live, key)
    keys: list[str] = []

    def lose_the_first(route: Any) -> None:
        keys.append(route.request.headers["idempotency-key"])
        if len(keys) == 1:
            route.abort("failed")  # as a dropped connection does
        else:
            route.continue_()

    page.route("**/v1/assignments/*/submit", lose_the_first)
    answer_the_only_task(page)
    assert len(keys) == 2 and keys[0] == keys[1]  # retried by itself, with the same key
    assert len(live.answers_of(key)) == 3  # stored once


def test_a_lease_lost_on_the_network_is_asked_again_and_gets_the_same_task(page: Any, live: LiveServer) -> None:
    """The first lease reaches the server (which leases the job's only task) and its answer is
    lost; the page asks again with the same key and gets that task (a new lease would find
    nothing: the job's 3 items are held by the first)."""
    image_job(live)
    key = live.key("worker", "lee")
    sign_in(page, live, key)
    keys: list[str] = []
    leased: list[int] = []

    def lose_the_first_answer(route: Any) -> None:
        keys.append(route.request.headers["idempotency-key"])
        if len(keys) == 1:
            leased.append(route.fetch().json()["id"])  # the server leased it...
            route.abort("failed")  # ...and the answer never arrives
        else:
            route.continue_()

    page.route("**/v1/assignments", lose_the_first_answer)
    answer_the_only_task(page)
    assert len(keys) >= 2 and keys[0] == keys[1]
    assert len(leased) == 1
    assert Client(live.url, key).assignment(leased[0])["state"] == "submitted"  # the task lost on the way
    assert len(live.answers_of(key)) == 3


def test_a_banned_account_is_told_it_cannot_take_work(page: Any, live: LiveServer, shots: Shots) -> None:
    key = live.key("worker", "dee")
    operator = Client(live.url, live.key("operator", "ops"))
    operator.ban(Client(live.url, key).me()["id"], "testing the page")
    sign_in(page, live, key)
    page.get_by_role("button", name="Next task").click()
    page.get_by_text("This account cannot take work now").wait_for()
    shots(page, "6-banned")


def test_a_phone_sized_screen_and_the_keyboard_alone_are_enough(browser: Any, live: LiveServer, shots: Shots) -> None:
    image_job(live)
    key = live.key("worker", "eve")
    context = browser.new_context(
        viewport={"width": 360, "height": 740}, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    page.goto(f"{live.url}/worker/")
    page.keyboard.press("Tab") if not page.evaluate("document.activeElement.id === 'worker-key'") else None
    page.keyboard.type(key)
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Next task").wait_for()
    assert page.evaluate("document.activeElement.textContent") == "Next task"
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Which animal is it?").wait_for()
    for _ in range(3):
        page.keyboard.press(str(shown_n(page) % 3 + 1))
    assert page.evaluate("document.activeElement.textContent") == "Submit"
    shots(page, "7-phone")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360  # nothing wider than the screen
    for name in ("Submit", "Skip", "Previous item", "Next item"):
        box = page.get_by_role("button", name=name).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 360 and box["height"] >= 44
    page.keyboard.press("Enter")
    page.get_by_text("No work for you right now").wait_for()
    assert len(live.answers_of(key)) == 3
    context.close()


def test_the_page_is_served_with_its_libraries_and_safe_headers(live: LiveServer) -> None:
    bare = httpx.get(f"{live.url}/worker")
    assert bare.status_code == 308 and bare.headers["Location"].endswith("/worker/")
    index = httpx.get(f"{live.url}/worker/")
    assert index.status_code == 200 and index.headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in index.headers["Content-Security-Policy"]
    assert index.headers["Referrer-Policy"] == "no-referrer"
    for path in ("app.js", "vendor/annotorious-3.8.10/annotorious.js", "vendor/konva-10.9.1/konva.min.js"):
        asset = httpx.get(f"{live.url}/worker/{path}")
        assert asset.status_code == 200 and "javascript" in asset.headers["Content-Type"], path
    assert httpx.get(f"{live.url}/worker/..%2F..%2Fconfig.py").status_code == 404  # nothing outside the page's folder
    assert httpx.get(f"{live.url}/worker/..%2Fworker_page.py").status_code == 404
    assert httpx.get(f"{live.url}/worker/nothing.js").status_code == 404


def mocked_task(kind: str, annotation: dict[str, Any]) -> dict[str, Any]:
    expires = datetime.now(UTC) + timedelta(minutes=10)
    return {
        "id": 999,
        "kind": "task",
        "state": "leased",
        "expires_at": expires.isoformat(),
        "job": {"id": 5, "title": f"Draw: {kind}", "instructions": "Outline every animal.", "annotation": annotation},
        "items": [{"id": 41, "data": {"image_url": picture("cat", 0), "width": 320, "height": 200}}],
        "pay": {"per_item_cents": 4, "total_cents": 4},
    }


def drawing_job(live: LiveServer, annotation: dict[str, Any], items: list[dict[str, Any]] | None = None) -> None:
    """A job on the server: one 320x200 picture (or the given items), one answer each."""
    boss = Client(live.url, live.key("requester", "req"))
    live.fund(boss.me()["id"], 100_000)
    items = items or [{"data": {"image_url": picture("cat", 0), "width": 320, "height": 200}}]
    job = boss.create_job(
        {
            "title": f"Draw: {annotation['type']}",
            "instructions": "Outline every animal.",
            "annotation": annotation,
            "overlap": 1,
            "golden_ratio": 0.0,
            "items_per_task": len(items),
            "reward_cents": 4,
            "budget_cents": 10_000,
        }
    )
    boss.add_items(job["id"], items)
    boss.launch(job["id"])


def take_task(page: Any, live: LiveServer, annotation: dict[str, Any], **job: Any) -> tuple[str, list[dict[str, Any]]]:
    """Post a job, sign a new worker in and lease its task on the page; (the worker's key, the
    submits the page sends: body and Idempotency-Key, on their way to the server)."""
    drawing_job(live, annotation, **job)
    sent: list[dict[str, Any]] = []

    def record(route: Any) -> None:
        sent.append({"body": json.loads(route.request.post_data), "key": route.request.headers.get("idempotency-key")})
        route.continue_()

    page.route("**/v1/assignments/*/submit", record)
    key = live.key("worker", "drawer")
    sign_in(page, live, key)
    page.get_by_role("button", name="Next task").click()
    page.get_by_role("heading", name=f"Draw: {annotation['type']}").wait_for()
    return key, sent


def with_mocked_task(
    page: Any, live: LiveServer, task: dict[str, Any], refusals: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Sign in for real; lease and submit answered in the browser (the server has no such task
    type yet). Submits get the `refusals` (422 bodies) first, then a success."""
    sent: list[dict[str, Any]] = []
    leases: list[int] = []
    refusals = list(refusals or [])

    def lease(route: Any) -> None:
        leases.append(1)
        if len(leases) == 1:
            lease_seconds = task.pop("lease_seconds", 600)
            task["expires_at"] = (datetime.now(UTC) + timedelta(seconds=lease_seconds)).isoformat()
            route.fulfill(status=201, json=task)
        else:
            route.fulfill(status=204, body="")

    def submit(route: Any) -> None:
        sent.append({"body": json.loads(route.request.post_data), "key": route.request.headers.get("idempotency-key")})
        if refusals:
            route.fulfill(status=422, json=refusals.pop(0))
        else:
            route.fulfill(json={"id": task["id"], "state": "submitted", "answers": len(task["items"])})

    page.route("**/v1/assignments", lease)
    page.route(f"**/v1/assignments/{task['id']}/submit", submit)
    sign_in(page, live, live.key("worker", "drawer"))
    page.get_by_role("button", name="Next task").click()
    page.get_by_role("heading", name=task["job"]["title"]).wait_for()
    return sent


def drag(page: Any, start: tuple[float, float], end: tuple[float, float]) -> None:
    image = page.locator("#item img")
    image.scroll_into_view_if_needed()
    box = image.bounding_box()
    page.mouse.move(box["x"] + start[0], box["y"] + start[1])
    page.mouse.down()
    page.mouse.move(box["x"] + end[0], box["y"] + end[1], steps=8)
    page.mouse.up()
    page.mouse.click(box["x"] + 315, box["y"] + 195)  # click off the shape: leave the selection
    page.locator("#item").click(position={"x": 2, "y": 2})


def click_image(page: Any, x: float, y: float) -> None:
    image = page.locator("#item img")
    image.scroll_into_view_if_needed()
    box = image.bounding_box()
    page.mouse.click(box["x"] + x, box["y"] + y)


def near(got: list[float], wanted: list[float]) -> bool:
    """Coordinates within the pointer's 1-pixel rounding."""
    return len(got) == len(wanted) and all(abs(g - w) <= 1 for g, w in zip(got, wanted, strict=True))


OUTSIDE = "outside the image (x + w = 330 > width 320)"


def test_boxes_drawn_on_the_page_are_checked_and_stored_by_the_server(
    page: Any, live: LiveServer, shots: Shots
) -> None:
    key, sent = take_task(page, live, {"type": "bbox", "labels": ["cat", "dog"]})
    drag(page, (10, 20), (110, 90))
    page.keyboard.press("2")  # the label for the next box
    drag(page, (150, 60), (300, 180))
    page.get_by_role("list", name="Boxes drawn").get_by_role("listitem").nth(1).wait_for()
    page.get_by_label("Label of box 1").select_option("cat")
    page.get_by_label("width of box 2").fill("180")  # edited by keyboard: past the image's edge
    page.get_by_label("width of box 2").press("Tab")
    page.get_by_role("button", name="Submit").click()
    refused = page.get_by_role("list", name="Boxes drawn").get_by_role("listitem").nth(1)
    refused.get_by_text(OUTSIDE).wait_for()  # the server's reason, beside the box it names
    shots(page, "8-boxes-refused")
    assert live.values_of(key) == []  # nothing of the refused submit was stored
    page.get_by_label("width of box 2").fill("140")
    page.get_by_label("width of box 2").press("Tab")
    page.get_by_role("button", name="Submit").click()
    page.get_by_text("No work for you right now").wait_for()
    assert [s["body"]["answers"][0]["objects"][1]["bbox"][2] for s in sent] == [180, 140]
    assert sent[0]["key"] and sent[1]["key"] and sent[0]["key"] != sent[1]["key"]  # other answers, another key
    ((data, stored),) = live.values_of(key)
    assert data["width"] == 320 and [o["label"] for o in stored["objects"]] == ["cat", "dog"]
    assert near(stored["objects"][0]["bbox"], [10, 20, 100, 70]) and near(
        stored["objects"][1]["bbox"], [150, 60, 140, 120]
    )


def test_the_lease_pay_fields_are_shown(page: Any, live: LiveServer) -> None:
    with_mocked_task(page, live, mocked_task("boxes", {"type": "bbox", "labels": ["cat", "dog"]}))
    assert "per item 0.04 USD" in page.locator("#task-pay").inner_text()


def test_a_deleted_box_is_gone_and_nothing_to_draw_is_an_answer(page: Any, live: LiveServer) -> None:
    key, sent = take_task(page, live, {"type": "bbox", "labels": ["cat", "dog"]})
    page.get_by_role("button", name="Add box").click()  # the keyboard's way to a box
    page.get_by_role("button", name="Delete box 1").click()
    page.get_by_role("button", name="Submit").click()
    assert "Item 1 has no answer yet" in page.locator("#task-error").inner_text()  # no boxes is not an answer
    page.get_by_role("button", name="Nothing to draw").click()
    assert page.get_by_role("button", name="Nothing to draw").get_attribute("aria-pressed") == "true"
    page.get_by_role("button", name="Submit").click()
    page.get_by_text("No work for you right now").wait_for()
    assert sent[0]["body"]["answers"][0]["objects"] == []
    assert [value for _, value in live.values_of(key)] == [{"objects": []}]  # stored as an answer


def test_a_polygon_drawn_on_the_page_is_stored_with_its_corners(page: Any, live: LiveServer, shots: Shots) -> None:
    key, _ = take_task(page, live, {"type": "polygon", "labels": ["cat", "dog"]})
    for x, y in ((20, 20), (200, 30), (150, 150), (20, 20)):  # back to the first corner closes it
        click_image(page, x, y)
    page.get_by_role("list", name="Polygons drawn").get_by_role("listitem").first.wait_for()
    shots(page, "9-polygon")
    page.get_by_role("button", name="Submit").click()
    page.get_by_text("No work for you right now").wait_for()
    ((_, answer),) = live.values_of(key)
    (polygon,) = answer["objects"]
    assert polygon["label"] == "cat" and len(polygon["points"]) == 3
    assert all(near(g, w) for g, w in zip(polygon["points"], [[20, 20], [200, 30], [150, 150]], strict=True))


def test_a_polygon_in_two_parts_is_sent_as_polygons(page: Any, live: LiveServer) -> None:
    key, _ = take_task(page, live, {"type": "polygon", "labels": ["cat", "dog"]})
    drawn = page.get_by_role("list", name="Polygons drawn").get_by_role("listitem")
    for x, y in ((20, 20), (120, 20), (70, 120), (20, 20)):
        click_image(page, x, y)
    drawn.first.wait_for()
    page.get_by_role("button", name="Add a part to polygon 1").click()
    click_image(page, 300, 190)  # the first click leaves the selection of the part just drawn
    for x, y in ((180, 30), (300, 30), (300, 150), (180, 30)):  # the part beyond the pole
        click_image(page, x, y)
    drawn.first.get_by_text("2 parts, 3 + 3 corners").wait_for()
    assert drawn.count() == 1
    page.get_by_role("button", name="Submit").click()
    page.get_by_text("No work for you right now").wait_for()
    ((_, answer),) = live.values_of(key)
    (car,) = answer["objects"]
    assert car["label"] == "cat" and "points" not in car and len(car["polygons"]) == 2
    wanted_parts = [[[20, 20], [120, 20], [70, 120]], [[180, 30], [300, 30], [300, 150]]]
    for got, wanted in zip(car["polygons"], wanted_parts, strict=True):
        assert all(near(g, w) for g, w in zip(got, wanted, strict=True))


def test_keypoints_are_placed_in_order_with_occluded_and_absent(page: Any, live: LiveServer) -> None:
    annotation = {
        "type": "keypoints",
        "labels": ["cat"],
        "points": ["nose", "left_eye", "right_eye", "tail"],
        "skeleton": [["nose", "left_eye"], ["nose", "right_eye"]],
    }
    key, _ = take_task(page, live, annotation)
    click_image(page, 100, 50)
    click_image(page, 80, 40)
    page.get_by_role("button", name="Mark right_eye of object 1 occluded").click()
    click_image(page, 120, 40)
    page.get_by_role("button", name="Mark tail of object 1 absent").click()
    page.get_by_role("button", name="Submit").click()
    page.get_by_text("No work for you right now").wait_for()
    ((_, answer),) = live.values_of(key)
    (drawn,) = answer["objects"]
    assert drawn["label"] == "cat"
    expected = [[100, 50, 2], [80, 40, 2], [120, 40, 1], [0, 0, 0]]
    for got, wanted in zip(drawn["keypoints"], expected, strict=True):  # within the pointer's 1-pixel rounding
        assert got[2] == wanted[2] and abs(got[0] - wanted[0]) <= 1 and abs(got[1] - wanted[1]) <= 1, (got, wanted)


def test_multi_label_items_take_several_labels_or_none(page: Any, live: LiveServer) -> None:
    annotation = {"type": "multilabel", "labels": ["sunny", "people", "cars"]}
    items = [{"data": {"text": "A busy street at noon"}}, {"data": {"text": "An empty field"}}]
    key, _ = take_task(page, live, annotation, items=items)
    texts = ["A busy street at noon", "An empty field"]
    first = next(t for t in texts if t in page.locator("#item").inner_text())  # the task's order is random
    for step, text in enumerate([first, *(t for t in texts if t != first)]):
        page.get_by_text(text).wait_for()
        if text == texts[0]:
            page.keyboard.press("1")
            page.get_by_role("button", name="cars", exact=True).click()
            page.keyboard.press("1")  # toggled off again
            page.keyboard.press("2")
        else:
            page.get_by_role("button", name="None of these").click()
        if step == 0 and page.get_by_role("button", name="Next item").is_enabled():  # "None of these" moves on
            page.get_by_role("button", name="Next item").click()
    page.get_by_role("button", name="Submit").click()
    page.get_by_text("No work for you right now").wait_for()
    assert sorted((data["text"], value["labels"]) for data, value in live.values_of(key)) == [
        ("A busy street at noon", ["people", "cars"]),
        ("An empty field", []),
    ]


def test_the_lease_counts_down_and_a_task_past_it_is_not_sent(page: Any, live: LiveServer) -> None:
    task = mocked_task("a short lease", {"type": "classification", "labels": ["cat", "dog"]})
    task["lease_seconds"] = 6
    sent = with_mocked_task(page, live, task)
    first = page.get_by_role("timer").inner_text()
    assert first in ("0:03", "0:04", "0:05")  # no Date header here: the page's clock, less a second
    page.wait_for_timeout(1100)
    assert page.get_by_role("timer").inner_text() < first  # counting down
    page.get_by_text("The time for that task ran out").wait_for(timeout=10_000)
    assert page.locator("#task").is_hidden() and page.get_by_role("button", name="Next task").is_visible()
    assert sent == []


def test_only_a_worker_key_signs_in(page: Any, live: LiveServer) -> None:
    page.goto(f"{live.url}/worker/")
    page.get_by_label("Worker key").fill("mk_not_a_key")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("That key was not accepted").wait_for()
    page.get_by_label("Worker key").fill(live.key("requester", "r"))
    page.get_by_label("Worker key").press("Enter")
    page.get_by_text("belongs to a requester").wait_for()
    assert page.evaluate("sessionStorage.length") == 0 and page.locator("#work").is_hidden()
