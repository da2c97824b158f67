"""What an input image of a model must be: sides, pixel count, aspect ratio, format.

Each model that reads an image states its limits with the AWS page they come from (read 2026-11-30);
:meth:`ImageLimits.problems` words a refusal the way every entry point says it: the field, what the
model takes, and what it was given. The Bedrock stand-in does not use these: it checks bodies against
the schemas transcribed from the same pages (``tests/schemas/bedrock``), so a limit copied wrongly here
shows up as a model call the stand-in refuses.
"""

from __future__ import annotations

from dataclasses import dataclass


def _n(value: int) -> str:
    return f"{value:,}"


@dataclass(frozen=True)
class ImageLimits:
    """Limits of one input image (inclusive); None: no documented limit."""

    source: str
    min_side: int | None = None
    min_width: int | None = None
    max_width: int | None = None
    min_height: int | None = None
    max_height: int | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None
    #: width / height, inclusive (1:2.5 is 0.4).
    min_aspect: float | None = None
    max_aspect: float | None = None
    formats: tuple[str, ...] = ("jpeg", "png", "webp")

    def describe(self) -> str:
        """What the model takes, in words (``images of ...``)."""
        parts = []
        if self.min_width is not None or self.max_width is not None:
            parts.append(
                f"{self.min_width} to {self.max_width} pixels wide and {self.min_height} to {self.max_height} high"
            )
        elif self.min_side is not None:
            parts.append(f"at least {self.min_side} pixels on every side")
        if self.min_pixels is not None and self.max_pixels is not None:
            parts.append(f"{_n(self.min_pixels)} to {_n(self.max_pixels)} pixels in all")
        elif self.max_pixels is not None:
            parts.append(f"at most {_n(self.max_pixels)} pixels in all")
        if self.min_aspect is not None and self.max_aspect is not None:
            parts.append(f"an aspect ratio from 1:{1 / self.min_aspect:g} to {self.max_aspect:g}:1")
        return "images of " + ", ".join(parts)

    def problems(self, width: int, height: int) -> list[str]:
        """Why an image of ``width`` x ``height`` is refused (empty: it is taken)."""
        found = []
        side = min(width, height)
        if self.min_side is not None and side < self.min_side:
            found.append(f"a side of {side} pixels")
        for name, value, low, high in (
            ("width", width, self.min_width, self.max_width),
            ("height", height, self.min_height, self.max_height),
        ):
            if (low is not None and value < low) or (high is not None and value > high):
                found.append(f"a {name} of {value} pixels")
        pixels = width * height
        if (self.min_pixels is not None and pixels < self.min_pixels) or (
            self.max_pixels is not None and pixels > self.max_pixels
        ):
            found.append(f"{_n(pixels)} pixels")
        aspect = width / height
        if (self.min_aspect is not None and aspect < self.min_aspect) or (
            self.max_aspect is not None and aspect > self.max_aspect
        ):
            found.append(f"an aspect ratio of {aspect:.3g}:1")
        return found


#: "Every side of the image must be at least 64 pixels. The total pixel count cannot exceed 9,437,184
#: pixels. Image aspect ratio must be between 1:2.5 and 2.5:1. Supported formats: jpeg, png, webp."
#: (Stability AI Image Services: Conservative Upscale, Remove Background, Search and Replace, Inpaint,
#: Outpaint and Style Transfer.)
SERVICES_PAGE = "https://docs.aws.amazon.com/bedrock/latest/userguide/stable-image-services.html"
EDIT_IMAGE = ImageLimits(
    source=SERVICES_PAGE, min_side=64, max_pixels=9_437_184, min_aspect=0.4, max_aspect=2.5
)
#: Fast Upscale: "Width must be between 32 and 1,536 pixels. Height must be between 32 and 1,536 pixels.
#: Total pixel count must be between 1,024 and 1,048,576 pixels."
FAST_UPSCALE_IMAGE = ImageLimits(
    source=SERVICES_PAGE + "#stable-image-services-7",
    min_width=32,
    max_width=1536,
    min_height=32,
    max_height=1536,
    min_pixels=1024,
    max_pixels=1_048_576,
)
#: Creative Upscale: "Every side of the image must be at least 64 pixels. Total pixel count must be
#: between 4,096 and 1,048,576 pixels."
CREATIVE_UPSCALE_IMAGE = ImageLimits(
    source=SERVICES_PAGE + "#stable-image-services-5", min_side=64, min_pixels=4096, max_pixels=1_048_576
)
#: SD3.5 Large image-to-image: "image ... Minimum 64 pixels per side. Supported formats: jpeg, png, webp."
SD35_IMAGE = ImageLimits(
    source="https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-diffusion-3-5-large.html",
    min_side=64,
)
#: Stable Image Ultra's image-to-image ``image``: "Supported formats: JPEG, PNG, WebP" (no size limit stated).
ULTRA_IMAGE = ImageLimits(
    source="https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-diffusion-stable-ultra-text-image-request-response.html"
)
