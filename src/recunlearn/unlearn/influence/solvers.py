"""Solvers of (H + damping I) x = b for an influence update: the per-row Newton step on Hessian
blocks (:func:`block_newton`, the default), and over Hessian-vector products conjugate gradients,
LiSSA, the reference code's quadratic minimisation by Adam, and a dense exact solve for tiny problems
to test the others against (:func:`solve`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from recunlearn.unlearn.influence.blocks import LowRankBlocks, cholesky_solve
from recunlearn.unlearn.influence.objective import Operator, SolverError


@dataclass
class BlockSolve:
    """The per-row Newton step and what it took."""

    x: torch.Tensor
    raised_blocks: int
    """Blocks that were not positive definite after damping and got their own extra shift."""


def block_newton(
    blocks: torch.Tensor | LowRankBlocks,
    b: torch.Tensor,
    damping: float,
    row_damping: torch.Tensor | None = None,
    overwrite_blocks: bool = False,
) -> BlockSolve:
    """Solve (block_u + (damping + row_damping_u) I) x_u = b_u for every row at once (batched Cholesky).

    With ``row_damping`` = the coupling bound of :func:`hessian_blocks`, the block-diagonal matrix
    is at least the whole Hessian (block Gershgorin), so the step minimises a quadratic upper
    bound of the objective's model and cannot overshoot where the full Hessian is indefinite.
    A block still not positive definite (LightGCN's second-order term) is shifted so that its
    smallest eigenvalue becomes ``damping``: the damped Newton step of that row alone.
    :class:`LowRankBlocks` are positive semi-definite, so ``damping`` > 0 is enough.
    ``overwrite_blocks``: damp the formed blocks in place (a caller done with them saves a copy).
    """
    if isinstance(blocks, LowRankBlocks):
        shift = torch.full_like(blocks.diagonal, damping) + (
            0 if row_damping is None else row_damping
        )
        x = blocks.solve(b, shift)
        if not torch.isfinite(x).all():
            raise SolverError(
                "the per-row Newton solve returned a non-finite step; increase damping"
            )
        return BlockSolve(x, 0)
    damped = blocks if overwrite_blocks else blocks.clone()  # + shift I, on the diagonal only
    damped.diagonal(dim1=-2, dim2=-1).add_(
        damping if row_damping is None else (damping + row_damping)[:, None]
    )
    factor, info = torch.linalg.cholesky_ex(damped)
    bad = info > 0
    raised = int(bad.sum())
    x = cholesky_solve(b.unsqueeze(-1), factor).squeeze(-1)
    if (
        raised
    ):  # by eigendecomposition: exact where Cholesky of a nearly singular shifted block is not
        values, vectors = torch.linalg.eigh(damped[bad])
        values = (values + (damping - values[:, :1])).clamp_min(damping)
        coordinates = (vectors.transpose(1, 2) @ b[bad].unsqueeze(-1)) / values.unsqueeze(-1)
        x[bad] = (vectors @ coordinates).squeeze(-1)
    if not torch.isfinite(x).all():
        raise SolverError("the per-row Newton solve returned a non-finite step; increase damping")
    return BlockSolve(x, raised)


# solvers -----------------------------------------------------------------------------------------------
@dataclass
class SolveResult:
    """The solution and how the solver got there."""

    x: torch.Tensor
    iterations: int
    relative_residual: float = float("nan")
    converged: bool = True
    hvps: int = 0
    history: list[float] = field(default_factory=list)
    attempts: int = 1
    """Solves run: more than one when CG restarted with more damping after non-positive curvature."""

    def details(self, method: str, damping: float, gradient: torch.Tensor) -> dict[str, Any]:
        """What an update's report says of the solve of (H + ``damping`` I) x = ``gradient``."""
        return {
            "solver": method,
            "iterations": self.iterations,
            "hvps": self.hvps,
            "attempts": self.attempts,
            "relative_residual": self.relative_residual,
            "converged": self.converged,
            "damping": damping,
            "step_norm": float(self.x.norm()),
            "gradient_norm": float(gradient.norm()),
        }


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum())


