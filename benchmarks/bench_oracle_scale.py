"""How oracle construction cost grows with n, exact against approximate, side by side with vmo.

Run: ``.venv/bin/python benchmarks/bench_oracle_scale.py`` (``--help`` for
options). Three parts, each optional:

``--growth``
    Median time (of ``--repeat`` runs after a warm-up) against n for the
    factor oracle (iid tokens, K = 64, exact LRS), the audio oracle on
    structured frames (8 unit prototypes in 6 motifs + noise, 768-D, cosine
    threshold 0.3), and on unstructured frames (iid Gaussian 768-D, cosine
    threshold 0.05: no two frames match) with exact and with approximate
    (``search="auto"``) root search. Writes log-log plots with the fitted
    slope of each series to ``benchmarks/plots/``.
``--agreement``
    At 10k x 768: the exact oracle against ``search="auto"`` (the default)
    and ``search="approximate"`` on five kinds of material: suffix-link
    agreement, the share of frames linked, how many of the exact oracle's
    links the approximate one also makes, LRS distribution, information
    rate, root out-degree, ``check_oracle`` errors, and time.
``--vmo``
    vmo (PyPI ``vmo``, the reference Python implementation of the variable
    Markov oracle) installed into a throwaway virtual environment, timed on
    the same data in a subprocess, for the side-by-side ratio; one run per
    size (it is slow), at the sizes given by ``--vmo-sizes``.

Speed depends on the machine's load: record ``uptime`` with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402

from chandra.oracle import (  # noqa: E402
    build_audio_oracle,
    build_factor_oracle,
    check_oracle,
    information_rate,
)
from _common import timed  # noqa: E402
from helpers_oracle import motif_frames  # noqa: E402

PLOTS = ROOT / "benchmarks" / "plots"
APPROX = "audio oracle, unstructured, approximate (auto: index from 4,096 root children)"
VMO_PINS = ["vmo==0.30.5", "numpy==2.4.6", "scipy==1.17.1"]


# --------------------------------------------------------------------------- data


def tokens(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 64, n)


def motif_features(n: int, d: int = 768, *, n_proto: int = 8, noise: float = 0.01, seed: int = 0) -> np.ndarray:
    """Unit prototypes recurring as motifs of 4-11 frames, per-dimension noise, L2-normalised; float32 (n, d)."""
    return motif_frames(n, d, n_proto, noise=noise, seed=seed, motif_len=(4, 12), n_motifs=max(6, n_proto // 4),
                        normalise=True)[0]


def noise(n: int, d: int = 768, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def repeats(n: int, d: int = 768, *, p_new: float = 0.5, spread: float = 0.45, seed: int = 2) -> np.ndarray:
    """Half new iid frames, half noisy copies of a random earlier frame (cosine distance ~0.09 to it)."""
    rng = np.random.default_rng(seed)
    X = np.empty((n, d), np.float32)
    X[0] = rng.standard_normal(d)
    for i in range(1, n):
        new = rng.random() < p_new
        X[i] = rng.standard_normal(d) if new else X[rng.integers(0, i)] + spread * rng.standard_normal(d)
    return X


def drift(n: int, d: int = 768, *, latent: int = 16, seed: int = 3) -> np.ndarray:
    """A slow random walk in 16 dimensions (folded by sin), embedded in d dimensions with noise: low intrinsic rank."""
    rng = np.random.default_rng(seed)
    Z = np.sin(np.cumsum(0.3 * rng.standard_normal((n, latent)), axis=0))
    return (Z @ rng.standard_normal((latent, d)) + 0.3 * rng.standard_normal((n, d))).astype(np.float32)


def tail_threshold(X: np.ndarray, share: float, *, sample: int = 2000, seed: int = 4) -> float:
    """A cosine threshold below which ``share`` of random frame pairs fall."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(X.shape[0], min(sample, X.shape[0]), replace=False)
    U = X[idx] / np.linalg.norm(X[idx], axis=1, keepdims=True)
    d = 1.0 - U @ U.T
    return float(np.quantile(d[np.triu_indices(len(idx), 1)], share))


# --------------------------------------------------------------------------- timing


