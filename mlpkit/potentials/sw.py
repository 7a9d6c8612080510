"""Stillinger–Weber potentials for Si (Stillinger & Weber 1985) and Ge (Ding & Andersen 1986).

E = Σ_{i<j} φ2(r_ij) + Σ_i Σ_{j<k} φ3(r_ij, r_ik, θ_jik)
φ2(r) = A ε (B (σ/r)^p − (σ/r)^q) exp(σ / (r − aσ))                         for r < aσ
φ3    = λ ε (cos θ_jik + 1/3)² exp(γσ / (r_ij − aσ)) exp(γσ / (r_ik − aσ))
"""

from __future__ import annotations

import dataclasses
import functools

import jax.numpy as jnp

from mlpkit.neighbors import EXACT, Neighbors, edge_vectors, safe_norm
from mlpkit.potentials.base import Potential


@dataclasses.dataclass(frozen=True)
class SWParameters:
    element: str
    epsilon_ev: float
    sigma_a: float
    lambda_: float
    mass_amu: float
    A: float = 7.049556277
    B: float = 0.6022245584
    p: float = 4.0
    q: float = 0.0
    a: float = 1.80
    gamma: float = 1.20

    @property
    def cutoff_a(self) -> float:
        return self.a * self.sigma_a

    @property
    def lattice_constant_angstrom(self) -> float:
        """Diamond lattice constant at the pair minimum, 4·2^(1/6)σ/√3 (Å)."""
        return 4 * 2 ** (1 / 6) * self.sigma_a / 3**0.5


SW_PARAMETERS = {
    "Si": SWParameters("Si", epsilon_ev=2.1683, sigma_a=2.0951, lambda_=21.0, mass_amu=28.0855),
    "Ge": SWParameters("Ge", epsilon_ev=1.93, sigma_a=2.181, lambda_=31.0, mass_amu=72.630),
}


def sw_energy_terms(params: SWParameters, positions_a, cell_a, neighbors: Neighbors):
    """Per-atom two-body and three-body energies, each [N] eV."""
    vectors = edge_vectors(positions_a, cell_a, neighbors)  # [N, M, 3]
    cutoff = params.cutoff_a
    distance = safe_norm(vectors, neighbors.mask, fill=cutoff)  # [N, M]
    inside = neighbors.mask & (distance < cutoff)
    # a stand-in distance well inside the cutoff keeps exp(σ/(r − aσ)) and its gradient finite
    r = jnp.where(inside, distance, 0.5 * cutoff)
    sigma, eps = params.sigma_a, params.epsilon_ev

    pair = params.A * eps * (params.B * (sigma / r) ** params.p - (sigma / r) ** params.q)
    pair = pair * jnp.exp(sigma / (r - cutoff))
    two_body = 0.5 * jnp.sum(jnp.where(inside, pair, 0.0), axis=1)  # each pair is listed twice

    radial = jnp.where(inside, jnp.exp(params.gamma * sigma / (r - cutoff)), 0.0)  # [N, M]
    unit = vectors / r[..., None]
    cos_angle = jnp.einsum("nmd,nkd->nmk", unit, unit, precision=EXACT)  # [N, M, M]
    distinct = ~jnp.eye(neighbors.capacity, dtype=bool)
    angular = jnp.where(distinct, (cos_angle + 1 / 3) ** 2, 0.0)
    # the ordered sum over j ≠ k counts each unordered pair (j, k) twice
    three_body = 0.5 * params.lambda_ * eps * jnp.einsum("nmk,nm,nk->n", angular, radial, radial, precision=EXACT)
    return two_body, three_body


def sw_energy(params: SWParameters, positions_a, cell_a, species, neighbors: Neighbors):
    """Total SW energy in eV; ``species`` is accepted for the common signature and not used."""
    del species
    two_body, three_body = sw_energy_terms(params, positions_a, cell_a, neighbors)
    return jnp.sum(two_body) + jnp.sum(three_body)


def parse_sw_spec(spec) -> tuple[str, str | None] | None:
    """``(element, split)`` of an SW spec: ``"sw:Si"`` → ``("Si", None)``, the potential; ``"sw:Si:test"`` →
    ``("Si", "test")``, a shipped data set. None for any other spec (a file path)."""
    text = str(spec)
    if not text.startswith("sw:"):
        return None
    element, colon, split = text[3:].partition(":")
    return element, split if colon else None


@functools.cache
def sw_potential(element: str) -> Potential:
    """The SW potential of ``"Si"`` or ``"Ge"``."""
    if element not in SW_PARAMETERS:
        raise ValueError(f"no Stillinger–Weber parameters for {element!r}; choose one of {sorted(SW_PARAMETERS)}")
    params = SW_PARAMETERS[element]
    return Potential(name=f"sw:{element}", energy_fn=functools.partial(sw_energy, params), cutoff_a=params.cutoff_a,
                     elements=(element,))
