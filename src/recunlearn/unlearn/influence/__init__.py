"""Influence-function machinery shared by IFRU, IF and SCIF (the methods themselves are modules of
:mod:`recunlearn.unlearn`): the objective over chosen rows (``objective``), samples that bound its cost
(``sampling``), its per-row Hessian blocks (``blocks``), solvers of the damped Newton step
(``solvers``), the pairwise (BPR) and generic-model variants (``pairwise``, ``generic``), and the
unlearner that ties them together (``unlearner``). Graph utilities live in :mod:`recunlearn.models.graph`.
"""
