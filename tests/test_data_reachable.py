from rso_lib.data.kb import load_kb
from rso_lib.data.targets import load_sim_targets, split_reachable


def test_unreachable_inspired_targets_are_split_off(data_dir):
    kb = load_kb(data_dir, "redial")
    targets = load_sim_targets(data_dir, "inspired", "test")
    kept, dropped = split_reachable(targets, kb)
    assert len(kept) + len(dropped) == len(targets) == 99
    assert len(dropped) == 20  # genre sets no id2info.json movie covers (see split_reachable)
    assert all(kb.valid_targets(t.target_genres) for t in kept)
    assert not any(kb.valid_targets(t.target_genres) for t in dropped)
