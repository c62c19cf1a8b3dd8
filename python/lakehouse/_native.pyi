# Typing for the compiled module lakehouse._native (private: use the lakehouse package).
# Playbook part; the index part is merged in by its owner.
import numpy as np
import numpy.typing as npt

# ---- playbook boost / inject and the role gate (lakehouse.playbook wraps these) ----
def role_normalize(role: str) -> str: ...
def role_equal(a: str, b: str) -> bool: ...
def apply_playbook(
    result_ids: list[str],
    result_corpora: list[str],
    result_distances: npt.NDArray[np.float32],
    hit_answer_ids: list[str],
    hit_answer_corpora: list[str],
    hit_scores: npt.NDArray[np.float64],
    hit_distances: npt.NDArray[np.float32],
    hit_roles: list[str],
    query_role: str,
    exclude_ids: list[str],
    max_distance: float,
    max_inject_distance: float,
    k: int,
    vetoed_hits: list[int],
) -> tuple[
    list[int],  # result_index per row (-1: injected)
    list[int],  # hit_index per row (-1: plain retrieval)
    npt.NDArray[np.float32],  # distances
    list[str],  # sources: "retrieval" | "boost" | "inject"
    list[int],  # inject candidates (hit indexes)
    dict[str, int],  # hits, boosted, injected, rejected_role, vetoed, excluded
]: ...
