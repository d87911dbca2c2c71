"""Registration and promotion: champion/challenger aliases of the registered model.

The registered model (default name ``coverhunter``) carries two aliases:

- ``champion``: the version served; it moves to a new version only when the new
  version's metric is better than the champion's, and better by at least ``margin``
  (``gain > 0 and gain >= margin``; with ``margin`` 0 a tie keeps the champion);
- ``challenger``: the latest version that did not clear that bar.

The champion's value compared against is, in order of preference:

1. a :class:`ChampionMeasurement`: the caller scored the champion's checkpoint on the
   *same, current* test sets as the new model (``coverhunter.pipeline.evaluate.challenge`` does, for
   ``dvc repro`` and for the retraining flow), so a grown or changed test set never
   compares a fresh number with a stale one;
2. otherwise the ``<metric_name>`` tag stored on the champion when it was registered.

Tags set on every registered version:

| tag | value |
|---|---|
| ``<metric_name>`` (e.g. ``test.mAP``) | the version's metric when registered, ``repr(float)`` |
| ``promotion.metric`` | ``metric_name`` |
| ``promotion.higher_is_better`` | ``True`` / ``False`` |
| ``promotion.margin`` | the margin used |
| ``promotion.decision`` | ``champion`` or ``challenger`` |
| ``promotion.previous_champion_version`` | the champion before this decision, or ``none`` |
| ``promotion.previous_champion_value`` | its metric as compared, or ``none`` |
| ``promotion.champion_measured`` | ``current test sets`` (a measurement), ``stored tag`` or ``none`` |
| ``promotion.metrics`` | JSON ``{set: {metric: value}}`` of this version (when given) |
| ``promotion.champion_metrics`` | JSON, the champion's on the same sets (when measured) |
| ``promotion.reason`` | one sentence |

Tags set on the champion that was challenged (the last challenge wins):

| tag | value |
|---|---|
| ``challenge.version`` | the challenger's version |
| ``challenge.decision`` | ``kept`` or ``replaced`` |
| ``challenge.value`` / ``challenge.challenger_value`` | both metric values compared |
| ``challenge.metrics`` / ``challenge.challenger_metrics`` | both metric sets (JSON), when given |
| ``challenge.margin`` | the margin used |
| ``challenge.reason`` | the same sentence |

A champion that cannot be compared (no measurement and no ``<metric_name>`` tag, e.g. set
by hand or registered for another metric; or a measurement that failed) is never replaced
automatically: the new version becomes challenger. Promotions of one model are not
serialised here: callers hold a lock (``flows/retrain.py``) or promote once per run.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from coverhunter.mlops.registry import CHALLENGER, CHAMPION, DEFAULT_NAME


@dataclass(frozen=True)
class ChampionMeasurement:
    """The champion as the caller measured it just now, on the same test sets as the new
    model. ``value`` is the promotion metric (None when it could not be measured, with
    ``error`` saying why); ``metrics`` is ``{set: {metric: value}}``."""
    version: str
    value: float | None
    metrics: dict | None = None
    error: str | None = None


@dataclass(frozen=True)
class PromotionDecision:
    version: str                      # the newly registered version (or the one it already was)
    alias: str                        # "champion" or "challenger"
    metric_name: str
    value: float
    previous_champion_version: str | None
    previous_champion_value: float | None
    reason: str
    margin: float = 0.0
    metrics: dict | None = None           # the new version's metric set
    champion_metrics: dict | None = None  # the champion's, measured on the same sets
    champion_measured: str = "none"       # "current test sets" | "stored tag" | "none"
    registered: bool = True               # False: the checkpoint already was `version`; nothing changed

    @property
    def promoted(self) -> bool:
        """Whether this decision moved the champion alias to ``version``."""
        return self.registered and self.alias == CHAMPION


def _champion(client: MlflowClient, name: str):
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def champion_version(name: str = DEFAULT_NAME) -> str | None:
    """The version that holds the ``champion`` alias, or None."""
    champ = _champion(MlflowClient(), name)
    return None if champ is None else str(champ.version)


def _decide(value: float, champion_value: float | None, champion_version: str | None,
            metric_name: str, higher_is_better: bool, margin: float,
            unmeasured: str | None = None) -> tuple[str, str]:
    """The promotion rule: champion when there is none, or when the new value is better
    than the champion's (``gain > 0``) by at least ``margin`` (``gain >= margin``)."""
    if not math.isfinite(value):
        return CHALLENGER, f"{metric_name}={value} is not finite"
    if champion_version is None:
        return CHAMPION, "no champion yet"
    if champion_value is None:
        return CHALLENGER, (unmeasured or f"champion v{champion_version} has no "
                            f"{metric_name!r} tag") + ": not replaced automatically"
    gain = value - champion_value if higher_is_better else champion_value - value
    better = "higher" if higher_is_better else "lower"
    if gain > 0 and gain >= margin:
        return CHAMPION, (f"{metric_name} {value:.6g} beats champion v{champion_version} "
                          f"({champion_value:.6g}) by {gain:.6g} >= margin {margin:g} "
                          f"({better} is better)")
    return CHALLENGER, (f"{metric_name} {value:.6g} does not beat champion v{champion_version} "
                        f"({champion_value:.6g}) by at least margin {margin:g} "
                        f"(gain {gain:.6g}, {better} is better)")