def slope(ns, ts) -> float:
    """Least-squares slope of log t against log n."""
    x, y = np.log(np.asarray(ns, float)), np.log(np.asarray(ts, float))
    return float(np.polyfit(x, y, 1)[0])


def growth(sizes: dict, repeat: int, *, warm_up_all: bool = True) -> dict:
    series: dict = {}

    def run(name, ns, make, build, repeat_for=None):
        rows = []
        for k, n in enumerate(ns):
            data = make(n)
            r = repeat if repeat_for is None else repeat_for(n)
            med, _, runs, _ = timed(lambda: build(data), r, warm_up=warm_up_all or k == 0)
            rows.append({"n": n, "median_s": med, "runs_s": runs})
            print(f"  {name:44s} n={n:>9,}  {med:9.4f} s  (runs {', '.join(f'{t:.3f}' for t in runs)})", flush=True)
        series[name] = {"rows": rows, "slope": slope([r["n"] for r in rows], [r["median_s"] for r in rows])}

    print("growth:", flush=True)
    if sizes.get("factor"):
        run("factor oracle (exact LRS), iid tokens K=64", sizes["factor"], tokens, build_factor_oracle)
    if sizes.get("structured"):
        run("audio oracle, structured, 768-D", sizes["structured"], motif_features,
            lambda X: build_audio_oracle(X, threshold=0.3, search="exact"))
    if sizes.get("unstructured_exact"):
        run("audio oracle, unstructured, exact", sizes["unstructured_exact"], noise,
            lambda X: build_audio_oracle(X, threshold=0.05, search="exact"),
            repeat_for=lambda n: repeat if n <= 20_000 else 1)
    if sizes.get("unstructured_approx"):
        run(APPROX, sizes["unstructured_approx"], noise,
            lambda X: build_audio_oracle(X, threshold=0.05, search="auto"))
    return series


# --------------------------------------------------------------------------- agreement


def _lrs_stats(lrs: np.ndarray) -> dict:
    v = lrs[1:]
    return {"mean": float(v.mean()), "median": float(np.median(v)), "p90": float(np.quantile(v, 0.9)),
            "max": int(v.max()), "zero_share": float(np.mean(v == 0))}


def agreement(n: int) -> list[dict]:
    base = noise(n)
    cases = [
        ("structured, 3,000 prototypes (noise 0.01)", motif_features(n, n_proto=3000, seed=5), 0.3),
        ("unstructured: iid, theta 0.05 (no pair within)", base, 0.05),
        ("unstructured: iid, theta at the 1e-5 pair quantile", base, tail_threshold(base, 1e-5)),
        ("unstructured: iid, theta at the 1e-4 pair quantile", base, tail_threshold(base, 1e-4)),
        ("half new frames, half noisy repeats", repeats(n), 0.3),
        ("low-rank drift (16-D walk in 768-D)", drift(n), 0.05),
    ]
    out = []
    print(f"agreement at {n:,} x 768:", flush=True)
    for name, X, theta in cases:
        t0 = time.perf_counter()
        exact = build_audio_oracle(X, threshold=theta, search="exact")
        t_exact = time.perf_counter() - t0
        row = {"case": name, "threshold": theta, "exact_s": t_exact, "root_exact": int(exact.transitions(0).size),
               "linked_exact": float(np.mean(exact.sfx[1:] > 0)), "lrs_exact": _lrs_stats(exact.lrs),
               "ir_exact": information_rate(exact)}
        for mode in ("auto", "approximate"):
            t0 = time.perf_counter()
            approx = build_audio_oracle(X, threshold=theta, search=mode)
            t_approx = time.perf_counter() - t0
            linked = exact.sfx[1:] > 0
            errors = [v for v in check_oracle(approx, features=X) if v["severity"] == "error"]
            row[mode] = {
                "mode": approx.search["mode"], "s": t_approx,
                "index_searches": approx.search.get("index_searches", 0),
                "sfx_agreement": float(np.mean(approx.sfx == exact.sfx)),
                "same_structure": bool(all(np.array_equal(getattr(approx, k), getattr(exact, k))
                                           for k in ("sfx", "lrs", "trn_ptr", "trn_dst"))),
                "linked": float(np.mean(approx.sfx[1:] > 0)),
                "exact_links_kept": float(np.mean(approx.sfx[1:][linked] > 0)) if linked.any() else None,
                "root": int(approx.transitions(0).size), "lrs": _lrs_stats(approx.lrs),
                "ir": information_rate(approx), "check_errors": len(errors),
            }
        out.append(row)
        a, b = row["auto"], row["approximate"]
        print(f"  {name:52s} theta {theta:.4f}: exact {t_exact:6.2f} s, linked {row['linked_exact']:.4f}, "
              f"IR {row['ir_exact']:.3f} | auto ({a['mode']}) {a['s']:6.2f} s, sfx agree {a['sfx_agreement']:.4f}, "
              f"linked {a['linked']:.4f}, IR {a['ir']:.3f} | approximate {b['s']:6.2f} s, "
              f"sfx agree {b['sfx_agreement']:.4f}, linked {b['linked']:.4f}, kept "
              f"{b['exact_links_kept'] if b['exact_links_kept'] is None else round(b['exact_links_kept'], 4)}, "
              f"IR {b['ir']:.3f}, equal {b['same_structure']}, check errors {b['check_errors']}", flush=True)
    return out


