"""GPU lanes: one Ray placement-group bundle per GPU of the cluster, so GPU steps spread over every GPU.

Ray gives a task that asks for a GPU share the first GPU with room: steps that run one after another
all land on GPU 0, and two half-GPU steps running together share GPU 0 while GPU 1 idles. A lane is
a bundle of one whole GPU (and a CPU share, `lane_cpus`) reserved for the run; every GPU step is
placed in one (`options`): search actor i in lane i mod n, each GPU task in the lane with the fewest
GPU steps outstanding (ties: the fewest given so far), so consecutive steps alternate between GPUs
and concurrent ones fill them evenly. Ray still accounts the shares inside a lane, and sets each
step's CUDA_VISIBLE_DEVICES to its lane's GPU.

Lanes are used only where they can hold the steps (`usable`: whole GPUs, shares of at most one GPU);
a placement group the cluster cannot grant in `timeout` seconds (GPUs held by other jobs) is given
up and the steps ask Ray for plain GPU shares, as without lanes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    from ray.util.placement_group import PlacementGroup
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

log = logging.getLogger(__name__)


class LaneOptions(TypedDict):
    """Ray options that place a task or actor in a lane (`GpuLanes.options`)."""

    num_gpus: float
    num_cpus: float
    scheduling_strategy: PlacementGroupSchedulingStrategy


def lane_cpus(cluster_cpus: float, lanes: int) -> float:
    """The CPUs each lane reserves: up to one, leaving at least one CPU of the cluster to the CPU
    steps (decode, scan, crops, encode), so they can never wait on CPUs the lanes hold."""
    if lanes < 1:
        return 0.0
    return max(0.0, min(1.0, (cluster_cpus - 1.0) / lanes))


def usable(cluster_gpus: float, shares: list[float]) -> bool:
    """Lanes can hold these GPU shares: the cluster has at least one whole GPU and no step asks for
    more than one."""
    return int(cluster_gpus) >= 1 and all(0 < s <= 1.0 for s in shares)


@dataclass
class LaneCounts:
    """Which lane gets the next GPU step: the fewest outstanding, then the fewest given, then the lowest."""

    lanes: int
    outstanding: list[int] = field(default_factory=list)
    given: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.outstanding = [0] * self.lanes
        self.given = [0] * self.lanes

    def take(self) -> int:
        lane = min(range(self.lanes), key=lambda i: (self.outstanding[i], self.given[i], i))
        self.outstanding[lane] += 1
        self.given[lane] += 1
        return lane

    def release(self, lane: int) -> None:
        self.outstanding[lane] -= 1


class GpuLanes:
    """The run's lanes: a placement group of `lanes` bundles of one GPU (and `cpus` CPU) each."""

    def __init__(self, lanes: int, cpus: float, group: PlacementGroup) -> None:
        self.lanes, self.cpus, self.group = lanes, cpus, group
        self.counts = LaneCounts(lanes)

    @classmethod
    def reserve(cls, cluster_gpus: float, cluster_cpus: float, timeout: float = 60.0) -> GpuLanes | None:
        """One lane per whole GPU of the cluster, or None where the cluster does not grant them."""
        import ray
        from ray.util.placement_group import placement_group, remove_placement_group

        lanes = int(cluster_gpus)
        cpus = lane_cpus(cluster_cpus, lanes)
        bundle = {"GPU": 1.0, **({"CPU": cpus} if cpus > 0 else {})}
        group = placement_group([dict(bundle) for _ in range(lanes)], strategy="PACK")
        try:
            ray.get(group.ready(), timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            remove_placement_group(group)
            log.warning("no GPU lanes: the cluster did not grant %d GPU(s) in %.0f s", lanes, timeout)
            return None
        log.info("%d GPU lane(s), %.2f CPU each", lanes, cpus)
        return cls(lanes, cpus, group)

    def options(self, lane: int, share: float) -> LaneOptions:
        """Ray options placing a step that asks for `share` of a GPU in `lane` (its CPU share in
        proportion: a half-GPU step takes half the lane's CPUs)."""
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        strategy = PlacementGroupSchedulingStrategy(
            placement_group=self.group, placement_group_bundle_index=lane
        )
        return {"num_gpus": share, "num_cpus": self.cpus * share, "scheduling_strategy": strategy}

    def close(self) -> None:
        from ray.util.placement_group import remove_placement_group

        remove_placement_group(self.group)
