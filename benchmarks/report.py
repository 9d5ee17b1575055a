"""Turn benchmarks/results.json into benchmarks/RESULTS.md (``python benchmarks/report.py``).

The targets come from the performance issue; each is judged on the numbers of this one run and
reported as measured, pass or fail. Ratios are loopml's throughput over MLflow's (or MLflow's
latency over loopml's), so "30x" always means loopml is 30 times faster.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
X = "\N{MULTIPLICATION SIGN}"

# The thresholds of the issue, in one place.
TARGETS = {
    "a_rate": 100_000,  # loopml log_metric calls/s
    "a_ratio": 10,  # times MLflow's fastest async mode
    "b_ratio": 20,
    "c_ratio": 30,
    "d_ratio_at": (20_000, 100),
    "d_abs": {100_000: 50.0, 1_000_000: 500.0},  # runs → max median ms
    "e_ms": 300.0,
    # (f)-(j): the servers over HTTP
    "f_ratio": 100,  # times MLflow server's faster synchronous setup (default or --workers 1)
    "g_ratio": 20,
    "h_ratio_at": (20_000, 50),
    "i_s": 2.0,  # cold start to a healthy /healthz, seconds
    "j_mb": 300.0,  # idle server tree, summed VmRSS, MB (10^6 bytes)
    # (k): model serving, `loopml serve` vs `mlflow models serve` (default workers each)
    "k_c16_ratio": 10,  # single-row requests/s at concurrency 16, times MLflow's
    "k_c16_p99_ms": 50.0,  # loopml's p99 of those requests
    "k_c1_overhead_ms": 1.5,  # p50 at concurrency 1 minus the in-process predict of one row
    "k_rows_ratio": 3,  # rows/s of 100-row requests at concurrency 16, times MLflow's
    # (l): the deployment page over 7 days of 10 million logged predictions: bounded memory
    "l_mib": 256.0,  # peak RSS growth of the page's aggregation, MiB
}


@dataclass
class Row:
    bench: str
    loopml: str
    mlflow: str
    mlflow_async: str
    ratio: str
    target: str
    passed: bool | None

    def cells(self) -> list[str]:
        verdict = {True: "**pass**", False: "**FAIL**", None: "n/a"}[self.passed]
        return [
            self.bench,
            self.loopml,
            self.mlflow,
            self.mlflow_async,
            self.ratio,
            self.target,
            verdict,
        ]


def _ok(r: dict[str, Any] | None) -> bool:
    return bool(r) and "error" not in r  # type: ignore[operator]


def _judge(lm: dict[str, Any] | None, ok: Callable[[], bool], other_ok: bool = True) -> bool | None:
    """A crash or a wrong answer from loopml fails its target; a missing comparison is n/a."""
    if not lm:
        return None
    if "error" in lm or lm.get("complete") is False or lm.get("matches_expected") is False:
        return False
    return ok() if other_ok else None


def _num(x: float, unit: str = "", digits: int = 0) -> str:
    text = f"{x:,.0f}" if x >= 100 or digits == 0 else f"{x:,.{digits}f}"
    return f"{text} {unit}".strip()


def _ms(x: float) -> str:
    if x < 1:
        return f"{x:.3f} ms"
    if x < 10:
        return f"{x:.2f} ms"
    return f"{x:,.1f} ms"


def _ratio(x: float) -> str:
    return f"{x:,.0f}{X}" if x >= 10 else f"{x:.1f}{X}"


def _rate(r: dict[str, Any] | None, unit: str) -> str:
    if not r:
        return "—"
    if "error" in r:
        return "error"
    return f"{_num(r['per_second'], unit)} (n={r['n']:,})"


# targets -----------------------------------------------------------------------------------
def target_rows(res: dict[str, Any]) -> list[Row]:
    b = res.get("benchmarks", {})
    rows: list[Row] = []
    for bench, build in (
        ("a", _rows_a),
        ("b", _rows_b),
        ("c", _rows_c),
        ("d", _rows_d),
        ("e", _rows_e),
        ("f", _rows_f),
        ("g", _rows_g),
        ("h", _rows_h),
        ("i", _rows_i),
        ("j", _rows_j),
        ("k", _rows_k),
        ("l", _rows_l),
    ):
        if bench in b:
            rows += build(b[bench])
    return rows


def _fastest_async(a: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    modes = [(k, v) for k, v in a.items() if k.startswith("mlflow_async") and _ok(v)]
    if not modes:
        return "", None
    return max(modes, key=lambda kv: kv[1]["per_second"])


def _rows_a(a: dict[str, Any]) -> list[Row]:
    lm, sync = a.get("loopml"), a.get("mlflow")
    label, fast = _fastest_async(a)
    name = "(a) single log_metric calls, calls/s"
    rows = [
        Row(
            name,
            _rate(lm, "/s"),
            _rate(sync, "/s"),
            _rate(fast, "/s"),
            "—",
            f"loopml ≥ {TARGETS['a_rate']:,}/s",
            _judge(lm, lambda: lm["per_second"] >= TARGETS["a_rate"]),
        ),
    ]
    if _ok(lm) and fast:
        ratio = lm["per_second"] / fast["per_second"]
        which = label.replace("mlflow_", "MLflow ").replace("_", " ")
        rows.append(
            Row(
                f"(a) vs fastest MLflow async ({which})",
                _rate(lm, "/s"),
                _rate(sync, "/s"),
                _rate(fast, "/s"),
                _ratio(ratio),
                f"≥ {TARGETS['a_ratio']}{X} MLflow async",
                ratio >= TARGETS["a_ratio"],
            )
        )
    return rows


def _pair(
    name: str, d: dict[str, Any], unit: str, threshold: float, what: str = "MLflow"
) -> list[Row]:
    lm, ml = d.get("loopml"), d.get("mlflow")
    ratio = lm["per_second"] / ml["per_second"] if _ok(lm) and _ok(ml) else math.nan
    passed = _judge(lm, lambda: ratio >= threshold, _ok(ml))
    shown = "—" if math.isnan(ratio) else _ratio(ratio)
    return [
        Row(name, _rate(lm, unit), _rate(ml, unit), "—", shown, f"≥ {threshold}{X} {what}", passed)
    ]


def _rows_b(b: dict[str, Any]) -> list[Row]:
    return _pair("(b) log_batch of 1,000, values/s", b, "/s", TARGETS["b_ratio"])


def _rows_c(c: dict[str, Any]) -> list[Row]:
    return _pair(
        "(c) fluent runs (5 params, 5 metrics, 2 tags), runs/s", c, "/s", TARGETS["c_ratio"]
    )


def _search_sizes(d: dict[str, Any], tool: str) -> dict[int, dict[str, Any]]:
    out = {}
    for label, r in d.items():
        t, _, n = label.partition("@")
        if t == tool:
            out[int(n)] = r
    return dict(sorted(out.items()))


def _med(r: dict[str, Any] | None) -> str:
    if not r:
        return "—"
    return "error" if "error" in r else _ms(r["median_ms"])


def _rows_d(d: dict[str, Any]) -> list[Row]:
    lm, ml = _search_sizes(d, "loopml"), _search_sizes(d, "mlflow")
    rows = []
    at, need = TARGETS["d_ratio_at"]
    for n in sorted(set(lm) & set(ml)):
        a, b = lm[n], ml[n]
        ratio = b["median_ms"] / a["median_ms"] if _ok(a) and _ok(b) else math.nan
        rows.append(
            Row(
                f"(d) search, {n:,} runs, median",
                _med(a),
                _med(b),
                "—",
                "—" if math.isnan(ratio) else _ratio(ratio),
                f"≥ {need}{X} MLflow" if n == at else "(no target)",
                _judge(a, lambda ratio=ratio: ratio >= need, _ok(b)) if n == at else None,
            )
        )
    for n, limit in TARGETS["d_abs"].items():
        if n in lm:
            r = lm[n]
            rows.append(
                Row(
                    f"(d) search, {n:,} runs, median",
                    _med(r),
                    "not run",
                    "—",
                    "—",
                    f"loopml < {limit:.0f} ms",
                    _judge(r, lambda r=r, limit=limit: r["median_ms"] < limit),
                )
            )
    return rows


def _rows_e(e: dict[str, Any]) -> list[Row]:
    imp = e.get("import")
    if not _ok(imp):
        return [Row("(e) import, ms", "error", "error", "—", "—", "", None)]
    assert imp is not None
    lm, ml = imp["loopml"]["import_ms"], imp["mlflow"]["import_ms"]
    limit = TARGETS["e_ms"]
    return [
        Row(
            "(e) `import X` in a fresh interpreter",
            _ms(lm),
            _ms(ml),
            "—",
            _ratio(ml / lm),
            f"loopml < {limit:.0f} ms",
            lm < limit,
        )
    ]


# (f)-(j): the servers ---------------------------------------------------------------------
def _fastest(d: dict[str, Any], labels: Iterable[str]) -> tuple[str, dict[str, Any] | None]:
    found = [(k, d[k]) for k in labels if _ok(d.get(k))]
    return max(found, key=lambda kv: kv[1]["per_second"]) if found else ("", None)


def _server_pair(
    name: str, d: dict[str, Any], threshold: float, *, anchor: str = "fastest"
) -> list[Row]:
    """loopml (default workers) against MLflow: the faster of its default and ``--workers 1``
    (``anchor="fastest"``), or its default workers as the issue names them (``"default"``), with
    the ratio to the other setup shown beside it."""
    lm, ml, w1 = d.get("loopml"), d.get("mlflow"), d.get("mlflow_w1")
    label, best = _fastest(d, ("mlflow", "mlflow_w1"))
    if anchor == "default":
        label, best = ("mlflow", ml) if _ok(ml) else ("", None)
    ratio = lm["per_second"] / best["per_second"] if _ok(lm) and best else math.nan
    which = "--workers 1" if label == "mlflow_w1" else "default workers"
    shown = "—" if math.isnan(ratio) else f"{_ratio(ratio)} (vs {which})"
    if anchor == "default" and _ok(lm) and _ok(w1):
        assert lm is not None and w1 is not None
        shown += f"; {_ratio(lm['per_second'] / w1['per_second'])} vs --workers 1"
    return [
        Row(
            name,
            _rate(lm, "/s"),
            _rate(ml, "/s"),
            _rate(w1, "/s"),
            shown,
            f"≥ {threshold}{X} MLflow server"
            + (" (default workers)" if anchor == "default" else ""),
            _judge(lm, lambda: ratio >= threshold, best is not None),
        )
    ]


def _rows_f(f: dict[str, Any]) -> list[Row]:
    rows = _server_pair(
        "(f) single log_metric calls over HTTP, flush included, calls/s", f, TARGETS["f_ratio"]
    )
    lm, asy = f.get("loopml"), f.get("mlflow_async_buffered")
    if _ok(lm) and _ok(asy):
        assert lm is not None and asy is not None
        rows.append(
            Row(
                "(f) vs MLflow async, buffered (MLflow default workers)",
                _rate(lm, "/s"),
                "—",
                _rate(asy, "/s"),
                _ratio(lm["per_second"] / asy["per_second"]),
                "(no target)",
                None,
            )
        )
    return rows


def _rows_g(g: dict[str, Any]) -> list[Row]:
    # The anchor for (g) is `mlflow server` with its default workers.
    return _server_pair(
        "(g) log_batch of 1,000 over HTTP, values/s", g, TARGETS["g_ratio"], anchor="default"
    )


def _rows_h(h: dict[str, Any]) -> list[Row]:
    lm, ml = _search_sizes(h, "loopml"), _search_sizes(h, "mlflow")
    at, need = TARGETS["h_ratio_at"]
    rows = []
    for n in sorted(set(lm) | set(ml)):
        a, b = lm.get(n), ml.get(n)
        ratio = b["median_ms"] / a["median_ms"] if _ok(a) and _ok(b) else math.nan  # type: ignore[index]
        rows.append(
            Row(
                f"(h) search over HTTP, {n:,} runs, median",
                _med(a),
                _med(b),
                "—",
                "—" if math.isnan(ratio) else _ratio(ratio),
                f"≥ {need}{X} MLflow server" if n == at else "(no target)",
                _judge(a, lambda ratio=ratio: ratio >= need, _ok(b)) if n == at else None,
            )
        )
    return rows


def _secs(x: float) -> str:
    return f"{x:.2f} s"


def _rows_i(i: dict[str, Any]) -> list[Row]:
    lm, ml = i.get("loopml"), i.get("mlflow")
    limit = TARGETS["i_s"]
    rows = []
    for key, what in (("new_store", "new store"), ("existing_store", "existing store")):
        a = lm[key]["median_s"] if _ok(lm) else math.nan  # type: ignore[index]
        b = ml[key]["median_s"] if _ok(ml) else math.nan  # type: ignore[index]
        rows.append(
            Row(
                f"(i) cold start to healthy, {what}, median",
                "error" if math.isnan(a) else _secs(a),
                "error" if math.isnan(b) else _secs(b),
                "—",
                "—" if math.isnan(a) or math.isnan(b) else _ratio(b / a),
                f"loopml < {limit:g} s",
                _judge(lm, lambda a=a: a < limit),
            )
        )
    return rows


def _mb(mib: float) -> float:
    return mib * 2**20 / 1e6


def _tree_mem(r: dict[str, Any] | None) -> str:
    if not r:
        return "—"
    if "error" in r:
        return "error"
    procs = r["processes"]
    return f"{_mb(r['rss_mib']):,.0f} MB ({procs} process{'' if procs == 1 else 'es'})"


def _rows_j(j: dict[str, Any]) -> list[Row]:
    lm, ml = j.get("loopml"), j.get("mlflow")
    ratio = ml["rss_mib"] / lm["rss_mib"] if _ok(lm) and _ok(ml) else math.nan  # type: ignore[index]
    limit = TARGETS["j_mb"]
    return [
        Row(
            "(j) idle server, summed RSS of its process tree",
            _tree_mem(lm),
            _tree_mem(ml),
            "—",
            "—" if math.isnan(ratio) else _ratio(ratio),
            f"loopml < {limit:.0f} MB",
            _judge(lm, lambda: _mb(lm["rss_mib"]) < limit),  # type: ignore[index]
        )
    ]


# (k): model serving ------------------------------------------------------------------------
def _case(r: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    """One load case of a (k) result, or None when the job or that case did not run cleanly."""
    if not _ok(r) or "cases" not in r:  # type: ignore[operator]
        return None
    c = r["cases"].get(key)  # type: ignore[index]
    return c if c and "error" not in c else None


def _serving_cell(r: dict[str, Any] | None, key: str, show: Callable[[dict[str, Any]], str]) -> str:
    if not r:
        return "—"
    if "error" in r:
        return "error"
    if "skipped" in r:
        return "not installed"
    c = _case(r, key)
    if c is None:
        return "error"
    errors = f", **{c['error_count']:,} errors**" if c["error_count"] else ""
    return show(c) + errors


def _raw_ms(r: dict[str, Any]) -> float:
    return r["raw_predict"]["one_row"]["median_ms"]


def _rows_k(k: dict[str, Any]) -> list[Row]:
    lm, ml, ms = k.get("loopml"), k.get("mlflow"), k.get("mlserver")

    def trio(key: str, show: Callable[[dict[str, Any]], str]) -> tuple[str, str, str]:
        other = _serving_cell(ms, key, show)
        return _serving_cell(lm, key, show), _serving_cell(ml, key, show), f"MLServer: {other}"

    def clean(key: str) -> bool:  # a target needs every request answered with 200
        c = _case(lm, key)
        return c is not None and c["error_count"] == 0

    def ratio(key: str, field: str) -> float:
        a, b = _case(lm, key), _case(ml, key)
        return a[field] / b[field] if a and b and b[field] > 0 else math.nan

    def shown(x: float) -> str:
        return "—" if math.isnan(x) else _ratio(x)

    rps = lambda c: f"{_num(c['ok_per_s'], '/s')} (p50 {_ms(c['p50_ms'])})"  # noqa: E731
    rows_s = lambda c: f"{_num(c['rows_per_s'], 'rows/s')} (p99 {_ms(c['p99_ms'])})"  # noqa: E731
    p99 = lambda c: _ms(c["p99_ms"])  # noqa: E731

    def overhead(c: dict[str, Any], r: dict[str, Any] | None) -> str:
        assert r is not None
        return f"{_ms(c['p50_ms'])} - {_ms(_raw_ms(r))} = {_ms(c['p50_ms'] - _raw_ms(r))}"

    c16_ratio = ratio("c16", "ok_per_s")
    rows_ratio = ratio("c16_rows100", "rows_per_s")
    c16, ml16, c1 = _case(lm, "c16"), _case(ml, "c16"), _case(lm, "c1")
    p99_ratio = ml16["p99_ms"] / c16["p99_ms"] if c16 and ml16 else math.nan
    over = c1["p50_ms"] - _raw_ms(lm) if c1 and lm else math.nan
    have_ml = ml16 is not None
    lim_p99, lim_over = TARGETS["k_c16_p99_ms"], TARGETS["k_c1_overhead_ms"]
    return [
        Row(
            "(k) serving: single-row requests at concurrency 16, requests/s",
            *trio("c16", rps),
            shown(c16_ratio),
            f"≥ {TARGETS['k_c16_ratio']}{X} `mlflow models serve`",
            _judge(lm, lambda: clean("c16") and c16_ratio >= TARGETS["k_c16_ratio"], have_ml),
        ),
        Row(
            "(k) serving: single-row requests at concurrency 16, p99",
            *trio("c16", p99),
            shown(p99_ratio),
            f"loopml < {lim_p99:g} ms",
            _judge(lm, lambda: clean("c16") and c16["p99_ms"] < lim_p99),  # type: ignore[index]
        ),
        Row(
            "(k) serving: concurrency 1, p50 - in-process predict of one row",
            _serving_cell(lm, "c1", lambda c: overhead(c, lm)),
            _serving_cell(ml, "c1", lambda c: overhead(c, ml)),
            "MLServer: " + _serving_cell(ms, "c1", lambda c: overhead(c, ms)),
            "—",
            f"loopml ≤ {lim_over:g} ms",
            _judge(lm, lambda: clean("c1") and over <= lim_over),
        ),
        Row(
            "(k) serving: 100-row requests at concurrency 16, rows/s",
            *trio("c16_rows100", rows_s),
            shown(rows_ratio),
            f"≥ {TARGETS['k_rows_ratio']}{X} `mlflow models serve`",
            _judge(
                lm,
                lambda: clean("c16_rows100") and rows_ratio >= TARGETS["k_rows_ratio"],
                _case(ml, "c16_rows100") is not None,
            ),
        ),
    ]


# (l): the deployment page over the prediction log ---------------------------------------------
def _predlog_sizes(d: dict[str, Any], approach: str) -> dict[int, dict[str, Any]]:
    return {n: r for n, r in _search_sizes(d, approach).items()}


def _growth_cell(r: dict[str, Any] | None) -> str:
    if not r:
        return "—"
    if "error" in r:
        return "error"
    return f"{r['peak_growth_mib']:,.0f} MiB in {_secs(r['seconds'])} (n={r['rows']:,})"


def _rows_l(d: dict[str, Any]) -> list[Row]:
    duck, old = _predlog_sizes(d, "duckdb"), _predlog_sizes(d, "pandas")
    full = duck[max(duck)] if duck else None
    same = max(set(duck) & set(old), default=None)
    a, b = (duck[same], old[same]) if same is not None else (None, None)
    ratio = math.nan
    if a is not None and b is not None and _ok(a) and _ok(b):
        ratio = b["peak_growth_mib"] / max(a["peak_growth_mib"], 1.0)
    limit = TARGETS["l_mib"]
    n = f"{max(duck):,}" if duck else "?"
    rows = [
        Row(
            f"(l) deployment page, 7 days of {n} predictions, peak RSS growth",
            _growth_cell(full),
            "old page (pandas): " + _growth_cell(old.get(max(old)) if old else None),
            "—",
            "—",
            f"loopml < {limit:.0f} MiB (bounded memory)",
            _judge(full, lambda: full["peak_growth_mib"] < limit),  # type: ignore[index]
        )
    ]
    if same is not None:
        rows.append(
            Row(
                f"(l) the same page at {same:,} predictions vs the old pandas page",
                _growth_cell(a),
                "old page (pandas): " + _growth_cell(b),
                "—",
                "—" if math.isnan(ratio) else f"{_ratio(ratio)} less memory",
                "(no target)",
                None,
            )
        )
    return rows


def _detail_predlog(d: dict[str, Any]) -> list[str]:
    header = ["approach", "predictions", "files", "log on disk", "RSS before", "peak RSS",
              "peak growth", "time", "all counted", "same numbers", "load"]  # fmt: skip
    rows = []
    for label, r in d.items():
        if not _ok(r):
            rows.append([label, "error", *[""] * (len(header) - 2)])
            continue
        load = "/".join(f"{x:.1f}" for x in r.get("load_1min", []))
        rows.append([
            label.partition("@")[0], f"{r['rows']:,}", f"{r['files']:,}",
            f"{r['log_mib']:,.0f} MiB", f"{r['rss_before_mib']:,.0f} MiB",
            f"{r['peak_rss_mib']:,.0f} MiB",
            f"{r['peak_growth_mib']:,.0f} MiB", _secs(r["seconds"]),
            "yes" if r.get("complete") else "**NO**",
            "yes" if r.get("matches_expected") else "**NO**", load,
        ])  # fmt: skip
    intro = (
        "The traffic summary of a deployment's page (requests, errors and p50/p90/p99 latency "
        "per served version, requests and median latency per 30-minute bucket) over a 7-day "
        "window of the prediction log, written straight to Parquet in the log's layout (168 "
        "hour folders, 4 segments each, JSON inputs of about 130 bytes). `duckdb` is the page "
        "now (`traffic_stats`: DuckDB over the files, only the columns it needs); `pandas` is "
        "the page before (`read_predictions` of the whole window, then pandas). Peak growth "
        "is VmHWM after the call minus VmRSS before it, the peak reset just before; `same "
        "numbers` compares what both approaches show on a small log of the same shape."
    )
    return ["### (l) the deployment page over the prediction log", "", intro, "",
            *_table(header, rows)]  # fmt: skip


_CASE_NAMES = {
    "c1": "1 row, concurrency 1",
    "c16": "1 row, concurrency 16",
    "c16_rows100": "100 rows, concurrency 16",
}


def _case_name(key: str) -> str:
    """A load case's name in the table: ``oip_bin_`` cases send binary tensors."""
    if key.startswith("oip_bin_"):
        base = key.removeprefix("oip_bin_")
        return f"{_CASE_NAMES.get(base, base)}, binary tensors"
    return _CASE_NAMES.get(key.removeprefix("oip_"), key)


