"""Run every benchmark of this folder with ``--small`` and end with a table of their headline lines.

``make bench`` calls this. Each benchmark prints its ratio against a named
baseline as its last line; that line is the headline shown in the table. The
GeoSPARQL compliance benchmark needs the benchmark suite: it runs against
``../shared/data/geosparql-compliance-1.0`` when that folder exists and is
skipped, with a message, when it does not. The exit status is non-zero when
any benchmark failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMPLIANCE_SUITE = HERE.parents[1] / "shared" / "data" / "geosparql-compliance-1.0"


@dataclass
class Outcome:
    """What one benchmark did: ``status`` is ``ok``, ``failed`` or ``skipped``."""

    name: str
    status: str
    seconds: float
    headline: str


def benchmark_files(folder: Path = HERE) -> list[Path]:
    """The benchmark scripts of ``folder`` (every ``*.py`` but this runner and private modules)."""
    return sorted(p for p in folder.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_"))


def arguments_for(script: Path, *, suite: Path = COMPLIANCE_SUITE) -> list[str] | str:
    """The command-line arguments for ``script``, or a string saying why it is skipped."""
    if script.stem == "geosparql_compliance":
        if not suite.is_dir():
            return f"skipped: the compliance suite {suite} is not there"
        return ["--suite", str(suite)]
    return ["--small"]


def headline(output: str) -> str:
    """The last non-empty line of a benchmark's output."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def table(outcomes: list[Outcome]) -> str:
    """A plain-text table: benchmark, status, seconds, headline."""
    width = max([len(o.name) for o in outcomes] + [9])
    rows = [f"{'benchmark':<{width}}  {'status':<7}  {'seconds':>7}  headline"]
    rows += [f"{o.name:<{width}}  {o.status:<7}  {o.seconds:7.1f}  {o.headline}" for o in outcomes]
    return "\n".join(rows)


def run(script: Path, args: list[str], *, python: str = sys.executable) -> Outcome:
    """Run one benchmark, echoing its output, and keep its last line."""
    start = time.perf_counter()
    proc = subprocess.Popen([python, str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen: list[str] = []
    for line in proc.stdout:
        sys.stdout.write(line)
        seen.append(line)
    code = proc.wait()
    last = headline("".join(seen))
    status = "ok" if code == 0 else "failed"
    return Outcome(script.stem, status, time.perf_counter() - start, last if code == 0 else f"exit {code}: {last}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="only these benchmarks (file stems)")
    opts = parser.parse_args(argv)
    scripts = benchmark_files()
    if opts.names:
        unknown = set(opts.names) - {s.stem for s in scripts}
        if unknown:
            parser.error(f"unknown benchmark(s) {sorted(unknown)}; known: {[s.stem for s in scripts]}")
        scripts = [s for s in scripts if s.stem in opts.names]
    outcomes = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        args = arguments_for(script)
        if isinstance(args, str):
            print(args, flush=True)
            outcomes.append(Outcome(script.stem, "skipped", 0.0, args))
            continue
        outcomes.append(run(script, args))
    print("\n" + table(outcomes))
    return 1 if any(o.status == "failed" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
