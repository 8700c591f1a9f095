"""Routing inside a deployment: variants drawn by weight, then the least-loaded healthy worker.

Instances are real Instance objects that are never started: an instance is in rotation while it
has worker pools (as after a healthy start), and a worker's load is its pool's ``in_flight``.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

from modelhost.control.resources import EndpointConfig, Model, ProductionVariant
from modelhost.frontdoor.upstream import UpstreamPool
from modelhost.runtime.deployment import Deployment, Variant, build_deployment
from modelhost.runtime.instance import Instance, InstanceSpec, InstanceState

MODEL = Model("sentiment", "file:///models/sentiment")

Load = int | Sequence[int] | None  # one worker's in-flight count, one per worker, or out of rotation


def make_instance(tmp_path: Path, variant: str, index: int, load: Load) -> Instance:
    """An instance in rotation with workers this busy, or out of rotation (no pools) for None."""
    instance = Instance(
        InstanceSpec("ep", variant, index, MODEL),
        run_dir=tmp_path / "run" / f"{variant}-{index}",
        log_path=tmp_path / "logs" / f"{variant}-{index}.log",
        environment={},
        load_timeout_s=1.0,
        request_timeout_s=1.0,
    )
    if load is None:
        instance.state = InstanceState.RESTARTING
        return instance
    for worker, in_flight in enumerate([load] if isinstance(load, int) else load):
        pool = UpstreamPool(f"@modelhost-test-{variant}-{index}-{worker}")
        pool.in_flight = in_flight
        instance.pools.append(pool)
    instance.state = InstanceState.HEALTHY
    return instance


def make_variant(tmp_path: Path, name: str, loads: Sequence[Load], weight: float = 1.0) -> Variant:
    return Variant(name, weight, [make_instance(tmp_path, name, i, load) for i, load in enumerate(loads)])


def make_deployment(tmp_path: Path, weights: dict[str, float]) -> Deployment:
    config = EndpointConfig("ep-config", [ProductionVariant(name, MODEL.name, 1, w) for name, w in weights.items()])
    return Deployment("ep", config, [make_variant(tmp_path, name, [0], w) for name, w in weights.items()])


def picked(variant: Variant, exclude: Sequence[Instance] = ()) -> tuple[int, int] | None:
    """(instance index, worker index) of the pick, or None."""
    choice = variant.pick(exclude=exclude)
    if choice is None:
        return None
    instance, pool = choice
    assert instance in variant.instances
    return instance.spec.index, instance.pools.index(pool)


# -- choose_variant -------------------------------------------------------------------------------


def test_variants_are_drawn_in_proportion_to_their_weights(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path, {"a": 70, "b": 30, "never": 0})
    draw = random.Random(20240601).random

    counts = Counter(deployment.choose_variant(draw).name for _ in range(20_000))

    assert set(counts) == {"a", "b"}  # the 0-weight variant is never chosen
    assert 0.68 < counts["a"] / 20_000 < 0.72
    assert 0.28 < counts["b"] / 20_000 < 0.32


@pytest.mark.parametrize(
    "weights",
    [
        {"zero": 0, "a": 70, "b": 30},
        {"a": 70, "zero": 0, "b": 30},
        {"a": 70, "b": 30, "zero": 0},
        {"zero": 0, "a": 1, "also-zero": 0},
        {"a": 5e-324, "zero": 0},  # the sum is the tiny weight itself: a draw of it lands past it
    ],
    ids=["zero-first", "zero-between", "zero-last", "one-non-zero", "subnormal"],
)
def test_a_zero_weight_variant_is_never_chosen_even_at_the_edges(tmp_path: Path, weights: dict[str, float]) -> None:
    deployment = make_deployment(tmp_path, weights)
    edges = [0.0, 5e-324, 0.3, 0.5, 0.7 - 1e-12, 0.7, 0.7 + 1e-12, 0.999999, 1.0 - 2**-53]

    chosen = {deployment.choose_variant(lambda r=r: r).name for r in edges}

    assert "zero" not in chosen
    assert "also-zero" not in chosen
    draw = random.Random(7).random
    assert not {deployment.choose_variant(draw).name for _ in range(2_000)} & {"zero", "also-zero"}


def test_the_draw_maps_onto_cumulative_weight_ranges(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path, {"a": 70, "b": 30})

    def chosen(r: float) -> str:
        return deployment.choose_variant(lambda: r).name

    assert chosen(0.0) == "a"
    assert chosen(0.5) == "a"
    assert chosen(0.69) == "a"
    assert chosen(0.71) == "b"
    assert chosen(1.0 - 2**-53) == "b"


def test_fractional_weights_are_relative(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path, {"a": 0.25, "b": 0.25, "c": 0.5})
    draw = random.Random(3).random

    counts = Counter(deployment.choose_variant(draw).name for _ in range(20_000))

    assert 0.23 < counts["a"] / 20_000 < 0.27
    assert 0.23 < counts["b"] / 20_000 < 0.27
    assert 0.48 < counts["c"] / 20_000 < 0.52


def test_a_single_variant_is_always_chosen(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path, {"only": 1})

    assert {deployment.choose_variant().name for _ in range(100)} == {"only"}  # the default random source


def test_variant_by_name(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path, {"a": 1, "b": 1})

    assert deployment.variant("b") is deployment.variants[1]
    assert deployment.variant("a") is deployment.variants[0]
    assert deployment.variant("c") is None
    assert deployment.variant("A") is None  # names are exact
    assert [i.spec.label for i in deployment.instances] == ["ep/a/0", "ep/b/0"]


# -- pick ----------------------------------------------------------------------------------------


def test_the_instance_with_the_fewest_requests_in_flight_is_picked(tmp_path: Path) -> None:
    variant = make_variant(tmp_path, "a", [3, 1, 2])

    assert picked(variant) == (1, 0)

    variant.instances[0].pools[0].in_flight = 0
    assert picked(variant) == (0, 0)


def test_the_least_busy_worker_of_any_instance_is_picked(tmp_path: Path) -> None:
    variant = make_variant(tmp_path, "a", [[4, 2, 3], [5, 1], [2, 2]])

    assert picked(variant) == (1, 1)
    assert picked(variant, exclude=[variant.instances[1]]) == (0, 1)  # a tie with instance 2: the first wins
    assert variant.instances[0].in_flight == 9
    assert variant.instances[0].least_busy() is variant.instances[0].pools[1]


def test_a_tie_goes_to_the_first(tmp_path: Path) -> None:
    assert picked(make_variant(tmp_path, "a", [2, 1, 1, 1])) == (1, 0)
    assert picked(make_variant(tmp_path, "b", [0, 0])) == (0, 0)
    assert picked(make_variant(tmp_path, "c", [[1, 0, 0]])) == (0, 1)


def test_excluded_instances_are_not_picked(tmp_path: Path) -> None:
    variant = make_variant(tmp_path, "a", [5, 0, 1])
    first, idle, light = variant.instances

    assert picked(variant, exclude=[idle]) == (2, 0)
    assert picked(variant, exclude=[idle, light]) == (0, 0)
    assert variant.pick(exclude=(light, idle, first)) is None


def test_exclusion_is_by_identity(tmp_path: Path) -> None:
    variant = make_variant(tmp_path, "a", [0, 0])
    lookalike = make_instance(tmp_path, "a", 0, 0)  # same spec, another object

    assert picked(variant, exclude=[lookalike]) == (0, 0)


def test_instances_without_pools_are_skipped(tmp_path: Path) -> None:
    variant = make_variant(tmp_path, "a", [None, 9, None, 4, []])

    assert picked(variant) == (3, 0)
    assert picked(variant, exclude=[variant.instances[3]]) == (1, 0)
    assert variant.pick(exclude=[variant.instances[1], variant.instances[3]]) is None
    assert make_variant(tmp_path, "b", [None, None]).pick() is None
    assert Variant("empty", 1, []).pick() is None
    assert variant.instances[0].least_busy() is None
    assert variant.instances[0].in_flight == 0


def test_an_instance_marked_down_leaves_rotation(tmp_path: Path) -> None:
    variant = make_variant(tmp_path, "a", [[0, 0], 7])
    idle, busy = variant.instances
    pools = list(idle.pools)

    idle.mark_down()  # what supervision does when the process exits

    assert idle.pools == []
    assert all(pool.closed for pool in pools)
    assert variant.pick() == (busy, busy.pools[0])


def test_picking_spreads_a_burst_across_workers(tmp_path: Path) -> None:
    """As the front door does: pick, then count the request as in flight before the next pick."""
    variant = make_variant(tmp_path, "a", [[0, 0], 0, None])

    order = []
    for _ in range(9):
        choice = variant.pick()
        assert choice is not None
        choice[1].in_flight += 1
        order.append((choice[0].spec.index, choice[0].pools.index(choice[1])))

    assert order == [(0, 0), (0, 1), (1, 0)] * 3  # every worker counts the same, whichever instance
    assert [i.in_flight for i in variant.instances] == [6, 3, 0]


# -- build_deployment -------------------------------------------------------------------------------


def test_build_deployment_lays_out_every_variants_instances(tmp_path: Path) -> None:
    other = Model("other", "file:///models/other")
    config = EndpointConfig(
        "ep-config", [ProductionVariant("a", "sentiment", 2, 3.0), ProductionVariant("b", "other", 1, 1.0)]
    )

    deployment = build_deployment(
        "ep",
        config,
        {"sentiment": MODEL, "other": other},
        run_root=tmp_path / "run",
        log_root=tmp_path / "logs",
        environment={"X": "1"},
        load_timeout_s=10,
        request_timeout_s=5,
    )

    assert [(v.name, v.weight, len(v.instances)) for v in deployment.variants] == [("a", 3.0, 2), ("b", 1.0, 1)]
    assert [i.spec.label for i in deployment.instances] == ["ep/a/0", "ep/a/1", "ep/b/0"]
    assert [i.spec.model.name for i in deployment.instances] == ["sentiment", "sentiment", "other"]
    assert [i.log_path for i in deployment.instances] == [
        tmp_path / "logs" / "ep" / "a-0.log",
        tmp_path / "logs" / "ep" / "a-1.log",
        tmp_path / "logs" / "ep" / "b-0.log",
    ]
    run_dirs = [i.run_dir for i in deployment.instances]
    assert len({d.parent for d in run_dirs}) == 1  # one generation folder for the whole deployment
    assert run_dirs[0].parent.parent == tmp_path / "run" / "ep"
    assert [d.name for d in run_dirs] == ["a-0", "a-1", "b-0"]
    assert all(i.pools == [] and i.state is InstanceState.STARTING for i in deployment.instances)
    assert deployment.variants[0].pick() is None  # not started: nothing in rotation
    assert not any(d.exists() for d in run_dirs)  # nothing is written before start()
    draw = random.Random(1).random
    counts = Counter(deployment.choose_variant(draw).name for _ in range(4_000))
    assert 0.72 < counts["a"] / 4_000 < 0.78
