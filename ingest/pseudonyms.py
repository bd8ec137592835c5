"""The pseudonym rule: ids that end up in MQTT topics, InfluxDB tags and event payloads.

Letters, digits, '_', '.', '-', at most 64, starting with a letter or digit: no spaces, so never a
person's name. One definition for the config (``[[devices]].id``) and the command line.
"""

from __future__ import annotations

import re

PSEUDONYM_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def is_pseudonym(text: str) -> bool:
    """True if ``text`` may be used as a device, patient or site id."""
    return re.match(PSEUDONYM_PATTERN, text) is not None