def _detail_serving(k: dict[str, Any]) -> list[str]:
    header = ["variant", "route", "case", "requests/s", "rows/s", "p50", "p90", "p99", "max",
              "errors / sent"]  # fmt: skip
    rows, setups, skipped, commands, failed = [], [], [], [], []
    for label, r in k.items():
        if not _ok(r):
            rows.append([label, "error", *[""] * (len(header) - 2)])
            continue
        if "skipped" in r:
            skipped.append(f"- {label}: {r['skipped']}")
            continue
        for key, c in r.get("cases", {}).items():
            name = _case_name(key)
            if "error" in c:
                rows.append([label, "", name, f"error: {c['error']}", *[""] * (len(header) - 4)])
                tail = " / ".join(c.get("log_tail", []))[-400:]
                failed.append(f"- {label} {key}: {c['error']}" + (f": `{tail}`" if tail else ""))
                continue
            commands.append(c["command"])
            rows.append(
                [
                    label,
                    f"`{c['endpoint']}`",
                    name,
                    _num(c["ok_per_s"], "/s"),
                    _num(c["rows_per_s"], "/s"),
                    _ms(c["p50_ms"]),
                    _ms(c["p90_ms"]),
                    _ms(c["p99_ms"]),
                    _ms(c["max_ms"]),
                    f"{c['error_count']:,} / {c['sent']:,}",
                ]
            )
        raw = r["raw_predict"]
        c1 = r.get("cases", {}).get("c1", {})
        over = _ms(c1["p50_ms"] - raw["one_row"]["median_ms"]) if "p50_ms" in c1 else "—"
        load = "/".join(f"{x:.1f}" for x in r.get("load_1min", []))
        setups.append(
            [
                label,
                str(r["workers"]),
                f"{_ms(raw['one_row']['median_ms'])} / {_ms(raw['one_row_numpy']['median_ms'])}"
                f" / {_ms(raw['rows100']['median_ms'])}",
                over,
                "yes" if r.get("matches_expected") else "**NO**",
                _secs(r["start_s"]) if "start_s" in r else "—",
                _after(r),
                load,
                f"`{r.get('server_command', '')}`"
                + (f" ({r['mlserver_versions']})" if r.get("mlserver_versions") else ""),
            ]
        )
    setup_header = ["variant", "server workers",
                    "in-process predict, median: 1 row DataFrame / 1 row NumPy / 100 rows",
                    "c1 p50 - 1-row predict", "answers match the model", "start",
                    "server RSS after / processes", "load", "server command"]  # fmt: skip
    any_r = next((r for r in k.values() if _ok(r) and "cases" in r), None)
    intro = (
        "The issue's model: `RandomForestClassifier(n_estimators=100, random_state=0)` fitted on "
        "`make_classification(n_samples=10_000, n_features=20, random_state=0)` as a DataFrame "
        "with columns f0..f19, trained in each job. loopml logs it with `Client.log_model` and "
        "serves `runs:/<run>/model`; MLflow logs it with `mlflow.sklearn.log_model` (SQLite "
        "store) and runs `mlflow models serve --env-manager local`; MLServer loads it from a "
        "joblib file with its sklearn runtime. loopml and MLflow get the same `POST /invocations` "
        "body (`dataframe_split`); the `oip_` cases call loopml's Open Inference Protocol route "
        "(one FP64 tensor per column; the `binary tensors` cases send them with the binary tensor "
        "data extension, raw bytes after the JSON, and ask for binary outputs, as `tritonclient` "
        "does by default), MLServer's is one `[rows, 20]` FP64 tensor. Load comes "
        "from `loopml loadtest` in a separate process: a closed loop, one kept-alive connection "
        "per worker"
    )
    if any_r:
        intro += (
            f", {any_r['warmup_s']:g} s of warm-up not counted, then {any_r['duration_s']:g} s "
            "measured per case"
        )
    intro += (
        ". `requests/s` counts answers with status 200; every answer to one request of 1 and of "
        "100 rows was first checked against the model's own predictions."
    )
    lines = ["### (k) model serving", "", intro, "", *_table(header, rows)]
    lines += _table(setup_header, setups)
    if skipped:
        lines += ["Not run:", "", *skipped, ""]
    if failed:
        lines += ["Load cases that failed:", "", *failed, ""]
    if commands:
        lines += ["Load command (one per case):", "", "```", commands[0], "```", ""]
    return lines


