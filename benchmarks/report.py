"""Turns the benchmark scripts' JSON into ratios against the targets, a markdown report and plots.

Reads what `medfn bench` left in --results (cold_start.json, server_cold_start.json, bundle_cold_start.json,
overhead.json, serving.json, serving_ceiling.json, pipeline.json, costs.json; a missing one is reported as not run;
runs.json says when, at which commit and with what command each section ran), prints the targets with their
measured ratios, and writes --markdown with two PNGs beside it:
throughput against concurrency, and latency distributions at each model's highest level.

    .venv/bin/python benchmarks/report.py --results .medfn/bench/results --markdown benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.stats import machine  # noqa: E402

PEERS = ("kserve", "bentoml")
KEPT = REPO / "benchmarks" / "results"


def load(results: Path) -> dict[str, dict]:
    found = {}
    for path in sorted(results.glob("*.json")):
        found[path.stem] = json.loads(path.read_text())
    return found


def serving_row(rows: list[dict], model: str, server: str, concurrency: int, encoding: str = "json") -> dict | None:
    return next(
        (
            r
            for r in rows
            if (r["model"], r["server"], r["concurrency"], r["encoding"]) == (model, server, concurrency, encoding)
        ),
        None,
    )


def targets(data: dict[str, dict]) -> list[tuple[str, str, str, str]]:
    """(target, goal, measured, met?) rows: every ratio the issue asks for, computed, never assumed."""
    out = []
    serving = data.get("serving")
    if serving:
        rows = serving["rows"]
        goals = [(m, "json", 2.0) for m in ("breast_mass", "scan_classifier")] + [
            ("resnet18", "json", 2.0),
            ("resnet18", "binary", 3.0),
        ]
        for model, encoding, goal in goals:
            medfn = serving_row(rows, model, "medfn", 8, encoding)
            peers = [r for p in PEERS if (r := serving_row(rows, model, p, 8))]
            if medfn and peers:
                best = max(peers, key=lambda r: r["rps"])
                ratio = medfn["rps"] / best["rps"]
                measured = (
                    f"{shown(ratio, goal)}x ({medfn['rps']:.0f} vs {best['rps']:.0f})"
                    f"{round_range(medfn, best, 'rps', 'x')}"
                )
                met = yes(ratio >= goal)
                if "server_cpu_ms" in medfn and best.get("server_cpu_ms"):
                    # where the rate comes from: CPU per request, and how much of medfn's is the model's own run
                    own = serving.get("session_cpu_ms", {}).get(model)
                    measured += (
                        f"; server CPU per request {medfn['server_cpu_ms']:.2f} vs {best['server_cpu_ms']:.2f} ms"
                        + (f" (the model's own run: {own:.2f})" if own else "")
                    )
                ceiling = serving.get("inference_ceiling_rps", {}).get(model)
                if ceiling and goal * best["rps"] > ceiling:
                    # no server can answer faster than the model runs: say so rather than just "not met"
                    measured += (
                        f"; the goal, {goal * best['rps']:.0f} req/s, is over bare session.run's "
                        f"{ceiling:.0f} runs/s here"
                    )
                    met += " (unreachable on this machine)" if ratio < goal else ""
                out.append(
                    (
                        f"req/s at concurrency 8, {model}, medfn {encoding} / best peer ({best['server']}, JSON)",
                        f">= {goal:.0f}x",
                        measured,
                        met,
                    )
                )
        for model in ("breast_mass", "scan_classifier", "resnet18"):
            medfn = serving_row(rows, model, "medfn", 32)
            peers = [r for p in PEERS if (r := serving_row(rows, model, p, 32))]
            if medfn and peers:
                best = min(peers, key=lambda r: r["p99_ms"])
                ratio = medfn["p99_ms"] / best["p99_ms"]
                out.append(
                    (
                        f"p99 at concurrency 32, {model}, medfn / lowest peer ({best['server']})",
                        "<= 0.50",
                        f"{shown(ratio, 0.5)} ({medfn['p99_ms']:.1f} vs {best['p99_ms']:.1f} ms)"
                        f"{round_range(medfn, best, 'p99_ms', '')}",
                        yes(ratio <= 0.5),
                    )
                )
    for row in (data.get("serving_ceiling") or {}).get("summary", []):
        out.append(
            (
                f"serving path ceiling, near-zero-cost model, {row['body']} bodies, {row['workers']} process(es): "
                "medfn serve / bare loopback floor (same uvicorn, client and body)",
                "proxy: >= 0.80 is the GPU goal",
                f"{row['ratio']:.2f} ({row['served_rps']:.0f} vs {row['floor_rps']:.0f} req/s, "
                f"{row['served_rps_per_process']:.0f} a process; batches of {row['batch_mean']:.1f}; "
                f"server CPU {row['served_cpu_ms']:.2f} vs {row['floor_cpu_ms']:.2f} ms a request; "
                f"a lone caller's p50 {row.get('lone_extra_ms', float('nan')):+.2f} ms over the floor's)",
                yes(row["ratio"] >= 0.8),
            )
        )
    cold = data.get("server_cold_start")
    if cold and "kserve" in cold["median_s"]:
        m, k = cold["median_s"]["medfn"], cold["median_s"]["kserve"]
        out.append(
            (
                "cold start, medfn serve / KServe (spawn to first 200)",
                "<= 0.50",
                f"{shown(m / k, 0.5)} ({m * 1000:.0f} vs {k * 1000:.0f} ms)",
                yes(m / k <= 0.5),
            )
        )
    return out


def shown(ratio: float, goal: float) -> str:
    """Two decimals, or as many more as it takes not to round onto the goal and hide which side it is on."""
    for decimals in range(2, 7):
        text = f"{ratio:.{decimals}f}"
        if ratio == goal or text != f"{goal:.{decimals}f}":
            return text
    return text


def round_range(medfn: dict, peer: dict, figure: str, unit: str) -> str:
    """ ", rounds a-b": the lowest and highest of the per-round ratios, when there were rounds."""
    pairs = list(zip(medfn.get("rounds", []), peer.get("rounds", []), strict=True))
    if len(pairs) < 2:
        return ""
    ratios = [m[figure] / p[figure] for m, p in pairs]
    return f", rounds {min(ratios):.2f}-{max(ratios):.2f}{unit}"


def yes(met: bool) -> str:
    return "met" if met else "not met"


def versions(serving: dict) -> str:
    """ "kserve 0.21.0, bentoml 1.4.39; onnxruntime: medfn 1.30.0, ...": what each server ran."""
    text = ", ".join(f"{k} {v}" for k, v in serving["versions"].items())
    runtimes = serving.get("onnxruntime")  # recorded since 2026-11-23
    return text + ("; onnxruntime: " + ", ".join(f"{k} {v}" for k, v in runtimes.items()) if runtimes else "")


def serving_table(rows: list[dict]) -> list[str]:
    return [
        "| model | server | body | concurrency | requests | req/s | p50 ms | p99 ms "
        "| server CPU ms/req | client CPU ms/req |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *[
            f"| {r['model']} | {r['server']} | {r['encoding']} | {r['concurrency']} | {r['requests']} | {r['rps']:.1f} "
            f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {_cpu(r, 'server_cpu_ms')} | {_cpu(r, 'client_cpu_ms')} |"
            for r in rows
        ],
    ]


def other_machines() -> list[tuple[str, dict]]:
    """Serving runs kept from machines other than the one `medfn bench` runs on: each a
    serving_compare.py JSON committed as benchmarks/results/serving-<machine>-<date>.json."""
    return [(path.name, json.loads(path.read_text())) for path in sorted(KEPT.glob("serving-*.json"))]


def elsewhere(runs: list[tuple[str, dict]]) -> list[str]:
    """The same targets, computed the same way, from serving runs on other machines: where this
    machine's cores cap a target, they show what the servers do when the cores do not."""
    if not runs:
        return []
    lines = [
        "## The same comparison on other machines",
        "",
        "Kept runs of `benchmarks/serving_compare.py` from other machines (benchmarks/results/), reported with "
        "the same code as above. Not re-measured by `medfn bench`.",
        "",
    ]
    for name, serving in runs:
        host = serving["machine"]
        lines += [
            f"### {host['cpu']}, {host['cores']} cores ({name})",
            "",
            f"`{serving.get('command', 'benchmarks/serving_compare.py')}`; CPython {host['python']}; "
            f"{versions(serving)}; load average {host.get('load_average', 'not recorded')} as it ended; "
            f"figures are medians of {serving.get('rounds', 1)} rounds.",
            "",
            "| target | goal | measured | |",
            "|---|---|---|---|",
            *[f"| {t} | {g} | {m} | {ok} |" for t, g, m, ok in targets({"serving": serving})],
            "",
            *serving_table(serving["rows"]),
            "",
        ]
    return lines


