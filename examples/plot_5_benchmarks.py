"""
The benchmarks at a glance
==========================

Plots of the measurements that ``benchmarks/`` stores as JSON (all on a 2-core CPU, one thread;
the pages :doc:`/performance` and :doc:`/monitor` say how each was taken). This page reads the
files; it runs no benchmark.
"""

# %%
# Where the files are: beside this script, in ``benchmarks/``.
import json
from pathlib import Path

import matplotlib.pyplot as plt

try:
    here = Path(__file__).resolve().parent
except NameError:  # sphinx-gallery runs the examples from their own folder
    here = Path.cwd()
results = here.parent / "benchmarks"


def load(name):
    return json.loads((results / name).read_text())


# %%
# One layer, the paper's 64×64 circle (float64): seconds to a relative objective gap of 1e−6, for
# lbinv's solvers, pyproximal's tuned PDHG and CVXPY with Clarabel
# (``benchmarks/results_peers_circle64_cpu.json``).
circle = load("results_peers_circle64_cpu.json")["instances"]["circle64"]
seconds = {name: m["seconds_1e-6"] for name, m in circle["methods"].items() if m.get("seconds_1e-6")}
seconds["clarabel"] = circle["clarabel"]["seconds"]
fig, ax = plt.subplots(figsize=(6, 2.8))
ax.barh(list(seconds), list(seconds.values()), color=["C0" if n.startswith("lbinv") else "C7" for n in seconds])
ax.set_xlabel("seconds to 1e-6")
ax.set_title("one layer, circle 64×64")
plt.tight_layout()

# %%
# ``make train``'s final inversion against the decoder, per noise level of the code
# (``benchmarks/results_monitor_cpu.json``): the inversion wins at σ = 0; with noise on the code the
# trained decoder stays ahead on these models.
runs = load("results_monitor_cpu.json")["make_train"]["results"]
fig, axes = plt.subplots(1, 2, figsize=(9, 3), sharey=True)
for ax, model in zip(axes, ("dense", "conv")):
    levels = runs[model]["final"]
    sigma = [level["sigma"] for level in levels]
    ax.plot(sigma, [level["psnr_inverted"] for level in levels], "o-", label="inversion")
    ax.plot(sigma, [level["psnr_decoded"] for level in levels], "s--", label="decoder")
    ax.set_title(f"{model} autoencoder")
    ax.set_xlabel("σ (noise on the code)")
axes[0].set_ylabel("PSNR (dB)")
axes[0].legend()
plt.tight_layout()

# %%
# The activations' proximal maps, whose cost sets a lifted sweep's: seconds of ``prox(v, t=0.5)``
# over seconds of the activation's forward, on a (80, 32, 16, 16) float32 tensor
# (``benchmarks/results_prox_cpu.json``).
ratios = {name: a["ratio"] for name, a in load("results_prox_cpu.json")["activations"].items()}
fig, ax = plt.subplots(figsize=(6, 3.6))
ax.barh(list(ratios), list(ratios.values()))
ax.set_xscale("log")
ax.axvline(1, color="k", lw=0.8)
ax.set_xlabel("prox time / forward time")
plt.tight_layout()
