"""Write the results page and its latency plot from the benchmark results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PLOT_NAME = "intake-latency.png"


def _rows(results: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    rows = results.get("product", []) + results.get("baselines", [])
    return [row for row in rows if row["kind"] == kind]


def _at(results: dict[str, Any], kind: str, clients: int) -> dict[str, Any] | None:
    for row in _rows(results, kind):
        if row["connections"] == clients:
            return row
    return None


def _peak(results: dict[str, Any], kind: str) -> float:
    return max((row["rate"] for row in _rows(results, kind)), default=0.0)


def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def against(value: float, limit: float) -> str:
    """Format `value` with one decimal, or two where one would round it to
    `limit` and hide which side of the target it is on."""
    return fmt(value, 2 if round(value, 1) == limit else 1)


def plot(results: dict[str, Any], path: Path) -> None:
    # Imported here, so that a partial run, which draws nothing, and the
    # tests of the benchmark's parts need no matplotlib (the bench extra).
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [
        "linkdesk GET link",
        "linkdesk POST form",
        "chain GET, 2 lookups",
        "chain POST, 2 lookups + publish",
        "bare POST, uvicorn httptools",
    ]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for kind in kinds:
        rows = sorted(_rows(results, kind), key=lambda row: row["connections"])
        if not rows:
            continue
        clients = [row["connections"] for row in rows]
        left.plot(clients, [row["p99_ms"] for row in rows], marker="o", label=kind)
        right.plot(clients, [row["rate"] for row in rows], marker="o", label=kind)
    left.set(xlabel="concurrent connections", ylabel="p99 latency (ms)", yscale="log")
    left.axhline(20, color="grey", linestyle="--", linewidth=0.8)
    right.set(xlabel="concurrent connections", ylabel="requests per second")
    left.legend(fontsize=7)
    left.set_title("p99 latency (dashed: 20 ms target)", fontsize=9)
    right.set_title("throughput", fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _load_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| measurement | clients | req/s | p50 ms | p90 ms | p99 ms | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in results.get("product", []) + results.get("baselines", []):
        note = f" ({row['reused']} reused)" if row.get("reused") else ""
        lines.append(
            f"| {row['kind']}{note} | {row['connections']} | {fmt(row['rate'], 0)}"
            f" | {fmt(row['p50_ms'], 2)} | {fmt(row['p90_ms'], 2)}"
            f" | {fmt(row['p99_ms'], 2)} | {row['errors']} |"
        )
    return lines


def _events_published(backlog: dict[str, Any]) -> str:
    seconds = backlog.get("events_published_seconds")
    if seconds is None:
        return (
            "The outbox relay was off or did not publish every `created` "
            "event within 600 s."
        )
    return (
        f"Every `created` event was published {seconds:.1f} s after the start. "
        "While the consumer has a backlog, the outbox relay gives way to it "
        "and runs one round per poll interval, for at most "
        "`TICKET_OUTBOX_MAX_HOLD_SECONDS`."
    )


def _stored_table(results: dict[str, Any]) -> list[str]:
    """Acceptance to commit during each POST load step, which posts as fast
    as its clients can, so the ticket consumer may fall behind."""
    steps = [row for row in results.get("product", []) if row.get("stored")]
    if not steps:
        return []
    return [
        "During the POST load steps, which post as fast as their clients can:",
        "",
        "| measurement | clients | tickets | p50 ms | p99 ms | max ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *(
            f"| {row['kind']} | {row['connections']} | {row['stored']['rows']:,} | "
            f"{fmt(row['stored']['p50_ms'])} | {fmt(row['stored']['p99_ms'])} | "
            f"{fmt(row['stored']['max_ms'])} |"
            for row in steps
        ),
        "",
    ]


def _ratio_table(results: dict[str, Any], clients: list[int]) -> list[str]:
    pairs = [
        ("linkdesk POST form", "chain POST, 2 lookups + publish"),
        ("linkdesk POST form", "bare POST, uvicorn httptools"),
        ("linkdesk GET link", "chain GET, 2 lookups"),
        ("linkdesk GET link", "bare GET, uvicorn httptools"),
    ]
    lines = [
        "| ours | baseline | " + " | ".join(f"c={c}" for c in clients) + " | peak |",
        "| --- | --- |" + " ---: |" * (len(clients) + 1),
    ]
    for ours, base in pairs:
        cells = []
        for count in clients:
            mine, theirs = _at(results, ours, count), _at(results, base, count)
            if mine and theirs and theirs["rate"]:
                cells.append(f"{mine['rate'] / theirs['rate']:.2f}")
            else:
                cells.append("n/a")
        base_peak = _peak(results, base)
        peak = f"{_peak(results, ours) / base_peak:.2f}" if base_peak else "n/a"
        lines.append(f"| {ours} | {base} | " + " | ".join(cells) + f" | {peak} |")
    return lines


def _rounds(results: dict[str, Any]) -> list[dict[str, float]]:
    """Return the rate of each kind of step, per round of the paired steps."""
    rows = results.get("paired", [])
    return [
        {row["kind"]: row["rate"] for row in rows if row["round"] == turn}
        for turn in sorted({row["round"] for row in rows})
    ]


def paired_ratios(results: dict[str, Any], ours: str, base: str) -> list[float]:
    """Return our rate over the baseline's in each round of the paired steps."""
    return [
        rate[ours] / rate[base]
        for rate in _rounds(results)
        if rate.get(ours) and rate.get(base)
    ]


