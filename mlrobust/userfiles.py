"""The gate in front of every file a user names (model, image, mask, model card, dataset index).

Only regular files are opened: a named pipe would block its reader forever (lint never
returning), and a folder or a device fails deep inside a library as an internal error. Images
are also held to a pixel limit read from the header, before anything is decoded, so a small
PNG that expands to gigabytes (a "decompression bomb") is a clear user error, not a crash.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from mlrobust.errors import UserError

if TYPE_CHECKING:
    from PIL.Image import Image

# 4096 × 4096: far above any input a verifier can handle, far below what exhausts memory.
MAX_IMAGE_PIXELS = 4096 * 4096

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)
REGULAR_FILE_HINT = "name a regular file; mlrobust does not read from pipes, devices or folders"


def require_regular_file(path: Path, what: str, error: type[UserError] = UserError) -> None:
    """Raise `error` unless `path` is (a link to) a regular file, checked with stat before any open.

    Checking first rather than opening with O_NONBLOCK keeps every reader (onnx, PIL, numpy,
    onnxruntime) free to open the path its own way.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except OSError as failure:
        raise error(f"cannot read {what} {path}: {failure.strerror or failure}") from None
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a file")
        raise error(f"{what} {path} is {kind}, not a regular file", hint=REGULAR_FILE_HINT)


def too_many_pixels(path: Path, what: str, height: int, width: int) -> UserError | None:
    """The error for an image over MAX_IMAGE_PIXELS, or None."""
    if height * width <= MAX_IMAGE_PIXELS:
        return None
    return UserError(
        f"{what} {path} is {width}×{height} pixels, more than the {MAX_IMAGE_PIXELS:,} mlrobust reads",
        hint="crop or downscale it to the model's input size",
    )


def load_image(path: Path, what: str = "image") -> Image:
    """A decoded PIL image (its file already closed), or a UserError saying why not.

    The size is checked on the header before decoding. PIL's own bomb guard (a warning above
    its limit, an error at twice it) is turned into the same user error, and anything PIL
    raises on a malformed file (OSError, ValueError, SyntaxError, EOFError, zlib errors…)
    becomes "cannot read": the bytes are the user's, so a failure to decode them is theirs.
    """
    require_regular_file(path, what)
    from PIL import Image as PILImage

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(path) as image:
                width, height = image.size
                refusal = too_many_pixels(path, what, height, width)
                if refusal is not None:
                    raise refusal
                image.load()
                return image
    except UserError:
        raise
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as bomb:
        raise UserError(
            f"{what} {path} is too large to decode safely ({bomb}); mlrobust reads at most {MAX_IMAGE_PIXELS:,} pixels",
            hint="crop or downscale it to the model's input size",
        ) from None
    except Exception as failure:  # a decoder failing on the user's bytes is a user error
        raise UserError(f"cannot read {what} {path}: {type(failure).__name__}: {failure}") from None