# details -----------------------------------------------------------------------------------
def _table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return [*lines, ""]


def _peak(r: dict[str, Any]) -> str:
    mem = r.get("memory")
    return f"{mem['peak_rss_mib']:,.0f} MiB" if mem else "—"


def _detail_rate(title: str, d: dict[str, Any], unit: str, extra: str = "") -> list[str]:
    """One row per variant; runs get "ms per run", logging gets the time of the calls alone."""
    per_run = any("ms_per_run" in r for r in d.values() if isinstance(r, dict))
    middle = "ms per run" if per_run else "calls alone"
    header = [
        "variant",
        "n",
        "total time",
        "rate",
        middle,
        "all written",
        "peak RSS",
        "load",
        "env",
    ]
    rows = []
    for label, r in d.items():
        if not _ok(r):
            rows.append([label, "error", *[""] * (len(header) - 2)])
            continue
        mid = f"{r['ms_per_run']:.2f} ms" if per_run else f"{r['calls_only_seconds']:.3f} s"
        env = ", ".join(f"`{k}={v}`" for k, v in r.get("env", {}).items())
        load = "/".join(f"{x:.1f}" for x in r.get("load_1min", []))
        rows.append(
            [
                label,
                f"{r['n']:,}",
                f"{r['seconds']:.3f} s",
                _num(r["per_second"], unit),
                mid,
                "yes" if r.get("complete") else "**NO**",
                _peak(r),
                load,
                env,
            ]
        )
    return [f"### {title}", "", *([extra, ""] if extra else []), *_table(header, rows)]


