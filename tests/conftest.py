"""Test settings: nothing is written into the repository (hypothesis keeps no example database
and its caches go to the system temp directory)."""

import os
import tempfile

os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "lmcollapse-hypothesis")
)

from hypothesis import settings  # after the storage directory is set

settings.register_profile("lmcollapse", database=None, deadline=None)
settings.load_profile("lmcollapse")