def conjugate_gradient(
    hvp: Operator,
    b: torch.Tensor,
    *,
    damping: float = 0.0,
    tol: float = 1e-6,
    max_iter: int = 200,
    preconditioner: Operator | None = None,
) -> SolveResult:
    """Solve (H + damping I) x = b by (preconditioned) conjugate gradients.

    Raises :class:`SolverError` on non-positive curvature (H + damping I is not positive
    definite along a search direction: more damping is needed) or a non-finite residual.
    """
    norm_b = math.sqrt(_dot(b, b))
    x = torch.zeros_like(b)
    if norm_b == 0:
        return SolveResult(x, 0, 0.0)
    r = b.clone()
    z = preconditioner(r) if preconditioner else r
    p = z.clone()
    rz = _dot(r, z)
    result = SolveResult(x, 0)
    for it in range(1, max_iter + 1):
        ap = hvp(p) + damping * p
        result.hvps += 1
        curvature = _dot(p, ap)
        if not curvature > 0:
            raise SolverError(
                f"conjugate gradients met non-positive curvature ({curvature:.3g}) at iteration {it}: "
                "the Hessian is not positive definite; increase damping",
                shift=-curvature / max(_dot(p, p), 1e-30) if math.isfinite(curvature) else 0.0,
            )
        alpha = rz / curvature
        x += alpha * p
        r -= alpha * ap
        residual = math.sqrt(_dot(r, r)) / norm_b
        result.history.append(residual)
        if not math.isfinite(residual):
            raise SolverError(
                f"conjugate gradients diverged (residual {residual}) at iteration {it}"
            )
        result.iterations, result.relative_residual = it, residual
        if residual <= tol:
            return result
        z = preconditioner(r) if preconditioner else r
        rz_next = _dot(r, z)
        p = z + (rz_next / rz) * p
        rz = rz_next
    result.converged = False
    return result


