"""A plan document as Envoy weighted-cluster routes (an RDS resource in YAML)."""

from __future__ import annotations

import numpy as np
import yaml

from slit.plan.document import integer_weights

ENVOY_TOTAL_WEIGHT = 10_000
ENVOY_ROUTE_CONFIG = "slit"
ROUTE_CONFIG_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"


MODEL_HEADER = "x-slit-model"


def envoy_yaml(document: dict, domain_template: str = "{origin}.*") -> str:
    """Envoy RDS resource: one virtual host per origin; in it one route per model, matched on
    the ``x-slit-model`` request header, to that model's per-site clusters with integer
    weights that sum to ``ENVOY_TOTAL_WEIGHT`` (one weighted cluster set per model)."""
    origin_ids = [o["id"] for o in document["models"][0]["origins"]]
    hosts = []
    for o, origin_id in enumerate(origin_ids):
        routes = []
        for model in document["models"]:
            origin = model["origins"][o]
            sites = list(origin["routes"])
            weights = integer_weights(np.array([origin["routes"][s] for s in sites]),
                                      ENVOY_TOTAL_WEIGHT)
            routes.append({
                "match": {"prefix": "/", "headers": [
                    {"name": MODEL_HEADER, "string_match": {"exact": model["name"]}}]},
                "route": {"weighted_clusters": {"clusters": [
                    {"name": cluster_name(site, model["name"]), "weight": int(w)}
                    for site, w in zip(sites, weights, strict=True) if w > 0]}}})
        hosts.append({
            "name": f"origin-{origin_id.lower()}",
            "domains": [domain_template.format(origin=origin_id.lower())],
            "routes": routes,
        })
    interval = document["interval"]
    header = (f"# SLIT plan for {interval['start_utc']} to {interval['end_utc']} "
              f"(issued {_issued_at(document)}); clusters are named "
              f"slit-<model>-site-<site id>, routes match the {MODEL_HEADER} header.\n")
    body = {"version_info": interval["start_utc"], "resources": [{
        "@type": ROUTE_CONFIG_TYPE, "name": ENVOY_ROUTE_CONFIG, "virtual_hosts": hosts}]}
    return header + yaml.safe_dump(body, sort_keys=False, default_flow_style=False)


def cluster_name(site_id: str, model: str) -> str:
    return f"slit-{model.lower()}-site-{site_id.lower()}"


def _issued_at(document: dict) -> str:
    """The plan's wall-clock issue time (schema 3 keeps it in ``timing``, schema 2 on top)."""
    return str(document.get("timing", {}).get("issued_at", document.get("issued_at", "-")))
