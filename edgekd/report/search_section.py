"""The report's Search section, one form per training strategy: the rungs of successive
halving, or the supernet's space, its inherited front and the fine-tuned student."""

from __future__ import annotations

__all__ = ["search_section"]


def search_section(search: dict, depths: list) -> list[tuple]:
    """The blocks (see :func:`edgekd.report.report.document`) of the run's Search section."""
    return _supernet_blocks(search) if search.get("supernet") else _halving_blocks(search, depths)


def _halving_blocks(search: dict, depths: list) -> list[tuple]:
    """The search section of a successive-halving run: its rungs."""
    return [
        ("p", f"Candidates enumerated: {search.get('candidates_enumerated')}, within budget: "
              f"{search.get('candidates_in_budget')}, shortlisted: "
              f"{len(search.get('shortlist') or [])}. Successive halving trained "
              f"{search.get('epochs_spent')} epochs in all, against {search.get('epochs_full')} "
              "to train the whole shortlist fully."),
        ("table", ("rung", "trials", "epochs", "trained", "depths"),
         [[str(i + 1), str(r["keep"]),
           f"{r['epochs']}" + (" (final, from scratch)" if r.get("fresh")
                               else " (continued)" if i else ""),
           ", ".join(search["survivors"][i]),
           ", ".join(str(d) for d in depths[i]) if i < len(depths) else "-"]
          for i, r in enumerate(search.get("rungs") or [])]),
    ]


def _supernet_blocks(search: dict) -> list[tuple]:
    """The search section of a supernet run: the space, the inherited front, the fine-tuned one."""
    record = search["supernet"]
    return [("p", f"One weight-sharing supernet over {record['space_size']} sub-networks, trained "
                  f"{record['epochs']} epochs with KD from the teacher (sandwich rule). "
                  f"{record['evaluated']} sub-networks within the budget were evaluated with "
                  "inherited weights (BatchNorm re-estimated on training images): the rows of method "
                  "'supernet' are the front of those, never trained alone. The best by validation "
                  f"accuracy, {record['chosen']}, was then fine-tuned for {record['finetune_epochs']} "
                  "epoch(s) with KD from its inherited weights (its row of method 'kd').")]
