"""Human-readable tables of evaluation results."""
from __future__ import annotations

from collections.abc import Mapping


def metrics_table(metrics: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """``{model: {set: metrics}}`` as a Markdown table (mAP, MR1, HR1, P10, queries)."""
    lines = ["| model | set | mAP | MR1 | HR1 | P10 | queries |",
             "|---|---|---|---|---|---|---|"]
    for model, sets in metrics.items():
        for name, m in sets.items():
            lines.append(f"| {model} | {name} | {m['mAP']:.3f} | {m['MR1']:.2f} | {m['HR1']:.3f} "
                         f"| {m['P10']:.3f} | {m['n_queries']} |")
    return "\n".join(lines)


def flatten_metrics(metrics: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict[str, float]:
    """``{model: {set: {metric: v}}}`` → ``{"model.set.metric": v}`` (MLflow metric keys)."""
    return {f"{model}.{name}.{key}": float(value) for model, sets in metrics.items()
            for name, values in sets.items() for key, value in values.items()}