def _compact(metrics: dict | None) -> str:
    """``{set: {metric: value}}`` as compact JSON (6 significant digits) for a tag."""
    if metrics is None:
        return "none"
    rounded = {s: {k: (float(f"{v:.6g}") if isinstance(v, float) else v) for k, v in m.items()}
               for s, m in metrics.items()}
    return json.dumps(rounded, sort_keys=True, separators=(",", ":"))


def _stored_value(champ, metric_name: str) -> float | None:
    if champ is None or metric_name not in champ.tags:
        return None
    try:
        return float(champ.tags[metric_name])
    except ValueError:
        return None


# long on purpose: register, decide and tag both versions in one place: the tags are the audit trail
def register_and_promote(model_uri: str, metric_name: str, metric_value: float,
                         name: str = DEFAULT_NAME, higher_is_better: bool = True,
                         margin: float = 0.0, *, metrics: dict | None = None,
                         champion: ChampionMeasurement | None = None) -> PromotionDecision:
    """Register ``model_uri`` as a new version of ``name`` and alias it ``champion`` when
    ``metric_value`` is better than the champion's by at least ``margin`` (``_decide``)
    or when there is no champion, else ``challenger``.

    ``champion``: the champion measured by the caller on the same sets (preferred over
    its stored tag). If the alias moved to another version after that measurement, the
    new version is not promoted. ``metrics``: the new version's metric set, recorded in
    the tags. The decision is recorded as tags on the new version and on the champion
    that was challenged (module docstring)."""
    if margin < 0:
        raise ValueError("margin must be >= 0")
    value = float(metric_value)
    client = MlflowClient()
    mv = mlflow.register_model(model_uri, name, tags={
        metric_name: repr(value), "promotion.metric": metric_name,
        "promotion.higher_is_better": str(bool(higher_is_better)),
        "promotion.margin": repr(float(margin))})
    version = str(mv.version)
    champ = _champion(client, name)
    champ_version = str(champ.version) if champ is not None else None
    unmeasured, champ_metrics, measured = None, None, "none"
    if champion is not None and champion.version != champ_version:
        champ_value = None
        unmeasured = (f"the champion alias moved from v{champion.version} to "
                      f"v{champ_version} while this model was compared with it")
        champ_version = champ_version or champion.version
    elif champion is not None:
        champ_value, champ_metrics = champion.value, champion.metrics
        measured = "current test sets"
        if champ_value is None:
            unmeasured = (f"champion v{champ_version} could not be measured on the current "
                          f"test sets ({champion.error})")
    else:
        champ_value = _stored_value(champ, metric_name)
        measured = "stored tag" if champ_value is not None else "none"
    alias, reason = _decide(value, champ_value, champ_version, metric_name,
                            higher_is_better, margin, unmeasured)
    client.set_registered_model_alias(name, alias, version)
    tags = {"promotion.decision": alias,
            "promotion.previous_champion_version": champ_version or "none",
            "promotion.previous_champion_value":
                "none" if champ_value is None else repr(champ_value),
            "promotion.champion_measured": measured,
            "promotion.reason": reason}
    if metrics is not None:
        tags["promotion.metrics"] = _compact(metrics)
    if champ_metrics is not None:
        tags["promotion.champion_metrics"] = _compact(champ_metrics)
    for key, tag in tags.items():
        client.set_model_version_tag(name, version, key, tag)
    if champ_version is not None and champ_version != version:
        _tag_challenged(client, name, champ_version, {
            "challenge.version": version,
            "challenge.decision": "replaced" if alias == CHAMPION else "kept",
            "challenge.value": "none" if champ_value is None else repr(champ_value),
            "challenge.challenger_value": repr(value),
            "challenge.metrics": _compact(champ_metrics),
            "challenge.challenger_metrics": _compact(metrics),
            "challenge.margin": repr(float(margin)),
            "challenge.reason": reason})
    return PromotionDecision(version, alias, metric_name, value, champ_version, champ_value,
                             reason, float(margin), metrics, champ_metrics, measured)