def largest_eigenvalue(
    hvp: Operator, like: torch.Tensor, iterations: int = 30, seed: int = 0
) -> float:
    """Power iteration on H (an estimate from below, good to a few percent after 30 steps)."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.randn(like.shape, generator=generator).to(like)
    v /= v.norm()
    value = 0.0
    for _ in range(iterations):
        w = hvp(v)
        value = _dot(v, w)
        norm = float(w.norm())
        if norm == 0:
            return 0.0
        v = w / norm
    return value


def lissa(
    hvp: Operator,
    b: torch.Tensor,
    *,
    damping: float = 0.0,
    scale: float | None = None,
    depth: int = 1000,
    tol: float = 1e-8,
) -> SolveResult:
    """LiSSA (Agarwal et al. 2017): x <- b + (I - (H + damping I) / scale) x, answer x / scale.

    Converges when every eigenvalue of H + damping I lies in (0, 2 scale); by default ``scale`` is
    1.1 times the largest eigenvalue found by power iteration. Raises :class:`SolverError` on divergence.
    """
    hvps = 0
    if scale is None:
        dominant = (
            largest_eigenvalue(hvp, b) + damping
        )  # the eigenvalue of largest magnitude, damped
        if not dominant > 0:
            raise SolverError(
                f"LiSSA needs a positive definite damped Hessian; its dominant eigenvalue is {dominant:.3g} "
                "(damping included): raise the damping, or use the 'block' or 'cg' solver"
            )
        scale = 1.1 * dominant
        hvps += 30
    if not scale > 0:
        raise SolverError(f"LiSSA needs a positive scale, got {scale}")
    x = b.clone()
    norm_b = max(float(b.norm()), 1e-30)
    result = SolveResult(x, 0)
    for it in range(1, depth + 1):
        step = b - (hvp(x) + damping * x) / scale
        hvps += 1
        change = float((step).norm()) / norm_b
        x = x + step
        result.iterations = it
        if not math.isfinite(change) or float(x.norm()) > 1e12 * norm_b:
            raise SolverError(
                f"LiSSA diverged at iteration {it}: scale {scale:.3g} is below half the largest "
                "eigenvalue, or the damped Hessian is not positive definite"
            )
        if change <= tol:
            break
    else:
        result.converged = False
    result.x, result.hvps = x / scale, hvps
    residual = b - (hvp(result.x) + damping * result.x)
    result.relative_residual = float(residual.norm()) / norm_b
    return result


def quadratic_adam(
    hvp: Operator,
    b: torch.Tensor,
    *,
    damping: float = 0.0,
    lr: float = 1e-3,
    steps: int = 100,
    evaluate: Callable[[torch.Tensor], float] | None = None,
    every: int = 1,
) -> SolveResult:
    """The reference code's solver: minimise 1/2 x'(H + damping I)x - x'b with Adam.

    Keeps the iterate ``evaluate`` scores highest (the reference uses validation AUC, every
    ``every`` steps), or the one with the lowest objective when there is no ``evaluate``.
    """
    x = torch.zeros_like(b, requires_grad=True)
    optimizer = torch.optim.Adam([x], lr=lr)
    best_x, best_value = torch.zeros_like(b), (evaluate(torch.zeros_like(b)) if evaluate else 0.0)
    result = SolveResult(best_x, 0)
    for step in range(steps + 1):  # step s looks at the iterate after s Adam steps
        current = x.detach()
        ax = hvp(current) + damping * current
        result.hvps += 1
        objective = 0.5 * _dot(current, ax) - _dot(current, b)
        if not math.isfinite(objective):
            raise SolverError(
                f"quadratic minimisation diverged at step {step}; lower its learning rate"
            )
        result.history.append(objective)
        if step and (step % every == 0 or step == steps):
            value = evaluate(current) if evaluate else -objective
            if value > best_value:
                best_x, best_value, result.iterations = current.clone(), value, step
        if step == steps:
            break
        x.grad = ax - b
        optimizer.step()
    result.x = best_x
    residual = b - (hvp(best_x) + damping * best_x)
    result.relative_residual = float(residual.norm()) / max(float(b.norm()), 1e-30)
    return result


def dense_hessian(hvp: Operator, like: torch.Tensor) -> torch.Tensor:
    """The Hessian as a dense (n x n) float64 matrix, one HVP per column (tiny problems only)."""
    n = like.numel()
    columns = []
    for j in range(n):
        e = torch.zeros(n, dtype=like.dtype, device=like.device)
        e[j] = 1.0
        columns.append(hvp(e.view_as(like)).reshape(-1).double())
    matrix = torch.stack(columns, 1)
    return (matrix + matrix.T) / 2


def exact_solve(
    hvp: Operator, b: torch.Tensor, *, damping: float = 0.0, max_size: int = 4096
) -> SolveResult:
    """Form H densely and solve (H + damping I) x = b directly: the answer the iterative solvers approximate."""
    if b.numel() > max_size:
        raise SolverError(
            f"exact solve of a {b.numel()}-parameter system is too large (limit {max_size}); use 'cg'"
        )
    matrix = dense_hessian(hvp, b) + damping * torch.eye(
        b.numel(), dtype=torch.float64, device=b.device
    )
    try:
        x = torch.linalg.solve(matrix, b.reshape(-1).double())
    except RuntimeError as exc:  # torch raises on an exactly singular matrix
        raise SolverError(f"the damped Hessian is singular; increase damping ({exc})") from None
    return SolveResult(x.to(b.dtype).view_as(b), 1, 0.0, hvps=b.numel())


class SolverConfig(BaseModel):
    """How (H + damping I) x = g is solved."""

    model_config = ConfigDict(extra="forbid")
    method: Literal["block", "cg", "lissa", "quadratic", "exact"] = "block"
    """'block' (default): the per-row Newton step, each kept row's exact dim x dim Hessian block
    (through LightGCN's propagation) solved at once, user-item cross blocks ignored: an
    approximation, one pass over the rows and no Hessian-vector products (see docs/ifru.md for
    its distance to CG and the quality it gives); 'cg': preconditioned conjugate gradients
    (a few steps with the block preconditioner); 'lissa': the LiSSA recursion; 'quadratic': the reference code's
    Adam on 1/2 x'Hx - x'g keeping the best iterate by validation AUC; 'exact': dense solve
    (tiny problems)."""
    coupling: bool = True
    """'block' only: damp each row's block by the bound on its coupling to the other rows (block
    Gershgorin), which makes the block-diagonal matrix an upper bound of the Hessian: the step
    never overshoots, with no step size to tune. Off: the bare per-row Newton step, which on an
    early-stopped model (indefinite Hessian) can be far too long and fail the guard."""
    hvp: Literal["analytic", "autograd"] = "analytic"
    """Hessian-vector products in closed form for the bilinear models ('analytic', fast) or by
    double backprop through the objective ('autograd', general); both give the same Hessian."""
    preconditioner: Literal["block", "diagonal", "none"] = "block"
    """CG preconditioner: 'block' (the per-row dim x dim Gauss-Newton blocks: the fewest
    iterations), 'diagonal' (their diagonals: more iterations, each block cheaper to form), 'none'."""
    damping: float = Field(1e-3, ge=0)
    """Damping relative to the mean diagonal of the Hessian of the kept rows, so one value fits
    every dataset and size; it keeps a singular or nearly indefinite Hessian solvable."""
    tol: float = Field(1e-3, gt=0)
    """CG stops when the residual falls below this fraction of |g| (influence estimates are not
    more accurate than that; the quality on validation does not change below it)."""
    max_iter: int = Field(100, ge=1)
    """Most CG iterations (or LiSSA recursion depth)."""
    max_damping_raises: int = Field(6, ge=0)
    """When CG meets non-positive curvature (an early-stopped model can sit where the BCE Hessian is
    indefinite), damping grows past the curvature found (at least 10x) and the solve restarts, up to
    this many times before a :class:`SolverError`."""
    quadratic_lr: float = Field(1e-3, gt=0)
    """Adam learning rate of the 'quadratic' solver (the reference code tunes it per dataset)."""
    quadratic_steps: int = Field(100, ge=1)
    """Adam steps of the 'quadratic' solver; validation AUC is computed every ``quadratic_every``."""
    quadratic_every: int = Field(5, ge=1)
    """Evaluate the 'quadratic' solver's iterate every this many steps."""