def _detail_search(d: dict[str, Any]) -> list[str]:
    rows = []
    for tool in ("loopml", "mlflow"):
        for n, r in _search_sizes(d, tool).items():
            if not _ok(r):
                rows.append([tool, f"{n:,}", "error", "", "", "", "", "", "", ""])
                continue
            one = r["one_call"]
            rows.append(
                [
                    tool,
                    f"{n:,}",
                    _ms(r["median_ms"]),
                    _ms(r["min_ms"]),
                    _ms(r["p90_ms"]),
                    f"{one['sql_ms']:.1f} / {one['total_ms']:.1f} ms ({one['statements']})",
                    "yes" if r["matches_expected"] else "**NO**",
                    f"{r['populate_seconds']:.1f} s",
                    f"{r['db_mib']:,.0f} MiB",
                    _peak(r),
                ]
            )
    header = [
        "tool",
        "runs",
        "median",
        "min",
        "p90",
        "SQL alone / whole call (SELECTs)",
        "top-100 correct",
        "populate",
        "DB size",
        "peak RSS",
    ]
    lines = ["### (d) search_runs", "", *_table(header, rows)]
    lines += _growth(_search_sizes(d, "loopml"), "loopml")
    lines += _growth(_search_sizes(d, "mlflow"), "MLflow")
    plans = [(n, r) for n, r in _search_sizes(d, "loopml").items() if _ok(r) and "query_plan" in r]
    if plans:
        n, r = plans[-1]
        lines += [
            f"loopml's slowest statement at {n:,} runs and its `EXPLAIN QUERY PLAN`:",
            "",
            "```sql",
            r["slowest_statement"].strip(),
            "```",
            "",
            "```",
            *r["query_plan"],
            "```",
            "",
        ]
    return lines


