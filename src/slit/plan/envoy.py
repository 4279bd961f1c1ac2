"""A plan document as Envoy weighted-cluster routes (an RDS resource in YAML)."""

from __future__ import annotations

import numpy as np
import yaml

from slit.plan.document import integer_weights

ENVOY_TOTAL_WEIGHT = 10_000
ENVOY_ROUTE_CONFIG = "slit"
ROUTE_CONFIG_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"


def envoy_yaml(document: dict, domain_template: str = "{origin}.*") -> str:
    """Envoy RDS resource: one virtual host per origin, routing to per-site clusters with
    integer weights that sum to ``ENVOY_TOTAL_WEIGHT``."""
    hosts = []
    for origin in document["origins"]:
        sites = list(origin["routes"])
        weights = integer_weights(np.array([origin["routes"][s] for s in sites]),
                                  ENVOY_TOTAL_WEIGHT)
        hosts.append({
            "name": f"origin-{origin['id'].lower()}",
            "domains": [domain_template.format(origin=origin["id"].lower())],
            "routes": [{"match": {"prefix": "/"}, "route": {"weighted_clusters": {"clusters": [
                {"name": cluster_name(site), "weight": int(w)}
                for site, w in zip(sites, weights, strict=True) if w > 0]}}}],
        })
    interval = document["interval"]
    header = (f"# SLIT plan for {interval['start_utc']} to {interval['end_utc']} "
              f"(issued {document['issued_at']}); clusters are named slit-site-<site id>.\n")
    body = {"version_info": interval["start_utc"], "resources": [{
        "@type": ROUTE_CONFIG_TYPE, "name": ENVOY_ROUTE_CONFIG, "virtual_hosts": hosts}]}
    return header + yaml.safe_dump(body, sort_keys=False, default_flow_style=False)


def cluster_name(site_id: str) -> str:
    return f"slit-site-{site_id.lower()}"