def already_registered(version: str, metric_name: str, metric_value: float,
                       metrics: dict | None = None, name: str = DEFAULT_NAME) -> PromotionDecision:
    """The decision for a checkpoint already registered as ``version``: nothing is registered,
    compared or tagged; its alias stays as it is (``champion`` or ``challenger``)."""
    champ = champion_version(name)
    alias = CHAMPION if champ == str(version) else CHALLENGER
    return PromotionDecision(str(version), alias, metric_name, float(metric_value), champ, None,
                             f"this checkpoint is already registered as version {version} "
                             f"({alias}): not registered or compared again", metrics=metrics,
                             registered=False)


def _tag_challenged(client: MlflowClient, name: str, version: str, tags: dict) -> None:
    """Record a challenge on the champion's version (skipped if it was deleted meanwhile)."""
    try:
        for key, tag in tags.items():
            client.set_model_version_tag(name, version, key, tag)
    except MlflowException:
        pass


METRIC_COLUMNS = ("mAP", "MR1", "HR1", "P10")


def decision_markdown(decision: PromotionDecision, title: str = "Champion/challenger decision") -> str:
    """The decision as Markdown: a table of both metric sets per test set (challenger,
    champion, difference), then the outcome and the reason."""
    new, old = f"v{decision.version}", (f"v{decision.previous_champion_version}"
                                        if decision.previous_champion_version else "none")
    outcome = (f"**v{decision.version} is the new champion** (was {old})" if decision.promoted
               else f"**champion {old} kept**; v{decision.version} is challenger" if decision.registered
               else f"**v{decision.version} is already registered** ({decision.alias}); nothing changed")
    lines = [f"## {title}", "", outcome, "",
             f"| set | metric | challenger {new} | champion {old} | difference |",
             "|---|---|---|---|---|"]
    mine, theirs = decision.metrics or {}, decision.champion_metrics or {}
    for set_name in sorted(set(mine) | set(theirs)):
        for metric in METRIC_COLUMNS:
            a, b = mine.get(set_name, {}).get(metric), theirs.get(set_name, {}).get(metric)
            diff = f"{a - b:+.4f}" if a is not None and b is not None else "-"
            lines.append(f"| {set_name} | {metric} | {_cell(a)} | {_cell(b)} | {diff} |")
    lines += ["", f"- compared: `{decision.metric_name}` (challenger {decision.value:.6g}, "
              f"champion {_cell(decision.previous_champion_value)}, champion measured on: "
              f"{decision.champion_measured}), margin {decision.margin:g}",
              f"- reason: {decision.reason}"]
    return "\n".join(lines) + "\n"


def _cell(value) -> str:
    return "-" if value is None else f"{value:.4f}"