def _growth(sizes: dict[int, dict[str, Any]], name: str) -> list[str]:
    pts = [(n, r["median_ms"]) for n, r in sizes.items() if _ok(r)]
    if len(pts) < 2:
        return []
    steps = []
    for (n0, t0), (n1, t1) in itertools.pairwise(pts):
        exponent = math.log(t1 / t0) / math.log(n1 / n0) if t0 > 0 and t1 > 0 else math.nan
        steps.append(
            f"{n0:,}→{n1:,} runs ({X}{n1 / n0:g}): time {X}{t1 / t0:.2f} (∝ runs^{exponent:.2f})"
        )
    return [f"{name} cost growth: " + "; ".join(steps) + ".", ""]


def _detail_import(e: dict[str, Any]) -> list[str]:
    imp = e.get("import")
    if not _ok(imp):
        return ["### (e) import", "", "error", ""]
    assert imp is not None
    rows = []
    labels = {
        "loopml": "import loopml",
        "mlflow": "import mlflow",
        "loopml_api": "import loopml; loopml.Client; loopml.start_run",
    }
    for key, label in labels.items():
        if key in imp:
            x = imp[key]
            slow = ", ".join(
                f"{m['module']} {m['cumulative_ms']:.0f}"
                for m in x["importtime"]["slowest_direct_imports"][:4]
            )
            rows.append(
                [
                    f"`{label}`",
                    _ms(x["import_ms"]),
                    _ms(x["process_median_ms"]),
                    str(x["importtime"]["modules"]),
                    slow,
                ]
            )
    header = [
        "statement",
        "import (median - bare interpreter)",
        "whole process, median",
        "modules loaded",
        "slowest direct imports (ms, -X importtime)",
    ]
    return [
        "### (e) import time",
        "",
        f"Median of {imp['repeats']} fresh interpreters each; bare `python -c pass` = "
        f"{_ms(imp['baseline_ms'])}.",
        "",
        *_table(header, rows),
    ]


