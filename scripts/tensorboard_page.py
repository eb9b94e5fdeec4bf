"""TensorBoard's Images tab in a browser: which image cards it shows, where and how large; what
the attention-card screenshot and the browser test of the cards share.

TensorBoard's page is Polymer and Angular components inside shadow roots, so the images are
found by a script that walks every shadow root; each image's URL names its tag and step (the
`blob_key` is base64 of a JSON list holding them).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

CARDS_PER_PAGE = 12  # the Images tab shows a tag group's cards 12 to a page
LOAD_TIMEOUT_S = 120  # TensorBoard reads the event files after it answers, then the page polls

# every <img> of the page, through shadow roots, with its place and sizes (CSS px)
_IMAGES_SCRIPT = """
function images(root) {
  let found = [];
  for (const element of root.querySelectorAll('*')) {
    if (element.tagName === 'IMG') found.push(element);
    if (element.shadowRoot) found = found.concat(images(element.shadowRoot));
  }
  return found;
}
return images(document).filter(image => image.complete && image.naturalWidth > 0).map(image => {
  const box = image.getBoundingClientRect();
  return {src: image.src, x: box.left, y: box.top, width: box.width, height: box.height,
          natural_width: image.naturalWidth, natural_height: image.naturalHeight};
});
"""


@dataclass(frozen=True)
class ShownImage:
    """One image card's picture as the page shows it."""

    tag: str
    x: float  # CSS px from the viewport's left
    y: float
    width: float  # as shown
    height: float
    natural_width: int  # as drawn
    natural_height: int


def shown_images(driver: WebDriver) -> list[ShownImage]:
    """The loaded images of the page now, by tag."""
    return [ShownImage(tag=_tag(found["src"]), x=found["x"], y=found["y"], width=found["width"],
                       height=found["height"], natural_width=found["natural_width"],
                       natural_height=found["natural_height"])
            for found in driver.execute_script(_IMAGES_SCRIPT)]


def open_images_tab(driver: WebDriver, url: str, tags: set[str]) -> list[ShownImage]:
    """Open TensorBoard's Images tab at `url` and wait until the cards of `tags` on its first
    page are loaded (all of them, up to CARDS_PER_PAGE)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    def loaded(driver: WebDriver) -> list[ShownImage]:
        return [image for image in shown_images(driver) if image.tag in tags]

    driver.get(f"{url}/?darkMode=false#images")
    try:
        WebDriverWait(driver, LOAD_TIMEOUT_S).until(
            lambda driver: len(loaded(driver)) >= min(len(tags), CARDS_PER_PAGE))
    except TimeoutException:
        raise TimeoutError(f"TensorBoard's Images tab showed {len(loaded(driver))} of the "
                           f"{len(tags)} cards within {LOAD_TIMEOUT_S} s") from None
    return loaded(driver)


def _tag(src: str) -> str:
    """The tag an image URL's blob_key names: [experiment, run, tag, step, ...] as JSON."""
    key = src.split("blob_key=", 1)[1].split("&", 1)[0]
    key = key.replace("%3D", "=")
    return json.loads(base64.urlsafe_b64decode(key + "=" * (-len(key) % 4)))[2]
