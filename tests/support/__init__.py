"""Shared test helpers: real servers (``support.servers``) and process/MQTT helpers (``support.harness``).

``tests/`` is on ``sys.path`` (pytest puts the root conftest's directory there), so tests import
``from support.harness import ...`` whatever folder they are in.
"""