def _lat(r: dict[str, Any], key: str) -> str:
    lat = r.get("latency", {}).get(key)
    return f"{_ms(lat['median_ms'])} (p90 {_ms(lat['p90_ms'])})" if lat else "—"


def _after(r: dict[str, Any]) -> str:
    mem = r.get("server_memory_after")
    return f"{_mb(mem['rss_mib']):,.0f} MB / {mem['processes']}" if mem else "—"


def _detail_server_rate(title: str, d: dict[str, Any], extra: str) -> list[str]:
    header = [
        "variant",
        "server workers",
        "n",
        "total time",
        "rate",
        "calls alone",
        "all stored (after SIGKILL + restart)",
        "GET health, keep-alive",
        "one-value log_batch",
        "start",
        "server RSS after / processes",
        "load",
        "env",
    ]
    rows = []
    for label, r in d.items():
        if not _ok(r):
            rows.append([label, "error", *[""] * (len(header) - 2)])
            continue
        env = ", ".join(f"`{k}={v}`" for k, v in r.get("env", {}).items())
        load = "/".join(f"{x:.1f}" for x in r.get("load_1min", []))
        stored = f"{r['written']:,} ({r['written_after_kill']:,})"
        rows.append(
            [
                label,
                str(r["workers"]),
                f"{r['n']:,}",
                f"{r['seconds']:.3f} s",
                _num(r["per_second"], "/s"),
                f"{r['calls_only_seconds']:.3f} s",
                ("yes, " if r.get("complete") else "**NO**, ") + stored,
                _lat(r, "health_get"),
                _lat(r, "one_value_write"),
                _secs(r["start_s"]),
                _after(r),
                load,
                env,
            ]
        )
    return [f"### {title}", "", extra, "", *_table(header, rows), *_nodelay_note(d)]


def _nodelay_note(d: dict[str, Any]) -> list[str]:
    """Name the keep-alive penalty of several uvicorn workers when the numbers show it."""
    one, two = d.get("loopml"), d.get("loopml_w2")
    if not (_ok(one) and _ok(two)) or "latency" not in one or "latency" not in two:  # type: ignore[operator]
        return []
    a = one["latency"]["health_get"]["median_ms"]  # type: ignore[index]
    b = two["latency"]["health_get"]["median_ms"]  # type: ignore[index]
    if b < 5 * a or b - a < 10:
        return []
    return [
        f"Every request on a kept-alive connection to loopml with `--workers 2` took "
        f"{_ms(b)} (median GET of the health endpoint) against {_ms(a)} with one worker: "
        "the delayed-ACK wait of a response sent without TCP_NODELAY. uvicorn binds the shared "
        "socket of several workers as `socket.socket(family)` (protocol 0), and asyncio sets "
        "TCP_NODELAY only on sockets whose protocol is IPPROTO_TCP.",
        "",
    ]


def _detail_server_search(h: dict[str, Any], d: dict[str, Any]) -> list[str]:
    in_process = {
        (tool, n): r
        for tool in ("loopml", "mlflow")
        for n, r in _search_sizes(d, tool).items()
        if _ok(r)
    }
    rows = []
    for tool in ("loopml", "mlflow"):
        for n, r in _search_sizes(h, tool).items():
            if not _ok(r):
                rows.append([tool, f"{n:,}", "error", *[""] * 7])
                continue
            local = in_process.get((tool, n))
            rows.append(
                [
                    tool,
                    f"{n:,}",
                    _ms(r["median_ms"]),
                    _ms(r["min_ms"]),
                    _ms(r["p90_ms"]),
                    "yes" if r["matches_expected"] else "**NO**",
                    _ms(local["median_ms"]) if local else "—",
                    _ms(r["median_ms"] - local["median_ms"]) if local else "—",
                    _secs(r["start_s"]),
                    _after(r),
                ]
            )
    header = [
        "tool",
        "runs",
        "median",
        "min",
        "p90",
        "top-100 correct",
        "in process, (d)",
        "difference",
        "server start on that store",
        "server RSS after / processes",
    ]
    note = (
        "`in process, (d)` is benchmark (d) at the same size, from its own run; the difference "
        "is what the server adds (HTTP, JSON, the server process) plus run-to-run noise, so "
        "for a slow search it can come out negative."
    )
    return ["### (h) search_runs through the server", "", note, "", *_table(header, rows)]


def _detail_start(i: dict[str, Any]) -> list[str]:
    rows = []
    for label, r in i.items():
        if not _ok(r):
            rows.append([label, "error", "", ""])
            continue
        new, old = r["new_store"], r["existing_store"]
        rows.append(
            [
                label,
                f"{_secs(new['median_s'])} ({', '.join(f'{x:.2f}' for x in new['all_s'])})",
                f"{_secs(old['median_s'])} ({', '.join(f'{x:.2f}' for x in old['all_s'])})",
                f"`{r['server_command']}`",
            ]
        )
    header = ["tool", "new store: median (each)", "existing store: median (each)", "command"]
    return ["### (i) cold start to a healthy server", "", *_table(header, rows)]


