"""A thin Selenium layer over the Streamlit pages: open, type, click, wait for text, screenshot, download."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.wait import WebDriverWait

from tests.integration.ui.conftest import SCREENSHOTS

TIMEOUT = 60


class Ui:
    def __init__(self, driver: Any, base: str) -> None:
        self.driver, self.base = driver, base

    def open(self, path: str, expect: str) -> None:
        self.driver.get(f"{self.base}/{path}")
        self.wait_text(expect)

    def text(self) -> str:
        try:
            return self.driver.find_element(By.TAG_NAME, "body").text
        except StaleElementReferenceException:
            return ""

    def wait_text(self, *needles: str, timeout: float = TIMEOUT) -> str:
        """Wait until every needle is on the page and the app has finished its run; returns the page text."""
        try:
            WebDriverWait(self.driver, timeout, poll_frequency=0.25).until(
                lambda d: all(n in self.text() for n in needles) and not self.running()
            )
        except TimeoutException:
            shot = self.screenshot("failed")
            raise AssertionError(
                f"not on the page within {timeout} s: {needles} (see {shot}):\n{self.text()}"
            ) from None
        return self.text()

    def running(self) -> bool:
        """The script is (about to be) running: Streamlit's own end-to-end tests wait on this attribute."""
        try:
            apps = self.driver.find_elements(By.CSS_SELECTOR, '[data-testid="stApp"]')
            return not apps or apps[0].get_attribute("data-test-script-state") != "notRunning"
        except StaleElementReferenceException:
            return True

    def find(self, css: str) -> Any:
        """The element, once the page has rendered it (Streamlit draws elements as the script runs)."""
        WebDriverWait(self.driver, TIMEOUT, poll_frequency=0.25).until(lambda d: d.find_elements(By.CSS_SELECTOR, css))
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def element_text(self, css: str) -> str:
        return self.driver.find_element(By.CSS_SELECTOR, css).text

    def type_number(self, label: str, value: float | None, settle: float = 1.5) -> None:
        """Replace the value of the number input `label` (None: empty it) and leave the field (commits it);
        typed again if a rerun still in flight replaced the input meanwhile."""
        expected = "" if value is None else str(value)
        for _ in range(5):
            field = self.find(f'input[aria-label="{label}"]')
            self.driver.execute_script("arguments[0].focus()", field)  # a click may land on a help tooltip
            field.send_keys(Keys.CONTROL, "a")
            field.send_keys(Keys.BACKSPACE)
            if value is not None:
                field.send_keys(expected)
            field.send_keys(Keys.TAB)
            deadline = time.monotonic() + settle
            while time.monotonic() < deadline and self.number_attribute(label, "value") == expected:
                time.sleep(0.1)
            if self.number_attribute(label, "value") == expected:
                return
        raise AssertionError(f"{label}: the input does not keep {expected!r}")

    def click(self, text: str) -> None:
        """Click the button `text`, once drawn (the page may still be drawing after the script's run ended)."""
        path = f"//button[normalize-space(.)='{text}']"
        WebDriverWait(self.driver, TIMEOUT, poll_frequency=0.25).until(lambda d: d.find_elements(By.XPATH, path))
        self.driver.find_element(By.XPATH, path).click()

    def click_label(self, text: str, then: Callable[[Any], bool] | None = None) -> None:
        """Click a toggle's or checkbox's label; wait for `then(driver)` (the rerun's visible effect), so that
        typing afterwards is not undone by the rerun."""
        self.driver.find_element(By.XPATH, f"//label[normalize-space(.)='{text}']").click()
        if then is not None:
            WebDriverWait(self.driver, TIMEOUT, ignored_exceptions=[StaleElementReferenceException]).until(then)

    def number_attribute(self, label: str, name: str) -> str | None:
        try:
            return self.find(f'input[aria-label="{label}"]').get_attribute(name)
        except StaleElementReferenceException:
            return None

    def choose_new(self, label: str, value: str) -> None:
        """Type a value that is not among a select box's options and add it (`accept_new_options`)."""
        path = f'//div[@data-testid="stSelectbox"][.//label[normalize-space(.)="{label}"]]//input'
        WebDriverWait(self.driver, TIMEOUT, poll_frequency=0.25).until(lambda d: d.find_elements(By.XPATH, path))
        field = self.driver.find_element(By.XPATH, path)
        field.click()
        field.send_keys(value)
        WebDriverWait(self.driver, TIMEOUT).until(lambda d: value in self.text())  # the "add" option is listed
        field.send_keys(Keys.ENTER)

    def hidden_text(self, css: str, *needles: str) -> str:
        """The text of elements drawn on a canvas (st.dataframe): their accessible copy in the DOM, once it holds
        every needle (the grids fill it after the script's run has ended)."""
        script = "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent).join(' | ')"
        try:
            WebDriverWait(self.driver, TIMEOUT, poll_frequency=0.25).until(
                lambda d: all(n in d.execute_script(script, css) for n in needles)
            )
        except TimeoutException:
            raise AssertionError(f"{needles} not in {css}: {self.driver.execute_script(script, css)}") from None
        return self.driver.execute_script(script, css)

    def table_rows(self, css: str = '[data-testid="stTable"]') -> list[dict[str, str]]:
        """The rows of the first static table (st.table) as {header: cell text}, the index column included."""
        self.find(css)
        script = ("const rows = Array.from(document.querySelector(arguments[0]).querySelectorAll('tr'));"
                  "return rows.map(r => Array.from(r.children).map(c => c.textContent.trim()));")  # fmt: skip
        header, *rows = self.driver.execute_script(script, css)
        return [dict(zip(header, row, strict=True)) for row in rows]

    def upload(self, path: Path) -> None:
        self.find('[data-testid="stFileUploader"] input[type="file"]').send_keys(str(path))

    def download(self, button: str, directory: Path, timeout: float = TIMEOUT) -> Path:
        """Click a download button; the file the browser saved in `directory`."""
        directory.mkdir(parents=True, exist_ok=True)
        self.driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(directory)}
        )
        self.click(button)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = [p for p in directory.iterdir() if not p.name.endswith(".crdownload")]
            if done and not any(directory.glob("*.crdownload")):
                return done[0]
            time.sleep(0.2)
        raise AssertionError(f"no download in {directory} within {timeout} s")

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path
