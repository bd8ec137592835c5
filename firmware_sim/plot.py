"""Plot a scenario: every EMG channel, the accelerometer, and the ground-truth labels on top.

    python -m firmware_sim.plot SCENARIO -o docs/img/NAME.png [--start S] [--end S]

SCENARIO is a built-in scenario name (``demo``, ``sci_profile``, ...) or a path to a TOML file.
Spasm events are shaded in their type's colour; confounders are drawn as hatched grey spans with
their kind written above them, so a reader sees at a glance what the detector must report and
what it must ignore. Needs matplotlib (the optional ``plot`` extra); the Agg backend is used, so
no display is required.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from firmware_sim.scenario import ScenarioError, resolve_scenario
from firmware_sim.signals import Recording, synthesize

__all__ = ["EVENT_COLOURS", "main", "plot_recording", "resolve_scenario"]

EVENT_COLOURS = {
    "twitch": "tab:red",
    "phasic": "tab:orange",
    "tonic": "tab:purple",
    "clonus": "tab:blue",
    "tremor": "tab:green",
}


def plot_recording(rec: Recording, out: str | Path, start_s: float = 0.0, end_s: float | None = None) -> None:
    """Draw ``rec`` between ``start_s`` and ``end_s`` into the image file ``out`` (PNG, SVG, PDF...)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    end = rec.duration_s if end_s is None else min(end_s, rec.duration_s)
    if not 0 <= start_s < end:
        raise ValueError(f"empty time window {start_s}-{end} s (recording is {rec.duration_s:.1f} s)")
    nch = len(rec.channel_labels)
    fig, axes = plt.subplots(
        nch + 1,
        1,
        sharex=True,
        figsize=(12, 1.3 * nch + 2.0),
        gridspec_kw={"height_ratios": [1.0] * nch + [1.2]},
        squeeze=False,
    )
    ax_list = [a for row in axes for a in row]
    fs, fa = rec.emg_rate_hz, rec.acc_rate_hz
    i0, i1 = int(start_s * fs), int(end * fs)
    # Decimate the drawing only (min/max per pixel column keeps bursts and spikes visible).
    step = max(1, (i1 - i0) // 4000)
    t = np.arange(i0, i1, step) / fs
    for ci, label in enumerate(rec.channel_labels):
        ax = ax_list[ci]
        x = rec.emg_uv[i0:i1, ci]
        if step > 1:
            k = len(x) // step
            xs = x[: k * step].reshape(k, step)
            ax.fill_between(t[:k], xs.min(axis=1), xs.max(axis=1), color="0.25", lw=0)
        else:
            ax.plot(t, x, color="0.25", lw=0.4)
        ax.set_ylabel(f"{label}\n(uV)", fontsize=7)
        ax.tick_params(labelsize=7)
        _spans(ax, rec, label, start_s, end)
    ax = ax_list[-1]
    a0, a1 = int(start_s * fa), int(end * fa)
    ta = np.arange(a0, a1) / fa
    for k, (name, colour) in enumerate(zip("xyz", ("tab:red", "tab:green", "tab:blue"), strict=True)):
        ax.plot(ta, rec.acc_g[a0:a1, k], color=colour, lw=0.6, label=f"acc {name}")
    ax.set_ylabel("ACC (g)", fontsize=7)
    ax.set_xlabel("time (s)")
    ax.tick_params(labelsize=7)
    ax.legend(loc="upper right", fontsize=6, ncol=3)
    _spans(ax, rec, "ACC", start_s, end)
    ax.set_xlim(start_s, end)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c, alpha=0.3) for c in EVENT_COLOURS.values()]
    handles.append(plt.Rectangle((0, 0), 1, 1, facecolor="none", edgecolor="0.5", hatch="///"))
    fig.suptitle(f"scenario {rec.scenario_name} (seed {rec.seed})", fontsize=9, y=0.995)
    fig.legend(
        handles,
        [*EVENT_COLOURS, "confounder"],
        loc="upper center",
        bbox_to_anchor=(0.5, 0.97),
        ncol=6,
        fontsize=7,
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _spans(ax: Any, rec: Recording, channel: str, start: float, end: float) -> None:
    for ev in rec.labels:
        if ev["channel"] == channel and ev["offset_s"] > start and ev["onset_s"] < end:
            ax.axvspan(ev["onset_s"], ev["offset_s"], color=EVENT_COLOURS[ev["type"]], alpha=0.3, lw=0)
    whole = 0.9 * rec.duration_s
    always: list[str] = []
    for cf in rec.confounders:
        if cf["channel"] != channel or cf["offset_s"] <= start or cf["onset_s"] >= end:
            continue
        if cf["offset_s"] - cf["onset_s"] >= whole:
            # Whole-recording confounders (mains, ECG, wander): a note, not a span over everything.
            if cf["kind"] not in always:
                always.append(cf["kind"])
            continue
        ax.axvspan(cf["onset_s"], cf["offset_s"], facecolor="none", edgecolor="0.5", hatch="///", lw=0.5)
        ax.text(
            max(cf["onset_s"], start),
            1.0,
            cf["kind"],
            transform=ax.get_xaxis_transform(),
            fontsize=6,
            color="0.35",
            va="bottom",
        )
    if always:
        ax.text(
            0.005,
            0.95,
            " + ".join(always),
            transform=ax.transAxes,
            fontsize=6,
            color="0.3",
            va="top",
            bbox={"facecolor": "white", "alpha": 0.7, "lw": 0},
        )


def main(argv: list[str] | None = None) -> int:
    """Command line: synthesize a scenario and plot it."""
    ap = argparse.ArgumentParser(prog="python -m firmware_sim.plot", description=__doc__.split("\n\n")[0])
    ap.add_argument("scenario", help="built-in scenario name or path to a scenario TOML file")
    ap.add_argument("-o", "--output", required=True, help="image file to write (.png, .svg, .pdf)")
    ap.add_argument("--start", type=float, default=0.0, help="window start, s (default 0)")
    ap.add_argument("--end", type=float, default=None, help="window end, s (default: end of the recording)")
    ap.add_argument("--labels", default=None, help="also write the ground-truth labels JSON here")
    args = ap.parse_args(argv)
    try:
        sc = resolve_scenario(args.scenario)
    except ScenarioError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("error: plotting needs matplotlib (pip install 'neurospasm[plot]')", file=sys.stderr)
        return 2
    rec = synthesize(sc)
    try:
        plot_recording(rec, args.output, args.start, args.end)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.labels:
        Path(args.labels).write_text(rec.labels_json() + "\n", encoding="utf-8")
    print(
        f"wrote {args.output}: {len(rec.labels)} events, {len(rec.confounders)} confounders", file=sys.stderr
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
