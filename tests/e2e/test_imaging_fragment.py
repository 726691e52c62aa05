"""The Imaging page in Chromium: a saliency method, class or opacity change reruns only the image's
fragment (the viewer, the AI read and the saliency section), never the whole page (issue 23).

Why in a browser: AppTest runs every interaction as a full script run, so only the real server
shows which runs it makes. What is read is what the server tells the browser at the end of each
run (Streamlit's ``script_finished`` message): ``FINISHED_FRAGMENT_RUN_SUCCESSFULLY`` for a run of
a fragment alone, ``FINISHED_SUCCESSFULLY`` for a run of the whole page (the sidebar, the patient
lookups, the picker, the PACS panel, an upload's de-identification). Picking another image must
still rerun the whole page, so the test also shows that it tells the two apart.
"""

from __future__ import annotations

import re
import time

from bench.bench_pages import choose
from tests.e2e.helpers import assert_no_exception, open_page, screenshot, settle, sign_in

OVERLAY = ".st-key-saliency_chart_a .main-svg"


class Runs:
    """How each script run the server reported ended, in order, as the browser received them."""

    def __init__(self, page) -> None:
        self.ends: list[str] = []
        page.on("websocket", self._attach)

    def _attach(self, ws) -> None:
        if "_stcore/stream" in ws.url:
            ws.on("framereceived", self._received)

    def _received(self, payload) -> None:
        # lazy: Streamlit's protobuf classes, only once a socket is open
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg  # noqa: TID251 - its wire format

        if isinstance(payload, str):
            return
        msg = ForwardMsg()
        msg.ParseFromString(payload)
        if msg.WhichOneof("type") == "script_finished":
            self.ends.append(ForwardMsg.ScriptFinishedStatus.Name(msg.script_finished))

    def until(self, page, since: int, end: str, timeout_s: float = 60) -> list[str]:
        """The ends reported after ``since`` once ``end`` is among them (or ``timeout_s`` passed)."""
        deadline = time.monotonic() + timeout_s
        while end not in self.ends[since:] and time.monotonic() < deadline:
            page.wait_for_timeout(20)  # lets Playwright deliver the socket's frames
        settle(page)
        return self.ends[since:]

    def after(self, page, since: int) -> list[str]:
        """The ends reported after ``since`` once the page is idle again (waits for at least one)."""
        deadline = time.monotonic() + 60
        while len(self.ends) <= since and time.monotonic() < deadline:
            page.wait_for_timeout(20)  # lets Playwright deliver the socket's frames
        settle(page)
        page.wait_for_timeout(300)  # a run that follows the first (a callback's) is reported too
        settle(page)
        return self.ends[since:]


def _choose(page, key: str, option: re.Pattern) -> None:
    # the bench's picker: a re-render just after a run can close the list as it opens, so it retries
    choose(page, key, option)()


def _open_list(page, key: str):
    """Open the select box with widget key ``key``; its options once drawn.

    Why a retry: the click that opens the list can land while the viewer's frame re-renders after
    the last run, which closes the list again (``bench_pages.choose`` retries for the same reason);
    waiting for the options then ran out of time. Each attempt waits for the list and, if it did not
    stay open, closes whatever is open and clicks again.
    """
    options = page.get_by_role("option")
    for _attempt in range(3):
        page.locator(f".st-key-{key}").get_by_role("combobox").first.click()
        try:
            options.first.wait_for(timeout=15_000)
            return options
        except Exception:  # noqa: BLE001 - Playwright's timeout: close the list, open it again
            page.keyboard.press("Escape")
            settle(page)
    page.locator(f".st-key-{key}").get_by_role("combobox").first.click()
    options.first.wait_for()
    return options


def _pick(page, key: str, label: str) -> None:
    """Pick the option ``label`` in the select box with widget key ``key`` (``_open_list``'s retry,
    then the option by its exact name; a list closed again by a re-render is opened again)."""
    for _attempt in range(3):
        _open_list(page, key)
        try:
            page.get_by_role("option", name=label, exact=True).click(timeout=15_000)
            return
        except Exception:  # noqa: BLE001 - Playwright's timeout: close the list, open it again
            page.keyboard.press("Escape")
            settle(page)
    _open_list(page, key)
    page.get_by_role("option", name=label, exact=True).click()