def _in_turns(results: dict[str, Any], ours: str, base: str) -> str:
    ratios = paired_ratios(results, ours, base)
    if not ratios:
        return ""
    return f"; in turns at 32 clients {min(ratios):.2f} to {max(ratios):.2f}"


def _paired_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| round | chain POST/s | linkdesk POST/s | ratio"
        " | chain GET/s | linkdesk GET/s | ratio |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for turn, rate in enumerate(_rounds(results), start=1):
        cells = [str(turn)]
        for ours, base in (
            ("linkdesk POST form", "chain POST, 2 lookups + publish"),
            ("linkdesk GET link", "chain GET, 2 lookups"),
        ):
            mine, theirs = rate.get(ours), rate.get(base)
            cells += [fmt(theirs, 0), fmt(mine, 0)]
            cells.append(f"{mine / theirs:.2f}" if mine and theirs else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _memory_table(results: dict[str, Any]) -> list[str]:
    names = list((results.get("rss_idle") or {}).keys())
    lines = [
        "| process | idle MB | max after a linkdesk load step MB | end MB |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name in names:
        seen = [row["rss_after"].get(name) for row in results.get("product", [])]
        seen = [value for value in seen if value is not None]
        lines.append(
            f"| {name} | {fmt(results['rss_idle'].get(name))}"
            f" | {fmt(max(seen) if seen else None)}"
            f" | {fmt((results.get('rss_end') or {}).get(name))} |"
        )
    return lines


def targets(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Return (target, figures, met / not met / not measured) rows."""
    rows: list[tuple[str, str, str]] = []

    def verdict(ok: bool | None) -> str:
        if ok is None:
            return "not measured"
        return "met" if ok else "not met"

    post_peak = _peak(results, "linkdesk POST form")
    chain_post = _peak(results, "chain POST, 2 lookups + publish")
    bare_post = _peak(results, "bare POST, uvicorn httptools")
    rows.append(
        (
            "POST rate >= minimal chain's",
            f"{post_peak:,.0f}/s vs {chain_post:,.0f}/s (peaks)"
            + _in_turns(
                results, "linkdesk POST form", "chain POST, 2 lookups + publish"
            ),
            verdict(post_peak >= chain_post if chain_post else None),
        )
    )
    post32 = _at(results, "linkdesk POST form", 32)
    rows.append(
        (
            "POST p99 < 20 ms at 32 clients",
            f"{against(post32['p99_ms'], 20)} ms" if post32 else "n/a",
            verdict(post32["p99_ms"] < 20 if post32 else None),
        )
    )
    rows.append(
        (
            "stretch: POST rate >= 40% of bare Litestar POST (uvicorn httptools)",
            f"{post_peak / bare_post:.0%}" if bare_post else "n/a",
            verdict(post_peak >= 0.4 * bare_post if bare_post else None),
        )
    )
    get_peak = _peak(results, "linkdesk GET link")
    chain_get = _peak(results, "chain GET, 2 lookups")
    rows.append(
        (
            "GET rate >= minimal chain GET with two lookups",
            f"{get_peak:,.0f}/s vs {chain_get:,.0f}/s (peaks)"
            + _in_turns(results, "linkdesk GET link", "chain GET, 2 lookups"),
            verdict(get_peak >= chain_get if chain_get else None),
        )
    )
    get32 = _at(results, "linkdesk GET link", 32)
    rows.append(
        (
            "GET p99 < 20 ms at 32 clients",
            f"{against(get32['p99_ms'], 20)} ms" if get32 else "n/a",
            verdict(get32["p99_ms"] < 20 if get32 else None),
        )
    )
    stored = results.get("accepted_to_stored") or {}
    p99 = stored.get("p99_ms")
    rows.append(
        (
            "accepted to committed p99 < 15 ms at half of peak",
            f"p99 {against(p99, 15)} ms at {fmt(stored.get('rate'), 0)}/s"
            if p99 is not None
            else "n/a",
            verdict(p99 < 15 if p99 is not None else None),
        )
    )
    backlog = results.get("backlog") or {}
    batched = next(
        (m["per_second"] for m in results.get("micro", []) if "64 per" in m["name"]),
        None,
    )
    drain = backlog.get("rate")
    rows.append(
        (
            "backlog drain >= 25% of batched insert",
            f"{fmt(drain, 0)}/s vs {fmt(batched, 0)}/s" if drain and batched else "n/a",
            verdict(drain >= 0.25 * batched if drain and batched else None),
        )
    )
    services = ("gateway", "tenant", "personnel", "ticket")
    peak_rss = max(
        (
            value
            for row in results.get("product", [])
            for name, value in row["rss_after"].items()
            if name in services and value is not None
        ),
        default=None,
    )
    rows.append(
        (
            "every service < 100 MB RSS under load",
            f"largest {fmt(peak_rss)} MB",
            verdict(peak_rss < 100 if peak_rss is not None else None),
        )
    )
    large = results.get("large_body") or {}
    if large.get("rss_before") is not None and large.get("rss_after") is not None:
        rise = large["rss_after"] - large["rss_before"]
        rows.append(
            (
                "20 MB body raises gateway RSS by a few MB at most (<= 5 MB)",
                f"status {large['status']}, +{rise:.1f} MB",
                verdict(rise <= 5),
            )
        )
    else:
        rows.append(("20 MB body: gateway RSS", "n/a", "not measured"))
    return rows


def _intro(running: bool) -> tuple[str, str]:
    """Return the page's first paragraph and its note on the forms posted."""
    if running:
        return (
            "Measured by `.venv/bin/python -m bench.run --running` (see "
            "`bench/run.py`) on services that already ran on this machine, "
            "driven by wrk on the same machine. The baselines ran against the "
            "same nats-server and PostgreSQL. Without control of the services' "
            "processes, the run has no gateway profile, no backlog drain and no "
            "memory readings.",
            "- The forms belong to one person of the tenant that the run added, "
            "except in the steps with many people or many tenants.",
        )
    return (
        "Measured by `.venv/bin/python -m bench.run` (see `bench/run.py`): "
        "nats-server and PostgreSQL from their PyPI wheels and the four services "
        "as separate processes, all on 127.0.0.1, driven by wrk on the same "
        "machine. Absolute numbers move from run to run on shared machines, so "
        "compare the ratios.",
        "- The gateway's submission limits were set to 10^9 per window, so the "
        "limit checks and counters run on every post without blocking. The "
        "forms belong to one person of one tenant, except in the steps with "
        "many people or many tenants.",
    )


def write(results: dict[str, Any], output: Path) -> None:
    """Write the tables of `results` to `output` and the plot beside it.

    The page is the measured part only; the analysis sections are kept in
    `bench/analysis.md` and appended, so a rerun does not lose them.
    """
    plot_path = output.parent / "benchmarks" / PLOT_NAME
    plot(results, plot_path)
    info = results["machine"]
    args = results["args"]
    running = bool(args.get("running"))
    intro, forms_note = _intro(running)
    lines = [
        "# Benchmarks",
        "",
        intro,
        "",
        f"- Machine: {info['cpus']} CPUs, {info['cpu_model']}, kernel {info['kernel']}",
        f"- Python {info['python']}, {info['wrk']}",
        f"- Run: {info['date']}, {args['seconds']:.0f} s per load step, clients "
        f"{', '.join(map(str, args['clients']))}"
        + ("" if running else f", backlog {args['backlog']:,}")
        + (" (smoke mode)" if args.get("smoke") else ""),
        forms_note,
        "- Baselines (`bench/apps.py`): a bare Litestar GET and POST of a small "
        "msgspec struct, and the minimal chain. The chain's GET and POST make "
        "two NATS requests each, and its POST also publishes to JetStream. "
        "`bench/chain_worker.py` answers the requests and stores what is "
        "published with asyncpg, 64 per transaction. None of it runs "
        "linkdesk's logic.",
        "",
        "## Targets",
        "",
        "| target | measured | result |",
        "| --- | --- | --- |",
        *(
            f"| {name} | {figures} | {result} |"
            for name, figures, result in targets(results)
        ),
        "",
        "## Load steps",
        "",
        f"![p99 latency and throughput](benchmarks/{PLOT_NAME})",
        "",
        *_load_table(results),
        "",
        "## Ratios to the baselines (requests per second)",
        "",
        *_ratio_table(results, args["clients"]),
        "",
    ]
    if results.get("paired"):
        lines += [
            "## Ours and the chain in turns (32 clients)",
            "",
            "Each round runs the chain's POST, ours, the chain's GET and ours,"
            " one right after the other, so that a drift in the machine's speed"
            " falls on both sides of each ratio.",
            "",
            *_paired_table(results),
            "",
        ]
    lines += [
        "## Client-side baselines",
        "",
        "| operation | concurrency | ops/s |",
        "| --- | ---: | ---: |",
        *(
            f"| {m['name']} | {m['concurrency']} | {m['per_second']:,.0f} |"
            for m in results.get("micro", [])
        ),
        "",
    ]
    stored = results.get("accepted_to_stored")
    if stored:
        lines += [
            "## Accepted to committed",
            "",
            "From `submitted_at`, which the gateway sets just before it "
            "publishes a submission, until the commit of the transaction that "
            "stored its ticket (`pg_xact_commit_timestamp`; the run's "
            "PostgreSQL has `track_commit_timestamp` on).",
            "",
            f"{stored['posted']} forms posted open loop at {stored['rate']:.0f}/s "
            f"(half of the peak POST rate); responses {stored['statuses']}; "
            f"{stored['rows']} tickets stored: p50 {fmt(stored['p50_ms'])} ms, "
            f"p99 {fmt(stored['p99_ms'])} ms, max {fmt(stored['max_ms'])} ms.",
            "",
            *_stored_table(results),
        ]
    backlog = results.get("backlog")
    if backlog:
        lines += [
            "## Backlog drain",
            "",
            f"{backlog['count']:,} submissions published in "
            f"{backlog['publish_seconds']:.1f} s with the ticket service stopped; "
            f"after its start (ready in {backlog['service_start_seconds']:.1f} s) it "
            f"stored {backlog['stored']:,} in {backlog['seconds']:.1f} s: "
            f"{backlog['rate']:,.0f} per second counted from the moment it "
            "reported ready.",
            "",
            _events_published(backlog),
            "",
        ]
    large = results.get("large_body")
    if large:
        measured = large["rss_before"] is not None and large["rss_after"] is not None
        rss = (
            f" Gateway RSS {fmt(large['rss_before'])} MB before, "
            f"{fmt(large['rss_after'])} MB after "
            f"({large['rss_after'] - large['rss_before']:+.1f} MB)."
            if measured
            else " The gateway's process is not known, so its RSS is not read."
        )
        lines += ["## 20 MB body", "", f"Response: {large['status']}.{rss}", ""]
    if results.get("rss_idle"):
        lines += ["## Resident memory (VmRSS)", "", *_memory_table(results), ""]
    profile = results.get("profile")
    if profile and "inclusive" in profile:
        lines += [
            "## Gateway profile (py-spy, 10 s, POST at 32 connections)",
            "",
            f"{profile['samples']} samples at 200 Hz, idle time excluded; "
            f"{profile['rate_during_profile']:.0f} posts/s while sampled. "
            "Share of samples with the function on the stack; the outer "
            "frames (uvicorn's protocol, the middlewares) wrap all the request "
            "work below them, so their shares are not costs of their own:",
            "",
            "| function | inclusive |",
            "| --- | ---: |",
            *(
                f"| `{name}` | {share:.0%} |"
                for name, share in profile["inclusive"][:45]
            ),
            "",
            "Share of samples with the function at the top of the stack:",
            "",
            "| function | self |",
            "| --- | ---: |",
            *(f"| `{name}` | {share:.0%} |" for name, share in profile["self"]),
            "",
        ]
    # The analysis explains the runs that started their own services.
    analysis = Path(__file__).parent / "analysis.md"
    if analysis.exists() and not running:
        lines += [analysis.read_text().rstrip(), ""]
    output.write_text("\n".join(lines))
