"""The operator's plan at one interval, for a load balancer and a fleet manager: SLIT's
receding-horizon step (the same as ``slit run``'s), the stable JSON document of docs/plan.md and
Envoy weighted-cluster routes, with integer weights that sum exactly.

``interval.plan_scenario`` narrows a scenario to the look-ahead from the interval,
``document.state_from_document`` reads what a previous plan left loaded,
``interval.plan_next_interval`` forecasts and decides, ``document.plan_document`` writes the
decision down and ``envoy.envoy_yaml`` turns the document into routes.
"""

from slit.plan.document import (
    LOOK_AHEAD_STATUS,
    PLAN_SCHEMA_VERSION,
    READABLE_SCHEMA_VERSIONS,
    SHARE_UNITS,
    integer_weights,
    loaded_from_document,
    plan_document,
    state_from_document,
)
from slit.plan.envoy import (
    ENVOY_ROUTE_CONFIG,
    ENVOY_TOTAL_WEIGHT,
    MODEL_HEADER,
    ROUTE_CONFIG_TYPE,
    cluster_name,
    envoy_yaml,
)
from slit.plan.interval import FleetDecision, LoadedState, plan_next_interval, plan_scenario

__all__ = [
    "ENVOY_ROUTE_CONFIG", "ENVOY_TOTAL_WEIGHT", "LOOK_AHEAD_STATUS", "MODEL_HEADER",
    "PLAN_SCHEMA_VERSION", "READABLE_SCHEMA_VERSIONS", "ROUTE_CONFIG_TYPE", "SHARE_UNITS",
    "FleetDecision", "LoadedState", "cluster_name", "envoy_yaml", "integer_weights",
    "loaded_from_document", "plan_document", "plan_next_interval", "plan_scenario",
    "state_from_document",
]
