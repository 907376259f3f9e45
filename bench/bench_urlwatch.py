"""Side by side: whole `watcher once` processes against whole urlwatch 2.29 runs on the same loopback pages.

    python bench/bench_urlwatch.py [--pages 1000] [--reps 5] [--layouts one,ten] [--watcher "CMD"]

N list pages (20 rows each, GBK with no HTTP charset) are served by pages_server.py. Two layouts: `one` puts every
page on 127.0.0.1; `ten` spreads the same pages over 127.0.0.1 .. 127.0.0.10 (N/10 each, in blocks: pages 0..99 on
.1, 100..199 on .2, ...; `--spread interleave` deals them out round-robin instead). Watcher sends at most one
request at a time per host; urlwatch has no such limit (10 threads, one new connection per request).

Per layout, each tool gets its own state and runs as a child process (wall time, user+sys CPU and ru_maxrss of the
child from os.wait4):
  cold       first run on an empty state (watcher: baseline of every page; urlwatch: every job NEW)
  unchanged  nothing changed since the tool's previous run
  changed    POST /mutate?count=5 just before the pair of runs: 5 pages get 20 new rows each
Rounds are interleaved and the order alternates (w u | u w | w u ...): round r = unchanged pair, mutate, changed
pair. So every changed run sees exactly the 5 pages rewritten since the tool's previous (unchanged) run, and after
the changed pair both states hold the change, so the next unchanged pair really is unchanged. Each run's output
is checked (which sources reported new rows / CHANGED, nothing failed); a run that did not see what it should
aborts the benchmark. The table gives per tool the best and median wall time, best CPU and highest peak RSS, the
ratios watcher/urlwatch of those, and the median of the per-round ratios (the two runs of a round ran back to
back, so the machine's drift cancels; a single lucky run does not move it). `--json FILE` keeps every run.

urlwatch lives in its own virtual environment (default bench/.venv-urlwatch, created from the package index on
first use); it is never a dependency of the project. Its jobs: `url`, `encoding: gbk` (the pages declare their
charset only in <meta>; without it urlwatch decodes them as Latin-1) and `filter: css: ul.news-list li` (parse
the page with lxml, select the 20 rows, serialise them), compared with the previous snapshot in its own cache
database (minidb/SQLite); the stdout reporter is on (no colour) and its output goes to a file that is read to
check the run. Watcher: one `[source.pN]` per page, kind "css", rows "ul.news-list li", date "span.date",
`[settings] workers = 2` (the default; `--workers`), run as `CMD --config X --state DIR once --no-deliver`.

Children run in a scratch directory (so `python -m` does not find /work/main on sys.path[0]) with WATCHER_* and
proxy variables removed. By default bytecode is cached under /tmp (PYTHONPYCACHEPREFIX) and a warm-up run of each
tool fills it: this machine sets PYTHONDONTWRITEBYTECODE=1 and an editable checkout has no __pycache__, so
without it every watcher process would compile its own modules (`--bytecode inherit` keeps the environment as is).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
URLWATCH_VERSION = "2.29"
ROWS = "ul.news-list li"
TARGETS = {("one", "unchanged"): 0.30, ("one", "changed"): 0.35, ("ten", "unchanged"): 0.25, ("ten", "changed"): 0.30}
RSS_TARGET_MB = 60.0


# --- child processes -----------------------------------------------------------------------------------------

@dataclass
class Run:
    tool: str
    layout: str
    scenario: str
    wall: float
    cpu: float
    rss_mb: float
    rc: int
    seen: str = ""          # what the output check found, e.g. "5 changed (100 events)"
    rnd: int = 0            # round: the watcher and urlwatch runs of one round ran back to back


def run_child(cmd: list[str], cwd: Path, env: dict[str, str], out: Path, err: Path) -> tuple[float, float, float, int]:
    """Run cmd to completion; wall seconds, user+sys CPU seconds, peak RSS (MB) of the child, exit code."""
    with open(out, "wb") as o, open(err, "wb") as e:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=o, stderr=e)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
    p.returncode = rc = os.waitstatus_to_exitcode(status)
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024, rc


def child_env(base: dict[str, str], pycache: Path | None, home: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in base.items()
           if not k.startswith("WATCHER_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    if home is not None:                       # urlwatch: keep ~/.config, ~/.cache and keyring out of the way
        env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_CACHE_HOME=str(home / ".cache"))
    return env


# --- urlwatch's virtual environment --------------------------------------------------------------------------

def ensure_urlwatch(venv: Path) -> Path:
    exe = venv / "bin" / "urlwatch"
    if exe.exists():
        v = subprocess.run([str(exe), "--version"], capture_output=True, text=True).stdout.split()
        if v and v[-1] == URLWATCH_VERSION:
            return exe
    print(f"creating {venv} with urlwatch=={URLWATCH_VERSION} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-qq", f"urlwatch=={URLWATCH_VERSION}"], check=True)
    return exe


# --- pages and configs ---------------------------------------------------------------------------------------

def host_of(i: int, n: int, sites: int, spread: str) -> str:
    if sites == 1:
        return "127.0.0.1"
    k = i % sites if spread == "interleave" else min(i * sites // n, sites - 1)
    return f"127.0.0.{1 + k}"


def mutated(n: int, count: int) -> set[str]:
    """The pages pages_server.py rewrites on POST /mutate?count=K (same formula)."""
    return {f"p{(i * 37) % n}" for i in range(count)}


def write_configs(d: Path, n: int, port: int, sites: int, spread: str, workers: int, uw_filter: str) -> None:
    parts = [f"[settings]\nworkers = {workers}\n"]
    jobs = []
    uw_filters = [f"  - css: {ROWS}"] + (["  - html2text: re"] if uw_filter == "css+text" else [])
    for i in range(n):
        url = f"http://{host_of(i, n, sites, spread)}:{port}/list/{i}"
        parts.append(f'[source.p{i}]\nkind = "css"\nurl = "{url}"\nrows = "{ROWS}"\ndate = "span.date"\n')
        jobs.append(f"name: p{i}\nurl: {url}\nencoding: gbk\nfilter:\n" + "\n".join(uw_filters) + "\n")
    (d / "sources.toml").write_text("\n".join(parts), encoding="utf-8")
    (d / "urls.yaml").write_text("---\n".join(jobs), encoding="utf-8")
    (d / "urlwatch.yaml").write_text(
        "display: {new: true, error: true, unchanged: false, empty-diff: true}\n"
        "report:\n"
        "  text: {line_length: 75, details: true, footer: false, minimal: false, separate: false}\n"
        "  markdown: {details: true, footer: false, minimal: false, separate: false}\n"
        "  html: {diff: unified, separate: false}\n"
        "  stdout: {enabled: true, color: false}\n"
        "  email: {enabled: false}\n", encoding="utf-8")
    (d / "hooks.py").write_text("", encoding="utf-8")


class Server:
    def __init__(self, n: int, sites: int):
        self.p = subprocess.Popen([sys.executable, str(HERE / "pages_server.py"), str(n), "--hosts", str(sites)],
                                  stdout=subprocess.PIPE, text=True)
        self.port = int(self.p.stdout.readline())

    def mutate(self, count: int) -> None:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/mutate?count={count}", method="POST")
        with urllib.request.urlopen(req) as r:
            r.read()

    def stop(self) -> None:
        self.p.kill()
        self.p.wait()


# --- the two tools -------------------------------------------------------------------------------------------

_W_LINE = re.compile(r"^(\S+): (\w+), (\d+) entries, (\d+) events")          # once's per-source line (stderr)
_W_LOG = re.compile(r"\bsource=(\S+) status=(\w+) entries=(\d+) events=(\d+)")  # the kv log line per poll
_W_ERR = re.compile(r"^(\S+): error: ")
_U_LINE = re.compile(r"^\d+\. (NEW|CHANGED|ERROR|UNCHANGED|CHANGED \(RETRIED\)): (\S+)", re.M)


class Tool:
    name = ""

    def __init__(self, d: Path, n: int, pycache: Path | None):
        self.d, self.n, self.pycache = d, n, pycache
        self.k = 0

    def run(self, layout: str, scenario: str, expect: set[str] | None, rnd: int = 0) -> Run:
        self.k += 1
        out, err = self.d / f"{self.name}-{self.k}.out", self.d / f"{self.name}-{self.k}.err"
        wall, cpu, rss, rc = run_child(self.cmd(), self.d, self.env, out, err)
        r = Run(self.name, layout, scenario, wall, cpu, rss, rc, rnd=rnd)
        o, e = out.read_text("utf-8", "replace"), err.read_text("utf-8", "replace")
        if rc != 0:
            raise SystemExit(f"{self.name} {scenario} exited {rc}:\n{e[-3000:]}")
        r.seen = self.check(scenario, expect, o, e)
        out.unlink()
        err.unlink()
        return r


class Watcher(Tool):
    name = "watcher"

    def __init__(self, d: Path, n: int, pycache: Path | None, cmd: list[str]):
        super().__init__(d, n, pycache)
        self.base = cmd
        self.state = d / "w-state"
        self.env = child_env(dict(os.environ), pycache)

    def cmd(self) -> list[str]:
        return [*self.base, "--config", str(self.d / "sources.toml"), "--state", str(self.state),
                "once", "--no-deliver"]

    def reset(self) -> None:
        shutil.rmtree(self.state, ignore_errors=True)

    def check(self, scenario: str, expect: set[str] | None, out: str, err: str) -> str:
        polls = {m[1]: (m[2], int(m[4])) for m in map(_W_LINE.match, err.splitlines()) if m}
        if len(polls) < self.n:                      # the per-source lines may change; the log line is the fallback
            polls = {m[1]: (m[2], int(m[4])) for m in map(_W_LOG.search, err.splitlines()) if m}
        errors = [line for line in err.splitlines() if _W_ERR.match(line)]
        events = [line for line in out.splitlines() if line.strip()]
        if errors:
            raise SystemExit(f"watcher {scenario}: {len(errors)} sources failed, e.g. {errors[0]}")
        if len(polls) != self.n:
            raise SystemExit(f"watcher {scenario}: found {len(polls)} of {self.n} polls in its output:\n{err[-2000:]}")
        bad = {s for s, (st, _) in polls.items() if st not in ("ok", "unchanged")}
        if bad:
            raise SystemExit(f"watcher {scenario}: sources not ok: {sorted(bad)[:5]} ({polls[min(bad)]})")
        changed = {s for s, (_, ev) in polls.items() if ev}
        if scenario == "cold":
            if changed or events or any(st != "ok" for st, _ in polls.values()):
                raise SystemExit(f"watcher cold: expected a silent baseline, got events from {sorted(changed)[:5]}")
            return f"{self.n} baselined"
        if changed != (expect or set()):
            raise SystemExit(f"watcher {scenario}: sources with events {sorted(changed)}, "
                             f"expected {sorted(expect or ())}")
        if expect and len(events) != 20 * len(expect):
            raise SystemExit(f"watcher {scenario}: {len(events)} event lines, expected {20 * len(expect)}")
        if not expect and events:
            raise SystemExit(f"watcher {scenario}: unexpected events: {events[:3]}")
        return f"{len(changed)} changed ({len(events)} events)"


class Urlwatch(Tool):
    name = "urlwatch"

    def __init__(self, d: Path, n: int, pycache: Path | None, exe: Path):
        super().__init__(d, n, pycache)
        self.exe = exe
        self.cache = d / "u-cache.db"
        home = d / "u-home"
        home.mkdir(exist_ok=True)
        self.env = child_env(dict(os.environ), pycache, home)

    def cmd(self) -> list[str]:
        d = self.d
        return [str(self.exe), "--urls", str(d / "urls.yaml"), "--config", str(d / "urlwatch.yaml"),
                "--hooks", str(d / "hooks.py"), "--cache", str(self.cache)]

    def reset(self) -> None:
        self.cache.unlink(missing_ok=True)

    def check(self, scenario: str, expect: set[str] | None, out: str, err: str) -> str:
        lines = _U_LINE.findall(out)
        errors = [name for kind, name in lines if kind == "ERROR"]
        if errors:
            raise SystemExit(f"urlwatch {scenario}: {len(errors)} jobs failed, e.g. {errors[0]}:\n{out[-2000:]}")
        if scenario == "cold":
            new = {name for kind, name in lines if kind == "NEW"}
            if len(new) != self.n:
                raise SystemExit(f"urlwatch cold: {len(new)} NEW jobs of {self.n}:\n{out[-2000:]}\n{err[-2000:]}")
            return f"{self.n} new"
        changed = {name for kind, name in lines if kind.startswith("CHANGED")}
        if changed != (expect or set()) or len(lines) != len(changed):
            raise SystemExit(f"urlwatch {scenario}: report {lines[:10]}, expected CHANGED {sorted(expect or ())}")
        return f"{len(changed)} changed"


# --- one layout ----------------------------------------------------------------------------------------------

def bench_layout(layout: str, sites: int, args, watcher_cmd: list[str], uw_exe: Path, pycache: Path | None,
                 scratch: Path) -> list[Run]:
    n = args.pages
    d = scratch / layout
    d.mkdir()
    server = Server(n, sites)
    runs: list[Run] = []
    try:
        write_configs(d, n, server.port, sites, args.spread, args.workers, args.uw_filter)
        w, u = Watcher(d, n, pycache, watcher_cmd), Urlwatch(d, n, pycache, uw_exe)

        def pair(r: int, scenario: str, expect: set[str] | None) -> None:
            for tool in ((w, u) if r % 2 == 0 else (u, w)):
                run = tool.run(layout, scenario, expect, r)
                runs.append(run)
                print(f"  {layout:3} {scenario:9} {run.tool:8} wall {run.wall:6.3f}s  cpu {run.cpu:6.3f}s  "
                      f"rss {run.rss_mb:5.1f}MB  {run.seen}", flush=True)

        for r in range(args.cold_runs):              # each cold run on an empty state; the last one is kept
            w.reset()
            u.reset()
            pair(r, "cold", None)
        expect = mutated(n, args.changed)
        for r in range(args.reps):
            pair(r, "unchanged", set())
            server.mutate(args.changed)
            pair(r + 1, "changed", expect)           # the other tool leads the changed pair
        if args.breakdown and layout == args.layouts[0]:
            runs += breakdown(layout, d, w, u, args.reps)
    finally:
        server.stop()
    return runs


def breakdown(layout: str, d: Path, w: Watcher, u: Urlwatch, reps: int) -> list[Run]:
    """Whole-process costs without polling: interpreter, CLI import, config load (interleaved, best of reps)."""
    uw = [str(u.exe), "--urls", str(d / "urls.yaml"), "--config", str(d / "urlwatch.yaml"),
          "--hooks", str(d / "hooks.py"), "--cache", str(u.cache)]
    steps = [
        ("watcher", "python -c pass", [sys.executable, "-c", "pass"], w.env),
        ("watcher", "--version", [*w.base, "--version"], w.env),
        ("watcher", "check (config)", [*w.base, "--config", str(d / "sources.toml"), "check"], w.env),
        ("urlwatch", "--version", [str(u.exe), "--version"], u.env),
        ("urlwatch", "--list (jobs)", [*uw, "--list"], u.env),
    ]
    best: dict[tuple[str, str], Run] = {}
    for _ in range(reps):
        for tool, label, cmd, env in steps:
            wall, cpu, rss, rc = run_child(cmd, d, env, d / "bd.out", d / "bd.err")
            if rc != 0:
                raise SystemExit(f"{cmd} exited {rc}: {(d / 'bd.err').read_text()[-1000:]}")
            r = Run(tool, layout, f"bd:{label}", wall, cpu, rss, rc)
            if (tool, label) not in best or wall < best[tool, label].wall:
                best[tool, label] = r
    # import time of one unchanged `once` (PYTHONPROFILEIMPORTTIME), self time summed by top-level package
    env = dict(w.env, PYTHONPROFILEIMPORTTIME="1")
    wall, *_ = run_child(w.cmd(), d, env, d / "bd.out", d / "bd.err")
    per: dict[str, int] = {}
    for line in (d / "bd.err").read_text("utf-8", "replace").splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| \s*(\S+)", line)
        if m:
            pkg = m[3].split(".")[0]
            per[pkg] = per.get(pkg, 0) + int(m[1])
    top = sorted(per.items(), key=lambda kv: -kv[1])[:12]
    print(f"  imports of one unchanged `watcher once` under -X importtime (inflates them; this run {wall:.3f}s): "
          f"{sum(per.values()) / 1e6:.3f}s in {len(per)} packages; self time by package: "
          + ", ".join(f"{k} {v / 1e6:.3f}" for k, v in top), flush=True)
    return list(best.values())


# --- report --------------------------------------------------------------------------------------------------

def summarize(runs: list[Run], layouts: list[str]) -> str:
    lines = [f"{'layout':6} {'scenario':10} {'tool':9} {'wall best':>9} {'median':>7} {'cpu best':>8} "
             f"{'rss max':>7} {'runs':>4}  checked"]
    for layout in layouts:
        for sc in ("cold", "unchanged", "changed"):
            by = {t: [r for r in runs if r.layout == layout and r.scenario == sc and r.tool == t]
                  for t in ("watcher", "urlwatch")}
            if not by["watcher"] or not by["urlwatch"]:
                continue
            stats = {}
            for tool, rs in by.items():
                stats[tool] = (min(r.wall for r in rs), statistics.median(r.wall for r in rs), min(r.cpu for r in rs),
                               max(r.rss_mb for r in rs))
                b, med, cpu, rss = stats[tool]
                lines.append(f"{layout:6} {sc:10} {tool:9} {b:8.3f}s {med:6.3f}s {cpu:7.3f}s {rss:6.1f}M "
                             f"{len(rs):4}  {rs[-1].seen}")
            (wb, wm, wc, wr), (ub, um, uc, ur) = stats["watcher"], stats["urlwatch"]
            u_of = {r.rnd: r.wall for r in by["urlwatch"]}
            paired = statistics.median(r.wall / u_of[r.rnd] for r in by["watcher"] if r.rnd in u_of)
            target = TARGETS.get((layout, sc))
            verdict = (f"; target <= {target:.2f}x: best {'met' if wb / ub <= target else 'NOT met'}, "
                       f"per-round {'met' if paired <= target else 'NOT met'}") if target else ""
            lines.append(f"{'':6} {'':10} {'w/u':9} {wb / ub:8.2f}x {wm / um:6.2f}x {wc / uc:7.2f}x {wr / ur:6.2f}x"
                         f"       per-round (median of w/u in each round) {paired:.2f}x{verdict}")
    bd = [r for r in runs if r.scenario.startswith("bd:")]
    if bd:
        lines.append("whole-process costs without polling (best wall / cpu / rss):")
        for r in bd:
            lines.append(f"  {r.tool:9} {r.scenario[3:]:18} {r.wall:6.3f}s {r.cpu:6.3f}s {r.rss_mb:5.1f}M")
    w_rss = max((r.rss_mb for r in runs if r.tool == "watcher" and not r.scenario.startswith("bd:")), default=0)
    lines.append(f"watcher peak RSS over all `once` runs: {w_rss:.1f} MB (target <= {RSS_TARGET_MB:.0f} MB: "
                 f"{'met' if w_rss <= RSS_TARGET_MB else 'NOT met'})")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=5, help="runs per tool of each of unchanged and changed")
    ap.add_argument("--cold-runs", type=int, default=1, help="cold runs per tool (each on an empty state)")
    ap.add_argument("--layouts", default="one,ten", help="comma list of: one (127.0.0.1), ten (127.0.0.1..10)")
    ap.add_argument("--sites", type=int, default=10, help="hosts of the `ten` layout")
    ap.add_argument("--spread", choices=("block", "interleave"), default="block",
                    help="ten layout: page i on host i*sites//N (block) or i%%sites (interleave)")
    ap.add_argument("--workers", type=int, default=2, help="[settings] workers in watcher's sources.toml")
    ap.add_argument("--changed", type=int, default=5, help="pages rewritten before each changed run")
    ap.add_argument("--watcher", default=f"{shlex.quote(sys.executable)} -m watcher",
                    help='watcher command, e.g. "env PYTHONPATH=/tmp/wt-bench python -m watcher"')
    ap.add_argument("--urlwatch-venv", type=Path, default=HERE / ".venv-urlwatch")
    ap.add_argument("--uw-filter", choices=("css", "css+text"), default="css",
                    help="urlwatch filter: css:ul.news-list li (default), or that then html2text:re")
    ap.add_argument("--bytecode", choices=("prefix", "inherit"), default="prefix",
                    help="prefix: PYTHONPYCACHEPREFIX under /tmp, filled by a warm-up run (default)")
    ap.add_argument("--no-breakdown", dest="breakdown", action="store_false",
                    help="skip the whole-process cost breakdown (interpreter, imports, config)")
    ap.add_argument("--json", type=Path, help="also write every run as JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = ap.parse_args()
    args.layouts = [x.strip() for x in args.layouts.split(",") if x.strip()]
    if not set(args.layouts) <= {"one", "ten"} or not args.layouts:
        ap.error("--layouts: one, ten")

    uw_exe = ensure_urlwatch(args.urlwatch_venv)
    watcher_cmd = shlex.split(args.watcher)
    pycache = Path(tempfile.gettempdir()) / "bench-urlwatch-pycache" if args.bytecode == "prefix" else None
    scratch = Path(tempfile.mkdtemp(prefix="bench-urlwatch-"))
    print(f"pages={args.pages} reps={args.reps} cold_runs={args.cold_runs} layouts={','.join(args.layouts)} "
          f"spread={args.spread} workers={args.workers} changed={args.changed} uw_filter={args.uw_filter} "
          f"bytecode={args.bytecode}\nwatcher: {shlex.join(watcher_cmd)}\nurlwatch: {uw_exe} ({URLWATCH_VERSION})\n"
          f"scratch: {scratch}", flush=True)
    runs: list[Run] = []
    t0 = time.perf_counter()
    try:
        # warm-up: a few pages with each tool, so that both find their bytecode cached (and the disk warm)
        wd = scratch / "warmup"
        wd.mkdir()
        server = Server(3, 1)
        try:
            write_configs(wd, 3, server.port, 1, "block", args.workers, args.uw_filter)
            for tool in (Watcher(wd, 3, pycache, watcher_cmd), Urlwatch(wd, 3, pycache, uw_exe)):
                tool.run("warmup", "cold", None)
                tool.run("warmup", "unchanged", set())
        finally:
            server.stop()
        for layout in args.layouts:
            runs += bench_layout(layout, 1 if layout == "one" else args.sites, args, watcher_cmd, uw_exe, pycache,
                                 scratch)
    finally:
        if args.json:
            args.json.write_text(json.dumps([asdict(r) for r in runs], indent=1))
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"\n{args.pages} pages x 20 rows; best of {args.reps} (cold: {args.cold_runs}); wall best, median wall, "
          f"best user+sys CPU, highest peak RSS; took {time.perf_counter() - t0:.0f}s")
    print(summarize(runs, args.layouts))


if __name__ == "__main__":
    main()
