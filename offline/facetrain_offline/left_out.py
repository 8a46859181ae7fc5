"""The identities a run left out (not enrolled), for the terminal's last lines: one line each, with its
photos' reasons, read from the run's metrics.json as copied into the output folder: a published run's
(results_copy.copy_results), or the one in the evidence of a run that did not publish (copy_run_evidence:
e.g. require_all_identities=true refused it for them). The terminal is the operator's own: names belong
there, as in rejected.csv."""

from __future__ import annotations

from pathlib import Path

from facetrain.contract.metrics import MetricsError, read_metrics
from facetrain.contract.names import METRICS_JSON


def left_out_lines(out_dir: Path, copied: list[str]) -> list[str]:
    """`left   <identity> not enrolled: <why>` for each identity the copied metrics.json names in
    identities_excluded (the first metrics.json of `copied`); [] when none, or when no metrics.json was
    copied. A metrics.json that cannot be read gives one line saying so."""
    copied_metrics = [name for name in copied if Path(name).name == METRICS_JSON]
    if not copied_metrics:
        return []
    path = out_dir / copied_metrics[0]
    try:
        excluded = read_metrics(path.read_text(encoding="utf-8")).identities_excluded
    except (OSError, UnicodeDecodeError, MetricsError) as exc:
        return [f"left   cannot say who was left out: {path} cannot be read ({exc})"]
    return [f"left   {identity} not enrolled: {why}" for identity, why in excluded.items()]
