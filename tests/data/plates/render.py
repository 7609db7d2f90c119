"""Render the test plate images in this folder (run once; the PNGs are committed, see PROVENANCE).

Needs Pillow and Debian's fonts-wqy-zenhei; neither is needed at test time.
    python tests/data/plates/render.py
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"
HERE = Path(__file__).parent

# name, text as printed (the dot is the plate's separator), background, text colour, size
PLATES = [
    ("cn_blue_jingA12345", "京A·12345", (20, 60, 200), (255, 255, 255), (440, 140)),
    ("cn_green_yueBD12345", "粤B·D12345", (90, 200, 120), (0, 0, 0), (480, 140)),
    ("cn_yellow_huC34567", "沪C·34567", (250, 200, 20), (0, 0, 0), (440, 140)),
    ("latin_ABC1234", "ABC 1234", (245, 245, 245), (0, 0, 0), (440, 120)),
    ("latin_KLM5079", "KLM 5079", (245, 245, 245), (10, 10, 60), (440, 120)),
]


Colour = tuple[int, int, int]


def render(text: str, background: Colour, ink: Colour, size: tuple[int, int]) -> Image.Image:
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    width, height = size
    draw.rectangle((4, 4, width - 5, height - 5), outline=ink, width=3)  # the plate's rim
    points = int(height * 0.62)
    while True:  # the largest size that leaves a margin inside the rim
        font = ImageFont.truetype(FONT, points)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        if right - left <= width * 0.86:
            break
        points -= 2
    x = (width - (right - left)) // 2 - left
    y = (height - (bottom - top)) // 2 - top
    draw.text((x, y), text, font=font, fill=ink)
    return image


def main() -> None:
    for name, text, background, ink, size in PLATES:
        render(text, background, ink, size).save(HERE / f"{name}.png", optimize=True)


if __name__ == "__main__":
    main()
