"""Stage 1 — image I/O: reading and writing artists' files (:mod:`.image`), tensor conventions
(:mod:`.tensors`), output planning and the codec quantiser (:mod:`.outputs`) and the one atomic
writer (:mod:`.atomic`)."""

from sfumato.io.image import *  # noqa: F403
from sfumato.io.image import __all__  # noqa: F401
