"""Synthesized recordings shared by the tests of one process: each scenario is synthesized once.

Several tests read the same long scenario (a 150 s walk, the 300 s profiles); synthesizing it is
most of their time. :func:`recording` caches the result per scenario (a built-in name, or a
``Scenario``, keyed by its JSON, so an edited copy is a different entry). The sample arrays are
shared and read-only: a test that writes into them fails loudly (``ValueError: assignment
destination is read-only``) instead of silently changing what the next test reads; the label
lists are copied for each caller. Tests that check synthesis itself (determinism, the seed) call
``firmware_sim.signals.synthesize`` directly.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import OrderedDict

from firmware_sim.scenario import Scenario, builtin_scenario
from firmware_sim.signals import Recording, synthesize

#: What the cache may hold: recordings up to ``_ITEM_BYTES`` each (the 10-minute ``act_*`` days are
#: read by one test each and are not kept), at most ``_TOTAL_BYTES`` in all (oldest use dropped first).
_ITEM_BYTES = 16 * 2**20
_TOTAL_BYTES = 128 * 2**20
_CACHE: OrderedDict[str, Recording] = OrderedDict()


def _nbytes(rec: Recording) -> int:
    return int(rec.emg_uv.nbytes + rec.acc_g.nbytes)


def recording(scenario: str | Scenario) -> Recording:
    """The recording of ``scenario`` (a built-in name or a Scenario), synthesized once per process."""
    sc = builtin_scenario(scenario) if isinstance(scenario, str) else scenario
    key = sc.model_dump_json()
    shared = _CACHE.get(key)
    if shared is None:
        shared = synthesize(sc)
        shared.emg_uv.flags.writeable = False
        shared.acc_g.flags.writeable = False
        if _nbytes(shared) <= _ITEM_BYTES:
            _CACHE[key] = shared
            while sum(_nbytes(r) for r in _CACHE.values()) > _TOTAL_BYTES:
                _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    return dataclasses.replace(
        shared,
        channel_labels=list(shared.channel_labels),
        labels=copy.deepcopy(shared.labels),
        confounders=copy.deepcopy(shared.confounders),
        faults=copy.deepcopy(shared.faults),
    )