def _detail_memory(j: dict[str, Any]) -> list[str]:
    rows, procs = [], []
    for label, r in j.items():
        if not _ok(r):
            rows.append([label, "error", "", "", ""])
            continue
        rows.append(
            [
                label,
                str(r["processes"]),
                f"{_mb(r['rss_mib']):,.0f} MB",
                f"{_mb(r['pss_mib']):,.0f} MB",
                f"`{r['server_command']}`",
            ]
        )
        for p in r["per_process"]:
            cmd = p["cmd"] if len(p["cmd"]) <= 110 else p["cmd"][:109] + "…"
            procs.append([label, f"{p['rss_kib'] * 1024 / 1e6:,.0f} MB", f"`{cmd}`"])
    header = ["tool", "processes", "summed VmRSS", "summed Pss", "command"]
    return [
        "### (j) idle server memory",
        "",
        *_table(header, rows),
        "<details><summary>every process of each tree (VmRSS)</summary>",
        "",
        *_table(["tool", "VmRSS", "process"], procs),
        "</details>",
        "",
    ]


def _profiles(b: dict[str, Any]) -> list[str]:
    lines = []
    for bench, d in b.items():
        for label, r in d.items():
            prof = r.get("profile") if isinstance(r, dict) else None
            if not prof:
                continue
            total = prof[0]["total_s"]
            rows = [
                [
                    f"`{p['function']}`",
                    f"{p['calls']:,}",
                    f"{p['tottime_s']:.3f}",
                    f"{p['cumtime_s']:.3f}",
                ]
                for p in prof[1:13]
            ]
            lines += [
                f"<details><summary>({bench}) {label}: cProfile of one extra pass, "
                f"{total:.2f} s profiled, top functions by self time</summary>",
                "",
                *_table(["function", "calls", "self s", "cumulative s"], rows),
                "</details>",
                "",
            ]
    return ["## loopml profiles", "", *lines] if lines else []


def _load(b: dict[str, Any]) -> str:
    loads = [
        (f"({bench}) {label}", max(r["load_1min"]))
        for bench, d in b.items()
        for label, r in d.items()
        if isinstance(r, dict) and "load_1min" in r
    ]
    if not loads:
        return "not recorded"
    busy = [f"{job} {load:.1f}" for job, load in loads if load > 1.5]
    text = f"{min(x for _, x in loads):.2f} to {max(x for _, x in loads):.2f}"
    return text + (f"; above 1.5 (other work running): {', '.join(busy)}" if busy else "")


def _earlier(res: dict[str, Any]) -> list[str]:
    """Where the benchmarks kept from an earlier run (``run_all.py --only``) came from."""
    earlier = res.get("earlier") or {}
    runs: dict[tuple[str, str], list[str]] = {}
    for bench, meta in sorted(earlier.items()):
        runs.setdefault((meta.get("started", "?"), meta.get("command", "?")), []).append(bench)
    lines = []
    for (started, command), benches in runs.items():
        loopml = (earlier[benches[0]].get("versions") or {}).get("loopml", "?")
        names = ", ".join(f"({b})" for b in benches)
        lines.append(
            f"- {names}: kept from the run started {started} (`{command}`, loopml {loopml})."
        )
    if not lines:
        return []
    ran = ", ".join(f"({b})" for b in res.get("benchmarks", {}) if b not in earlier)
    return [
        f"This run measured {ran or 'nothing'}; the other results come from earlier runs:",
        "",
        *lines,
        "",
    ]


def render(res: dict[str, Any]) -> str:
    b = res.get("benchmarks", {})
    m, v = res["machine"], res["versions"]
    out = ["# loopml vs MLflow — benchmark results", ""]
    if res.get("quick"):
        out += [
            "> **Quick smoke run** (`--quick`): tiny sizes, so pass/fail below says little. "
            "Run `make bench` for the real numbers.",
            "",
        ]
    out += [
        f"Generated by `benchmarks/report.py` from `benchmarks/results.json`, run started "
        f"{res['started']}, took {res.get('duration_s', 0) / 60:.1f} min.",
        "",
        f"Command: `{res['command']}`",
        "",
        *_earlier(res),
        "## Machine and versions",
        "",
        *_table(
            ["what", "value"],
            [
                ["CPU", f"{m['cpu_model']} — {m['nproc']} cores (nproc)"],
                ["memory", f"{m['memory_gib']} GiB"],
                ["kernel", m["kernel"]],
                ["1-minute load average around the jobs", _load(b)],
                *[[k, str(x)] for k, x in v.items()],
            ],
        ),
        "Both tools use SQLite through SQLAlchemy, each in a fresh temporary folder with a "
        "fresh database, one subprocess per (tool, benchmark): in that process for (a)-(e), "
        "through the tool's own server on 127.0.0.1 for (f)-(j); (k) serves one scikit-learn "
        "model with each tool's model server.",
        "",
        "## Targets",
        "",
        *_table(
            [
                "benchmark",
                "loopml",
                "MLflow",
                "MLflow, other setup (fastest async; --workers 1)",
                "ratio",
                "target",
                "result",
            ],
            [r.cells() for r in target_rows(res)],
        ),
    ]
    out += ["## Details", ""]
    if "a" in b:
        out += _detail_rate(
            "(a) single log_metric calls, flush included",
            b["a"],
            "/s",
            "`calls alone` is the loop of calls, before the final flush. "
            "MLflow's async modes are `mlflow.config.enable_async_logging(True)`, "
            "`log_metric(..., synchronous=False)`, then "
            "`mlflow.flush_async_logging()` inside the timing; `buffered` also "
            "sets MLflow's documented `MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS=1` "
            "so its queue merges values into batches.",
        )
    if "b" in b:
        out += _detail_rate("(b) log_batch, 1,000 values per call", b["b"], "/s")
    if "c" in b:
        out += _detail_rate(
            "(c) runs through the fluent API",
            b["c"],
            "/s",
            "`n` is the number of runs; the rate is runs per second.",
        )
    if "d" in b:
        out += _detail_search(b["d"])
    if "e" in b:
        out += _detail_import(b["e"])
    if "f" in b:
        out += _detail_server_rate(
            "(f) single log_metric calls over HTTP, flush included",
            b["f"],
            "Fluent `log_metric` against the server, timed from the first call until the "
            "flush returns (loopml's client buffers and sends batches; MLflow sends one request "
            "per call, or queues them in its async mode). The two latency columns are medians "
            "of single requests on one kept-alive connection, measured first: 100 GETs of the "
            "health endpoint with httpx for both tools, and 50 `log_batch` calls of one value "
            "through each tool's client.",
        )
    if "g" in b:
        out += _detail_server_rate(
            "(g) log_batch over HTTP, 1,000 values per call",
            b["g"],
            "Only the `log_batch` calls are timed; the Metric records are built first.",
        )
    if "h" in b:
        out += _detail_server_search(b["h"], b.get("d", {}))
    if "i" in b:
        out += _detail_start(b["i"])
    if "j" in b:
        out += _detail_memory(b["j"])
    if "k" in b:
        out += _detail_serving(b["k"])
    if "l" in b:
        out += _detail_predlog(b["l"])
    out += _profiles(b)
    out += _errors(b)
    out += _method(res)
    return "\n".join(out).rstrip() + "\n"


