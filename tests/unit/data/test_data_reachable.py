from rso_lib.data.kb import load_kb
from rso_lib.data.targets import apply_genre_rule, load_sim_targets, split_reachable


def test_unreachable_inspired_targets_are_split_off(data_dir):
    kb = load_kb(data_dir, "redial")
    targets = apply_genre_rule(load_sim_targets(data_dir, "inspired", "test"), "all")
    kept, dropped = split_reachable(targets, kb)
    assert len(kept) + len(dropped) == len(targets) == 99
    assert len(dropped) == 20  # genre sets no id2info.json movie covers (see split_reachable)
    assert all(kb.valid_targets(t.target_genres) for t in kept)
    assert not any(kb.valid_targets(t.target_genres) for t in dropped)


def test_empty_targets_are_never_covered_before_the_substitute(data_dir):
    """The 8 INSPIRED test users with no target genre would be free hits if [] counted as covered;
    the genre rule gives them the authors' substitute instead, which the catalogue covers."""
    kb = load_kb(data_dir, "redial")
    raw = load_sim_targets(data_dir, "inspired", "test")
    empty = [t for t in raw if not t.target_genres]
    assert len(empty) == 8
    _, dropped = split_reachable(empty, kb)
    assert len(dropped) == 8
    kept, _ = split_reachable(apply_genre_rule(empty, "all"), kb)
    assert len(kept) == 8 and all(t.target_genres == ["action"] for t in kept)
