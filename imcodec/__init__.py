"""imcodec: point cloud compression toolkit.

The public library API lives in :mod:`imcodec.api`; the command line in :mod:`imcodec.cli`.
Heavy dependencies (numba, torch, ffmpeg) are imported lazily by the modules that need them.
"""

__version__ = "0.1.0"
