"""Types shared by the API modules."""

from __future__ import annotations

import os

PathLike = str | os.PathLike
