"""The plan for one scheduling interval, for a load balancer: the stable JSON document of
docs/plan.md and Envoy weighted-cluster routes, with integer weights that sum exactly.

``interval.plan_scenario`` narrows a scenario to the interval, ``interval.plan_next_interval``
forecasts and searches it, ``document.plan_document`` writes the result down and
``envoy.envoy_yaml`` turns the document into routes.
"""

from slit.plan.document import (
    PLAN_SCHEMA_VERSION,
    SHARE_UNITS,
    integer_weights,
    loaded_from_document,
    plan_document,
)
from slit.plan.envoy import (
    ENVOY_ROUTE_CONFIG,
    ENVOY_TOTAL_WEIGHT,
    MODEL_HEADER,
    ROUTE_CONFIG_TYPE,
    cluster_name,
    envoy_yaml,
)
from slit.plan.interval import ModelPlan, plan_next_interval, plan_scenario

__all__ = [
    "ENVOY_ROUTE_CONFIG", "ENVOY_TOTAL_WEIGHT", "MODEL_HEADER", "PLAN_SCHEMA_VERSION",
    "ROUTE_CONFIG_TYPE", "SHARE_UNITS", "ModelPlan", "cluster_name", "envoy_yaml",
    "integer_weights", "loaded_from_document", "plan_document", "plan_next_interval",
    "plan_scenario",
]