def solve(
    config: SolverConfig,
    hvp: Operator,
    b: torch.Tensor,
    *,
    scale: float,
    preconditioner: Callable[[float], Operator] | None = None,
    evaluate: Callable[[torch.Tensor], float] | None = None,
) -> tuple[SolveResult, float]:
    """Solve with the configured method; ``scale`` (mean Hessian diagonal) turns relative damping
    into an absolute one. Returns the result and the absolute damping used."""
    if config.method == "block":
        raise SolverError(
            "the 'block' solver works on the Hessian blocks, not on HVPs: use block_newton"
        )
    damping = config.damping * scale
    calls = [0]

    def counted(v: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return hvp(v)

    for attempt in range(config.max_damping_raises + 1):
        try:
            if config.method == "cg":
                result = conjugate_gradient(
                    counted,
                    b,
                    damping=damping,
                    tol=config.tol,
                    max_iter=config.max_iter,
                    preconditioner=preconditioner(damping) if preconditioner else None,
                )
            elif config.method == "lissa":
                result = lissa(counted, b, damping=damping, depth=config.max_iter)
            elif config.method == "quadratic":
                result = quadratic_adam(
                    counted,
                    b,
                    damping=damping,
                    lr=config.quadratic_lr,
                    steps=config.quadratic_steps,
                    evaluate=evaluate,
                    every=config.quadratic_every,
                )
            else:
                result = exact_solve(counted, b, damping=damping)
            result.hvps, result.attempts = calls[0], attempt + 1
            return result, damping
        except SolverError as error:
            if attempt == config.max_damping_raises or config.method != "cg":
                raise
            damping = max(damping * 10, damping + 2 * error.shift, 1e-2 * scale)
    raise AssertionError("unreachable")
