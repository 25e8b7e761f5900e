"""How much memory a decode may take, checked from an image's header before any pixel is decoded.

The budget comes from the function's memory (function.toml `memory_mb`, Lambda's size): a tiny
request must not be able to ask for gigabytes (a palette PNG, a compressed DICOM).
"""

from __future__ import annotations

from medfn.errors import UnprocessableInput

# What a decode holds per sample at its peak: the decoder's own array, a float32 copy, the
# windowed or scaled copy and the clip (benchmarks/hostile_memory.py measures it).
BYTES_PER_SAMPLE = 16


def check_budget(width: int, height: int, samples: int, max_bytes: int, what: str) -> None:
    """Refuse, from the header alone, an image whose decode would not fit `max_bytes`."""
    needed = width * height * samples * BYTES_PER_SAMPLE
    if needed > max_bytes:
        raise UnprocessableInput(
            f"{what} of {width}x{height} pixels x {samples} samples needs about {needed // 2**20} MiB to decode,"
            f" over this function's budget of {max_bytes // 2**20} MiB"
        )


def budget_bytes(memory_mb: int) -> int:
    """What one decode may hold: half the function's memory, the rest for the runtime and the model."""
    return memory_mb * 2**20 // 2