# --------------------------------------------------------------------------- vmo

_VMO_WORKER = r"""
import json, sys, time
import numpy as np
from vmo.VMO.oracle import build_oracle
kind, path, theta = sys.argv[1], sys.argv[2], float(sys.argv[3])
data = np.load(path)
t0 = time.perf_counter()
if kind == "tokens":
    build_oracle(list(data.tolist()), flag="f")
else:
    build_oracle(data, flag="a", threshold=theta, dfunc="cosine", dim=data.shape[1])
print(json.dumps({"s": time.perf_counter() - t0}))
"""


def vmo_python(given: str | None, workdir: Path) -> str:
    """A Python with vmo importable: ``given``, or a throwaway venv made here."""
    if given:
        return given
    venv = workdir / "vmo_venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    subprocess.run([py, "-m", "pip", "install", "--quiet", *VMO_PINS], check=True)
    return py


def vmo_times(py: str, sizes: dict, workdir: Path, timeout: float) -> dict:
    cases = {
        "factor oracle (exact LRS), iid tokens K=64": ("tokens", tokens, 0.0, sizes["factor"]),
        "audio oracle, structured, 768-D": ("features", motif_features, 0.3, sizes["structured"]),
        "audio oracle, unstructured, exact": ("features", noise, 0.05, sizes["unstructured"]),
    }
    out: dict = {}
    print("vmo (one run per size):", flush=True)
    for name, (kind, make, theta, ns) in cases.items():
        rows = []
        for n in ns:
            path = workdir / f"{kind}_{n}.npy"
            np.save(path, make(n))
            try:
                done = subprocess.run([py, "-c", _VMO_WORKER, kind, str(path), str(theta)], capture_output=True,
                                      text=True, check=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                print(f"  {name:44s} n={n:>9,}  > {timeout:.0f} s, stopped", flush=True)
                break
            s = json.loads(done.stdout.strip().splitlines()[-1])["s"]
            rows.append({"n": n, "s": s})
            print(f"  {name:44s} n={n:>9,}  {s:9.3f} s", flush=True)
        if rows:
            out[name] = {"rows": rows, "slope": slope([r["n"] for r in rows], [r["s"] for r in rows])
                         if len(rows) > 1 else None}
    return out


# --------------------------------------------------------------------------- plots


def plot(series: dict, vmo: dict, names: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, name in enumerate(names):
        colour = colours[k % len(colours)]
        if name in series:
            rows = series[name]["rows"]
            ax.loglog([r["n"] for r in rows], [r["median_s"] for r in rows], "o-", color=colour,
                      label=f"chandra: {name} (slope {series[name]['slope']:.2f})")
        if name in vmo:
            rows = vmo[name]["rows"]
            s = vmo[name]["slope"]
            ax.loglog([r["n"] for r in rows], [r["s"] for r in rows], "s--", color=colour, alpha=0.7,
                      label=f"vmo: {name}" + (f" (slope {s:.2f})" if s is not None else ""))
    ax.set_xlabel("n (frames)")
    ax.set_ylabel("seconds (median)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    print(f"wrote {path.relative_to(ROOT)}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--growth", action="store_true")
    ap.add_argument("--agreement", action="store_true")
    ap.add_argument("--vmo", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    ap.add_argument("--agreement-n", type=int, default=10_000)
    ap.add_argument("--vmo-python", default=None, help="a Python where vmo is installed (default: a throwaway venv)")
    ap.add_argument("--vmo-timeout", type=float, default=600.0)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--sizes", type=json.loads, default=None, help="JSON object overriding growth sizes per "
                    "series (keys factor, structured, unstructured_exact, unstructured_approx; [] skips one)")
    ap.add_argument("--warm-up-first-only", action="store_true", help="one warm-up call per series (at its "
                    "first size) instead of one per size: numba is compiled once per process; saves a full "
                    "build at the largest sizes on a slow or loaded machine")
    ap.add_argument("--exact-100k", action="store_true", help="also time the exact unstructured oracle at 100k "
                    "(about a minute on an idle machine)")
    args = ap.parse_args(argv)
    if not (args.growth or args.agreement or args.vmo):
        args.growth = args.agreement = args.vmo = True
    if args.quick:
        sizes = {"factor": [10_000, 30_000, 100_000], "structured": [2_500, 5_000, 10_000],
                 "unstructured_exact": [2_500, 5_000, 10_000], "unstructured_approx": [2_500, 10_000, 40_000]}
        vmo_sizes = {"factor": [3_000, 10_000], "structured": [1_000, 2_500], "unstructured": [1_000, 2_500]}
    else:
        sizes = {"factor": [10_000, 30_000, 100_000, 300_000, 1_000_000],
                 "structured": [2_500, 5_000, 10_000, 20_000, 40_000, 100_000],
                 "unstructured_exact": [2_500, 5_000, 10_000, 20_000, 40_000],
                 "unstructured_approx": [2_500, 5_000, 10_000, 20_000, 40_000, 100_000]}
        vmo_sizes = {"factor": [10_000, 30_000, 100_000], "structured": [2_500, 5_000, 10_000],
                     "unstructured": [1_000, 2_500, 5_000]}
    if args.exact_100k:
        sizes["unstructured_exact"].append(100_000)
    if args.sizes:
        sizes.update(args.sizes)
    result: dict = {"load_average_start": os.getloadavg(), "sizes": sizes}

    def save() -> None:  # after every part, so a long run that is stopped keeps what it measured
        if args.json:
            args.json.write_text(json.dumps(result, indent=1, default=float))

    series = growth(sizes, args.repeat, warm_up_all=not args.warm_up_first_only) if args.growth else {}
    result["growth"] = series
    result["load_average_after_growth"] = os.getloadavg()
    save()
    if args.agreement:
        result["agreement"] = agreement(args.agreement_n)
        result["load_average_after_agreement"] = os.getloadavg()
        save()
    vmo: dict = {}
    if args.vmo:
        with tempfile.TemporaryDirectory() as tmp:
            py = vmo_python(args.vmo_python, Path(tmp))
            vmo = vmo_times(py, vmo_sizes, Path(tmp), args.vmo_timeout)
        result["vmo"] = vmo
        for name, v in vmo.items():
            ours = {r["n"]: r["median_s"] for r in series.get(name, {}).get("rows", [])}
            ratios = {r["n"]: r["s"] / ours[r["n"]] for r in v["rows"] if r["n"] in ours}
            if ratios:
                v["ratio_vmo_over_chandra"] = ratios
                print(f"  vmo / chandra, {name}: " + ", ".join(f"n={n:,}: {q:,.0f}x" for n, q in ratios.items()))
    result["load_average_end"] = os.getloadavg()
    if series and not args.no_plots:
        plot(series, vmo, ["factor oracle (exact LRS), iid tokens K=64"], PLOTS / "oracle_factor.png",
             "Factor oracle with exact LRS: time against n (log-log)")
        plot(series, vmo, ["audio oracle, structured, 768-D", "audio oracle, unstructured, exact",
                           APPROX], PLOTS / "oracle_audio.png",
             "Audio oracle, 768-D: time against n (log-log)")
    save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
