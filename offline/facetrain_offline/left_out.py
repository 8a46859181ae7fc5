"""The identities a published run left out (not enrolled), for the terminal's last lines: one line each,
with its photos' reasons, read from the run's metrics.json as copied into the output folder
(results_copy.copy_results). The terminal is the operator's own: names belong there, as in rejected.csv."""

from __future__ import annotations

from pathlib import Path

from facetrain.contract.metrics import MetricsError, read_metrics
from facetrain.contract.names import METRICS_JSON


def left_out_lines(out_dir: Path, copied: list[str]) -> list[str]:
    """`left   <identity> not enrolled: <why>` for each identity the copied metrics.json names in
    identities_excluded; [] when none, or when no metrics.json was copied (nothing published). A metrics.json
    that cannot be read (publish verified it: only a file changed since) gives one line saying so."""
    copied_metrics = [name for name in copied if Path(name).name == METRICS_JSON]
    if not copied_metrics:
        return []
    path = out_dir / copied_metrics[0]
    try:
        excluded = read_metrics(path.read_text(encoding="utf-8")).identities_excluded
    except (OSError, UnicodeDecodeError, MetricsError) as exc:
        return [f"left   cannot say who was left out: {path} cannot be read ({exc})"]
    return [f"left   {identity} not enrolled: {why}" for identity, why in excluded.items()]