def _pick_until_shown(page, key: str, label: str) -> None:
    """``_pick``, then wait until the box shows ``label``; pick again while it does not.

    Why: a click on an option can land as the list closes under a re-render (the idle watch's
    fragment run every 30 s, the viewer's frame); Playwright then reports a click that picked
    nothing, and the page run the test waits for never comes (a CI run ended on six idle-watch
    fragment runs in 180 s). The box's input holds the shown option (its ``inner_text`` is the
    label only), so its value says whether the pick took.
    """
    shown = page.locator(f".st-key-{key} input").first
    for _attempt in range(4):
        _pick(page, key, label)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if shown.input_value() == label:
                return
            page.wait_for_timeout(100)
        page.keyboard.press("Escape")
        settle(page)
    raise AssertionError(f"the picker never showed {label!r}: {shown.input_value()!r}")


FRAGMENT = "FINISHED_FRAGMENT_RUN_SUCCESSFULLY"
WHOLE_PAGE = "FINISHED_SUCCESSFULLY"
EARLY = "FINISHED_EARLY_FOR_RERUN"


def _fragment_only(ends: list[str]) -> bool:
    """Only fragment runs completed, the last one included; a run cut short by the next request
    (a click while the previous fragment run was still drawing) may sit between them. A page run
    cannot hide there: a fragment's request waits for a page run to finish, and a page run cut
    short by another page request is followed by that one, which ends FINISHED_SUCCESSFULLY."""
    return bool(ends) and ends[-1] == FRAGMENT and set(ends) <= {FRAGMENT, EARLY}


def test_saliency_changes_rerun_only_the_image_fragment(page, app):
    runs = Runs(page)
    page.set_default_timeout(
        180_000
    )  # the first open loads the models: minutes on a loaded machine
    sign_in(page, app.url, "oncologist", "oncologist-demo")
    open_page(page, "Imaging")
    page.get_by_role("heading", name="AI read").wait_for()
    page.locator(OVERLAY).first.wait_for()
    settle(page)

    # start from Grad-CAM (a model card may recommend another method as the default)
    if not page.locator(".st-key-saliency_method input").first.input_value().startswith("Grad-CAM"):
        _choose(page, "saliency_method", re.compile("^Grad-CAM"))
        page.get_by_text(re.compile(r"^Grad-CAM of ")).first.wait_for()
        settle(page)

    since = len(runs.ends)
    _choose(page, "saliency_method", re.compile("^Integrated gradients"))
    page.get_by_text(re.compile(r"^Integrated gradients of ")).first.wait_for()
    page.locator(OVERLAY).first.wait_for()
    ends = runs.after(page, since)
    assert _fragment_only(ends), ends  # the map changed, the page did not rerun
    assert_no_exception(page, "Imaging after a method change")
    # what the fragment draws is all there: the read beside the image and the new map's caption
    assert page.get_by_text("Most likely").first.is_visible()
    assert page.get_by_role("heading", name=re.compile("^Images of|^Most recent images")).count()

    since = len(runs.ends)
    slider = page.locator(".st-key-saliency_opacity input[type='range']").first
    slider.focus()
    slider.press("ArrowRight")
    ends = runs.after(page, since)
    assert _fragment_only(ends), ends

    # an on-request method: its button's run draws the map, in the fragment too
    since = len(runs.ends)
    _choose(page, "saliency_method", re.compile("^SmoothGrad"))
    page.get_by_role("button", name=re.compile("Compute the smoothgrad")).click()
    page.get_by_text(re.compile(r"^SmoothGrad \(integrated gradients\) of ")).first.wait_for()
    ends = runs.after(page, since)
    assert _fragment_only(ends), ends
    page.locator(OVERLAY).first.scroll_into_view_if_needed()
    screenshot(
        page, f"imaging-fragment-{page.viewport_size['width']}x{page.viewport_size['height']}"
    )

    # another image is a new page: the whole script runs (so the check above can fail)
    since = len(runs.ends)
    _open_list(page, "imaging_source")
    # not the image shown (its option is the selected one: comparing with the box's text picked
    # the shown image again, so nothing changed), nor an upload, the demo volume or a 3D series
    labels = page.get_by_role("option", selected=False).all_inner_texts()
    chosen = [
        label
        for label in labels
        if not label.startswith("Upload DICOM file")
        and "Demo volume" not in label
        and "(3D)" not in label
    ][-1]
    page.keyboard.press("Escape")  # closed again: ``_pick`` opens it itself
    _pick_until_shown(page, "imaging_source", chosen)
    # the server ran the whole page for it; a fragment run of the viewer may come first, so the
    # page run is waited for, not merely the next run's end
    ends = runs.until(
        page, since, WHOLE_PAGE, timeout_s=180
    )  # a new image's read: slow when loaded
    assert WHOLE_PAGE in ends, ends
    page.get_by_role("heading", name="AI read").wait_for()
    assert_no_exception(page, "Imaging after another image")
