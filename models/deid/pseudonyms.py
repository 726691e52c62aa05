"""Keyed-hash pseudonyms: the one implementation, ``pseudonym(key, patient_id)``, key first.

A pseudonym is ``prefix + 16 hex digits`` of HMAC-SHA256 under a secret key of
``"patient" + separator + the id (stripped)``: stable for one key, impossible to
turn back without it, 64 bits (no collision expected below billions of patients).

Two spellings exist because both are already written down and must not change
for existing stores (a changed spelling gives the same patient a new pseudonym):

- ``STORE_IDS`` (``P-``, ``patient:<id>``): person ids as the app shows them to
  roles outside the clinic and as pseudonymised tumour-board reports print them,
  keyed with the store's secret (``analytics.governance.pseudonyms``).
- ``DICOM_FILES`` (``OL-``, ``patient\\x00<id>``): the PatientID and PatientName
  that ``models.deid.deidentify`` writes into de-identified DICOM files (``oncolens
  deidentify`` folders are named by it), of the file's original PatientID, keyed
  with the store's de-identification key.

They never meet: different keys and different inputs (a person id, a PACS patient
id), and the prefix says which one a pseudonym is.

Here, in ``models``, so that de-identification can use it; ``analytics`` re-exports
it (``models`` never imports ``analytics``).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass


@dataclass(frozen=True)
class PseudonymScheme:
    """How a pseudonym is spelled: its prefix, and the separator in the keyed message."""

    prefix: str
    separator: str


STORE_IDS = PseudonymScheme(prefix="P-", separator=":")
DICOM_FILES = PseudonymScheme(prefix="OL-", separator="\x00")


def keyed_hash(key: bytes, domain: str, text: str, *, separator: str = ":") -> str:
    """HMAC-SHA256 (hex) of ``domain + separator + text``: one key, separate uses that never collide."""
    return hmac.new(key, f"{domain}{separator}{text}".encode(), hashlib.sha256).hexdigest()


def pseudonym(key: bytes, patient_id: int | str, scheme: PseudonymScheme = STORE_IDS) -> str:
    """The stable pseudonym of ``patient_id`` under ``key`` (``STORE_IDS``: ``P-`` + 16 hex digits)."""
    digest = keyed_hash(key, "patient", str(patient_id).strip(), separator=scheme.separator)
    return scheme.prefix + digest[:16]
