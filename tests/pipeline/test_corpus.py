"""The scans the pipeline tests upload: phantoms as PNG and DICOM, and the poison among them.

Every DICOM carries demographics (name, ID, birth date, address) that no log line or record
may repeat; the tests below check the corpus itself still is what the pipeline tests assume.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

import pydicom
from pydicom.data import get_testdata_file

from medfn.codecs import sniff
from model_store.build import chest_phantoms


@dataclass(frozen=True)
class Scan:
    key: str  # as uploaded: spaces, plus signs and non-ASCII test the URL decoding
    data: bytes
    kind: str  # "png" | "dicom" | one of POISON_KINDS
    demographics: tuple[str, ...] = ()  # strings that must never be logged

    @property
    def poison(self) -> bool:
        return self.kind not in ("png", "dicom")


POISON_KINDS = ("corrupt", "truncated-dicom", "truncated-png", "empty", "text", "jpeg-lossless")


def with_demographics(dicom: bytes, index: int) -> tuple[bytes, tuple[str, ...]]:
    """The phantom's DICOM with a made-up patient, address included."""
    ds = pydicom.dcmread(io.BytesIO(dicom))
    ds.PatientName = f"Quillfeather^Ottoline{index:02d}"
    ds.PatientID = f"MRN-QX{index:04d}-ZZ"
    ds.PatientBirthDate = "19030405"
    ds.PatientAddress = f"{index} Marrowbone Lane, Dunquill"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue(), (
        "Quillfeather",
        f"Ottoline{index:02d}",
        ds.PatientID,
        "19030405",
        "Marrowbone",
        "Dunquill",
    )


@cache
def corpus(n_png: int = 22, n_dicom: int = 22) -> tuple[Scan, ...]:
    images, _ = chest_phantoms.generate(n_png + n_dicom, seed=404)
    scans: list[Scan] = []
    for i in range(n_png):
        name = f"ward 7/chest+pa ({i}).png" if i % 5 == 0 else f"png/scan-{i:03d}.png"
        scans.append(Scan(name, chest_phantoms.to_png(images[i]), "png"))
    for i in range(n_dicom):
        data, phi = with_demographics(chest_phantoms.to_dicom(images[n_png + i], monochrome1=i % 4 == 0), i)
        name = f"größe/dx {i}.dcm" if i % 7 == 0 else f"dicom/scan-{i:03d}.dcm"
        scans.append(Scan(name, data, "dicom", phi))
    # The type comes from the bytes: a PNG named .dcm and a DICOM named .png are fine.
    scans.append(Scan("misnamed/really-a-png.dcm", chest_phantoms.to_png(images[0]), "png"))
    dicom, phi = with_demographics(chest_phantoms.to_dicom(images[1]), 99)
    scans.append(Scan("misnamed/really-a-dicom.png", dicom, "dicom", phi))

    truncated, truncated_phi = with_demographics(chest_phantoms.to_dicom(images[2]), 98)
    # JPEG Lossless (process 14): needs a decoder plugin (GDCM, pylibjpeg-libjpeg) that medfn does not ship
    jpeg_lossless = open(get_testdata_file("SC_rgb_jpeg_gdcm.dcm"), "rb").read()  # noqa: SIM115
    scans += [
        Scan("poison/corrupt.dcm", b"\0" * 128 + b"DICM" + bytes(range(256)) * 3, "corrupt"),
        Scan("poison/truncated.dcm", truncated[: len(truncated) * 2 // 3], "truncated-dicom", truncated_phi),
        Scan("poison/truncated.png", chest_phantoms.to_png(images[3])[:600], "truncated-png"),
        Scan("poison/empty.dcm", b"", "empty"),
        Scan("poison/notes for ward+7.txt", b"Patient seen today, chest clear.\n", "text"),
        Scan("poison/text-named.png", b"not an image at all", "text"),
        Scan("poison/jpeg lossless.dcm", jpeg_lossless, "jpeg-lossless", ("Lestrade",)),
    ]
    return tuple(scans)


def result_files(scans: Iterable[Scan], prefix: str = "") -> set[str]:
    """What results/ holds for these scans: `<key>.json`, and `<key>.sr.dcm` beside it for a DICOM
    scan (its answer as a DICOM SR, filed in the scan's study)."""
    names = set()
    for scan in scans:
        names.add(f"{prefix}{scan.key}.json")
        if scan.kind == "dicom":
            names.add(f"{prefix}{scan.key}.sr.dcm")
    return names


def demographics() -> set[str]:
    return {value for scan in corpus() for value in scan.demographics}


def test_corpus_has_fifty_scans_with_every_kind_of_poison() -> None:
    scans = corpus()
    assert len(scans) >= 50
    assert {s.kind for s in scans} == {"png", "dicom", *POISON_KINDS}
    assert len({s.key for s in scans}) == len(scans)


def test_dicoms_carry_the_demographics_the_log_test_looks_for() -> None:
    for scan in corpus():
        if scan.kind == "dicom":
            ds = pydicom.dcmread(io.BytesIO(scan.data))
            assert str(ds.PatientName).startswith("Quillfeather") and ds.PatientAddress
            assert sniff(scan.data) == "dicom"


def test_jpeg_lossless_is_unsupported_here() -> None:
    """If a JPEG Lossless decoder gets installed, this corpus needs another unsupported syntax."""
    from medfn.codecs.dicom import decode_dicom
    from medfn.errors import UnsupportedMediaType

    scan = next(s for s in corpus() if s.kind == "jpeg-lossless")
    try:
        decode_dicom(scan.data, max_pixels=10**8, max_bytes=2**30)
    except UnsupportedMediaType:
        return
    raise AssertionError("SC_rgb_jpeg_gdcm.dcm decoded: pick an unsupported transfer syntax")