def _cpu(row: dict, figure: str) -> str:
    return f"{row[figure]:.2f}" if figure in row else "not measured"  # results from before CPU was measured


def plot(serving: dict, folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = serving["rows"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    series = sorted({(r["server"], r["encoding"]) for r in rows})
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        for server, encoding in series:
            points = sorted(
                (r["concurrency"], r["rps"])
                for r in rows
                if (r["model"], r["server"], r["encoding"]) == (model, server, encoding)
            )
            if points:
                ax.plot(
                    *zip(*points, strict=True),
                    marker="o",
                    linestyle="--" if encoding == "binary" else "-",
                    label=f"{server} ({encoding})",
                )
        ax.set(
            title=f"{model}: throughput", xlabel="concurrency (callers in flight)", ylabel="requests/s", xscale="log"
        )
        ax.set_xticks(serving["levels"], [str(x) for x in serving["levels"]])
        ax.minorticks_off()  # log-scale minor labels would overprint the levels
        ax.set_ylim(bottom=0)
        ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "bench_throughput.png", dpi=100)
    top = max(serving["levels"])
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        chosen = [r for r in rows if r["model"] == model and r["concurrency"] == top]
        ax.boxplot([r["latencies_ms"] for r in chosen], whis=(1, 99), showfliers=False)
        ax.set_xticks(range(1, len(chosen) + 1), [f"{r['server']}\n{r['encoding']}" for r in chosen])
        ax.set(title=f"{model}: latency at concurrency {top} (whiskers p1-p99)", ylabel="ms", yscale="log")
    fig.tight_layout()
    fig.savefig(folder / "bench_latency.png", dpi=100)
    return ["bench_throughput.png", "bench_latency.png"]


def markdown(data: dict[str, dict], pictures: list[str], kept: list[tuple[str, dict]] | None = None) -> str:
    """The report; `kept`: serving runs from other machines (other_machines()), shown after the targets."""
    host = (data.get("serving") or {}).get("machine") or machine()
    runs = data.get("runs") or {}
    lines = [
        "# Benchmark results",
        "",
        f"Measured on {host['cpu']}, {host['cores']} cores **shared with other work** (load average "
        f"{host['load_average']}, 1, 5, 15 min, as the serving runs ended; each section's load just before it "
        f"started is below). CPython {host['python']}, onnxruntime on CPU. Every server and the load generator "
        "share those cores, so read the ratios, not the absolute rates.",
        "",
        "Produced by `.venv/bin/medfn bench` (`pip install -e '.[bench]'`), section by section (`--only` reruns "
        "a section and keeps the others):",
        "",
        "| section | started | commit | load average before | command |",
        "|---|---|---|---|---|",
        *[
            f"| {name} | {run['started']} | {run['commit']} | {run['load_average_before']} | `{run['command']}` |"
            for name, run in runs.items()
        ],
        "",
        "## Targets",
        "",
        "| target | goal | measured | |",
        "|---|---|---|---|",
        *[f"| {t} | {g} | {m} | {ok} |" for t, g, m, ok in targets(data)],
        "",
    ]
    lines += elsewhere(kept or [])
    serving = data.get("serving")
    if serving:
        lines += [
            "## Serving: medfn serve, KServe, BentoML",
            "",
            f"Same ONNX files, same OIP v2 JSON body, one server process each, their defaults ({versions(serving)}); "
            "medfn also with the binary tensor extension. Models: breast_mass's MLP (30 features), scan_classifier's "
            "CNN (1x128x128, 160 KB of JSON), and a ResNet-18-shaped classifier (model_store/build/resnet18_bench.py, "
            "3x224x224, 1.5 MB of JSON: values to 6 decimals). Each answer is checked against onnxruntime before a "
            "server is timed. "
            f"Each figure is the median of {serving.get('rounds', 1)} rounds over every server "
            "(serving.json keeps each round's). "
            "CPU ms/req: CPU time per request of the server's processes and of the load generator, which share the "
            "cores. "
            "Latencies are of the steady state: each caller's first request (it opens the connection, and every caller "
            "sends it at once) counts in req/s but is not timed.",
            "",
            *serving_table(serving["rows"]),
            "",
        ]
        if "inference_ceiling_rps" in serving:
            lines += [
                "Ceiling: bare `session.run` on one request's input in this process, with no HTTP and no load "
                "generator on the cores (the better of one caller on medfn's session and one single-thread caller per "
                "core), runs/s: "
                + ", ".join(f"{k} {v:,.0f}" for k, v in serving["inference_ceiling_rps"].items())
                + ".",
                "",
            ]
        if "session_cpu_ms" in serving:
            lines += [
                "The model's own share of medfn's server CPU: one bare run on medfn's session takes, in CPU ms, "
                + ", ".join(f"{k} {v:.2f}" for k, v in serving["session_cpu_ms"].items())
                + ".",
                "",
            ]
        lines += [f"- skipped {k}: {v}" for k, v in serving["skipped"].items()]
        lines += [f"![{p}]({p})" for p in pictures] + [""]
    if "server_cold_start" in data:
        cold = data["server_cold_start"]
        lines += [
            "## Cold start of the servers (spawn to first 200, breast_mass)",
            "",
            "| server | median ms | samples ms |",
            "|---|---|---|",
            *[
                f"| {k} | {v * 1000:.0f} | {', '.join(f'{s * 1000:.0f}' for s in cold['samples_s'][k])} |"
                for k, v in cold["median_s"].items()
            ],
            "",
        ]
    if "cold_start" in data:
        rows = data["cold_start"]["functions"]
        lines += [
            "## Cold start of each Lambda handler beside the floor, and peak memory",
            "",
            f"Median of {data['cold_start']['runs']} fresh processes. Floor: imports + session + one run; app floor: "
            "+ a one-route FastAPI app behind Mangum; handler: medfn init + first 200 to an API Gateway event; "
            "peak memory: the handler process's ru_maxrss.",
            "",
            "| function | floor ms | app floor ms | handler ms | handler / floor | peak MiB |",
            "|---|---|---|---|---|---|",
            *[
                f"| {f} | {r['floor'] * 1000:.0f} | {r['app floor'] * 1000:.0f} | {r['handler'] * 1000:.0f} "
                f"| {r['handler'] / r['floor']:.2f} | {r['peak_rss_mib']:.0f} |"
                for f, r in rows.items()
            ],
            "",
        ]
    if "bundle_cold_start" in data:
        b = data["bundle_cold_start"]
        plain, compiled = b["median_s"]["source only"], b["median_s"]["with bytecode"]
        lines += [
            "## Cold start of a Lambda bundle under Python 3.12, with and without bytecode",
            "",
            f"{b['function']}'s bundle as `medfn package` stages it ({b['arch']}), run read-only by "
            "`python3.12 -I -S -B` (no site-packages, nothing written) from spawn to the first 200; "
            f"median of {len(b['samples_s']['source only'])}.",
            "",
            "| bundle | median ms |",
            "|---|---|",
            f"| source only | {plain * 1000:.0f} |",
            f"| with python3.12 bytecode (what `medfn package` ships) | {compiled * 1000:.0f} |",
            f"| ratio | {compiled / plain:.2f} |",
            "",
        ]
    if "overhead" in data:
        o = data["overhead"]
        lines += [
            "## Warm per-call overhead over a bare session.run",
            "",
            f"{o['function']}, {o['calls']} calls x 5 rounds.",
            "",
            "| path | us per call | overhead us | ratio to bare |",
            "|---|---|---|---|",
            f"| bare session.run | {o['bare_us']:.0f} | | |",
            *[
                f"| {label} | {o[key]:.0f} | {o[key] - o['bare_us']:.0f} | {o[key] / o['bare_us']:.2f} |"
                for label, key in (("handler, OIP binary", "oip_binary_us"), ("handler, task route PNG", "task_png_us"))
            ],
            "",
        ]
    if "pipeline" in data:
        p = data["pipeline"]
        lines += [
            "## Scan pipeline throughput beside the decode + inference floor",
            "",
            f"{p['scans']} scans of {p['size']}x{p['size']} per kind, median of {p['rounds']} rounds.",
            "",
            "| kind | floor scans/s | watch scans/s | watch / floor |",
            "|---|---|---|---|",
            *[
                f"| {r['kind']} | {r['floor_scans_s']:.1f} | {r['watch_scans_s']:.1f} | {r['ratio']:.2f} |"
                for r in p["rows"]
            ],
            "",
        ]
    if "costs" in data:
        lines += [
            "## Package size and cost per million calls",
            "",
            "Warm duration of the handler answering a task request on this machine; arm64 Lambda "
            "(duration x memory + $0.20 per million requests, API Gateway not included) beside SageMaker Serverless "
            "Inference at the smallest size holding the same memory (1 GB steps), same duration, plus its "
            "data-processing charge. Prices and their "
            "source: src/medfn/metering/pricing.py.",
            "",
            "| function | memory MB | ms | zip MiB | unzipped MiB | Lambda $/M | SageMaker $/M | SageMaker / Lambda |",
            "|---|---|---|---|---|---|---|---|",
            *[
                f"| {r['function']} | {r['memory_mb']} | {r['duration_ms']:.2f} | {r['zip_mib']:.1f} "
                f"| {r['unzipped_mib']:.1f} | {r['lambda_per_million']:.2f} | {r['sagemaker_per_million']:.2f} "
                f"| {r['sagemaker_per_million'] / r['lambda_per_million']:.2f} |"
                for r in data["costs"]["rows"]
            ],
            "",
        ]
    missing = {
        "serving",
        "server_cold_start",
        "bundle_cold_start",
        "cold_start",
        "overhead",
        "pipeline",
        "costs",
    } - set(data)
    if missing:
        lines += [f"Not run: {', '.join(sorted(missing))}.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--markdown", type=Path, required=True)
    args = parser.parse_args()
    data = load(args.results)
    print("\ntargets (measured ratios):")
    for target, goal, measured, met in targets(data):
        print(f"  {target}: {measured}  [goal {goal}: {met}]")
    pictures = plot(data["serving"], args.markdown.parent) if "serving" in data else []
    args.markdown.write_text(markdown(data, pictures, other_machines()))
    print(f"\nwrote {args.markdown}" + (f" and {', '.join(pictures)} beside it" if pictures else ""))


if __name__ == "__main__":
    main()