def _errors(b: dict[str, Any]) -> list[str]:
    lines = []
    for bench, d in b.items():
        for label, r in d.items():
            if isinstance(r, dict) and "error" in r:
                lines += [
                    f"### ({bench}) {label}: {r['error']}",
                    "",
                    "```",
                    *r.get("log_tail", []),
                    "```",
                    "",
                ]
    return ["## Errors", "", *lines] if lines else []


def _method(res: dict[str, Any]) -> list[str]:
    sizes = res.get("sizes", {})
    each: Callable[[str], str] = lambda k: f"`{k}`={sizes[k]}"  # noqa: E731
    return [
        "## Method",
        "",
        "- Timings use `time.perf_counter`; nothing is asserted, these are measurements.",
        "- (a) times from the first call until every value is in the database "
        "(`loopml.flush()`; `mlflow.flush_async_logging()` for MLflow's async modes).",
        "- (b) builds the Metric records first and times only the `log_batch` calls.",
        "- (c) times start_run → log_params → log_metrics → set_tags → end of the `with` block "
        "for every run, plus loopml's final `flush()`.",
        "- (d) fills each store directly with `sqlite3.executemany` after the tool created its "
        "own schema; the same seeded runs go into both (p1 uniform over x/y/z/w, p2, m0 and m1 "
        "uniform in 0..1 with one history row each, one tag). One warm-up search, then the "
        "median of the timed ones; every result is checked against the top 100 computed in "
        "Python. No ANALYZE is run for either tool. `SQL alone` replays the SELECTs one call "
        "sent with plain sqlite3 on a new connection (execute + fetchall, second of two runs), "
        "so for a query that is all SQL it can come out above the whole call.",
        "- (e) subtracts the median of `python -c pass` from the median of `python -c "
        '"import X"`, the three interleaved.',
        "- (f)-(j) start `loopml server --host 127.0.0.1 --port P` (store: `LOOPML_HOME`, "
        "default 1 worker) or `mlflow server --backend-store-uri sqlite:///… --host 127.0.0.1 "
        "--port P` (default 4 uvicorn workers, plus its job runner and huey consumers); "
        "`_w1`/`_w2` variants add `--workers`. Each server is its own process group, stopped "
        "with SIGTERM (SIGKILL after 15 s) whatever happens. Clients keep their connection "
        "alive (httpx for loopml, MLflow's requests session). MLflow runs with "
        "`MLFLOW_DISABLE_TELEMETRY=true` so nothing leaves the machine.",
        "- (f) and (g) count every value through the server's API (`get_metric_history`, new "
        "client), then SIGKILL the server's whole process group, start it again on the same "
        "store and count again: `all stored` needs every (step, value) both times.",
        "- (h) fills the store with `populate.py` (as in (d)) before its server starts, then "
        "searches through the server: one warm-up, the median of the timed ones, checked "
        "against the expected top 100.",
        "- (i) times from spawning the server to the first 200 from its health endpoint "
        "(loopml `/healthz`; MLflow has only `/health`), polled every 10 ms with a new "
        "connection; each start on a new store (schema creation included) is followed by a "
        "start on the store it made. The OS file cache is warm (nothing is dropped).",
        "- (j) sums VmRSS from `/proc/<pid>/status` over the server process and all its "
        "descendants after it is healthy and has idled; shared pages count once per process "
        "there, so Pss (`/proc/<pid>/smaps_rollup`, shared pages split) is shown as well. "
        "MB = 10^6 bytes.",
        f"- (k) trains the model in each job, times {sizes.get('serving_raw_repeats', 200)} "
        "in-process `predict` calls of one row (median, after 10 warm-up calls), starts the "
        "server (`loopml serve runs:/…` with "
        "`LOOPML_HOME`, 1 worker by default; `mlflow models serve -m models:/… --env-manager "
        "local`, 1 worker by default; `mlserver start` from its own venv inside `.venv-bench`), "
        "waits for its health endpoint (`/v2/health/ready`; MLflow `/ping`) and runs `loopml "
        "loadtest URL --concurrency N --duration S --warmup W --payload FILE` as a separate "
        "process for each case. A target on requests or rows per second compares answers with "
        "status 200 and needs loopml to have answered every request.",
        "- (l) writes the log with pyarrow (`loopml.testing.predlog_data.write_log`), runs the "
        "page's work once over one hour to warm up, resets the peak RSS (`/proc/self/clear_refs`)"
        " and runs it once over the 7 days; each approach and size is its own process. The old "
        "pandas page runs at a smaller size than the target's: it holds every row of the window.",
        "- Sizes: " + ", ".join(each(k) for k in sizes) + ". Each can be set with an environment "
        "variable, e.g. `BENCH_RUNS_N_MLFLOW=300 make bench` (see `benchmarks/run_all.py`).",
        "",
    ]


def write_report(results: dict[str, Any], path: Path) -> None:
    path.write_text(render(results))


if __name__ == "__main__":
    write_report(json.loads((HERE / "results.json").read_text()), HERE / "RESULTS.md")
