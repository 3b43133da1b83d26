"""The autoregressive Gaussian mixture of a compressed posterior: density and sampling.

numpy only.  The density of standardised coordinates ``z`` is

.. math:: p(z) = \\prod_i \\sum_k \\pi_{ik}(z_{<i})\\, \\mathcal{N}(z_i; \\mu_{ik}(z_{<i}), \\sigma_{ik}(z_{<i})),

MADE's autoregressive factorisation (Germain et al. 2015, arXiv:1502.03509) with mixture
outputs (Bishop 1994), whose conditioner is a two-layer KAN (arXiv:2508.18698) made of
:mod:`gwtools.compression.layers`.  Sampling is ancestral, one dimension at a time, with the
work of each hidden unit done once (:meth:`MixtureDensity.draw_chunks`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from gwtools.compression.layers import Layer

__all__ = ["LOG_SIGMA_BOUNDS", "MixtureDensity", "made_masks"]

#: Clamp of the mixture log standard deviations (standardised units): keeps densities finite
#: and stops a poorly constrained component from throwing samples far into the tails.
LOG_SIGMA_BOUNDS = (-7.0, 1.0)
#: Draws taken from the generator at a time: a seed gives the same samples however many are
#: asked for, and whichever way they are consumed.
_CHUNK = 1 << 15
#: Samples evaluated together inside a chunk: their features stay in cache.
_BLOCK = 1 << 13


def made_masks(n_dim: int, hidden: int, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """MADE connectivity (Germain et al. 2015) for a one-hidden-layer mixture conditioner.

    Input ``i`` has degree ``i + 1``; hidden unit ``h`` has degree ``h % max(d - 1, 1) + 1``;
    output block ``j`` (3K outputs of dimension ``j``) has degree ``j + 1``.  An edge exists
    where the degree rises (input -> hidden: ``m_h >= i + 1``) or strictly rises
    (hidden -> output: ``j + 1 > m_h``), so block ``j`` depends on inputs ``< j`` only.

    Returns
    -------
    mask_in : numpy.ndarray of bool, shape (d, hidden)
    mask_out : numpy.ndarray of bool, shape (hidden, d * 3 * n_components)
    """
    hidden_degree = np.arange(hidden) % max(n_dim - 1, 1) + 1
    in_degree = np.arange(1, n_dim + 1)
    out_degree = np.repeat(np.arange(1, n_dim + 1), 3 * n_components)
    mask_in = hidden_degree[None, :] >= in_degree[:, None]
    mask_out = out_degree[None, :] > hidden_degree[:, None]
    return mask_in, mask_out


@dataclass(frozen=True)
class MixtureDensity:
    """Autoregressive Gaussian mixture on standardised coordinates, numpy only.

    Attributes
    ----------
    layers : tuple of gwtools.compression.layers.Layer
        The conditioner, (n, d) -> (n, d * 3 * K).
    mean, scale : numpy.ndarray, shape (d,)
        ``z = (y - mean) / scale`` for unbounded coordinates ``y``.
    n_components : int
    """

    layers: tuple[Layer, ...]
    mean: np.ndarray
    scale: np.ndarray
    n_components: int

    @property
    def n_dim(self) -> int:
        return int(self.mean.shape[0])

    def _outputs(self, z: np.ndarray) -> np.ndarray:
        h = z
        for layer in self.layers:
            h = layer(h)
        return h

    def _split(self, out: np.ndarray):
        k = self.n_components
        out = out.reshape(len(out), -1, 3, k)
        logits = out[:, :, 0]
        log_weight = logits - _logsumexp(logits)[..., None]
        log_sigma = np.clip(out[:, :, 2], *LOG_SIGMA_BOUNDS)
        return log_weight, out[:, :, 1], log_sigma

    def log_prob_unbounded(self, y: np.ndarray) -> np.ndarray:
        """Log density of unbounded coordinates ``y``, shape (n, d) -> (n,)."""
        result = np.empty(len(y))
        for start in range(0, len(y), _CHUNK):
            chunk = y[start : start + _CHUNK]
            z = (chunk - self.mean) / self.scale
            log_weight, mu, log_sigma = self._split(self._outputs(z))
            r = (z[:, :, None] - mu) * np.exp(-log_sigma)
            comp = log_weight - 0.5 * r * r - log_sigma - 0.5 * math.log(2.0 * math.pi)
            result[start : start + _CHUNK] = _logsumexp(comp).sum(axis=1)
        return result - np.log(self.scale).sum()

    @functools.cached_property
    def _sampling_network(self):
        """Layers with hidden units sorted by MADE degree, the order, and the number of
        units known before each dimension is drawn (those of degree <= j)."""
        first, last = self.layers
        degree = np.arange(first.n_out) % max(self.n_dim - 1, 1) + 1
        order = np.argsort(degree, kind="stable")
        n_known = np.searchsorted(degree[order], np.arange(self.n_dim + 1), side="right")
        return first, last.permute_inputs(order), order, n_known

    def _workspace(self, first, last, m: int) -> dict[str, np.ndarray]:
        """Flat work buffers for blocks of up to ``m`` draws, reused from block to block: a
        fresh multi-megabyte array per block would cost a page fault per 4 kB on first touch."""
        return {
            "z": np.empty(self.n_dim * m, dtype=np.float32),
            "mixture": np.empty(3 * self.n_components * m, dtype=np.float32),
            "input_features": np.empty(self.n_dim * first.n_features * m, dtype=np.float32),
            "hidden_features": np.empty(first.n_out * last.n_features * m, dtype=np.float32),
        }

    def _draw_block(self, first, last, order, n_known, uniform, normal, out, work) -> None:
        """Ancestral draws for a block of uniform and normal draws (d, m), written to ``out`` (d, m).

        ``work`` is a :meth:`_workspace` for at least ``m`` columns.  Feature rows are read
        only after this block has written them: the output layer reads the first
        ``n_known[dim]`` hidden units, the first layer the first ``dim`` inputs.
        """
        m = uniform.shape[1]
        k = self.n_components
        width = 3 * k
        f_in, f_hidden = first.n_features, last.n_features

        def rows(name, count):
            # C-contiguous (count, m) view: feature writers need whole contiguous rows.
            return work[name][: count * m].reshape(count, m)

        # Single precision inside the network: twice the throughput, and its rounding
        # (1e-7 relative) is far below the model's own error.
        z = rows("z", self.n_dim)
        input_features = rows("input_features", self.n_dim * f_in)
        hidden_features = rows("hidden_features", first.n_out * f_hidden)
        mixture = rows("mixture", width)
        columns = np.arange(m)
        for dim in range(self.n_dim):
            if dim > 0:
                first.feature_rows(z[dim - 1], dim - 1,
                                   input_features[(dim - 1) * f_in : dim * f_in])
                new = np.arange(n_known[dim - 1], n_known[dim])
                if new.size:
                    hidden = first.combine_rows(input_features, order[new], dim)
                    for position, values in zip(new, hidden):
                        last.feature_rows(values, position, hidden_features[
                            position * f_hidden : (position + 1) * f_hidden])
            block = last.combine_rows(hidden_features, slice(dim * width, (dim + 1) * width),
                                      n_known[dim], out=mixture)
            _draw_component(block, k, uniform[dim], normal[dim], columns, z[dim])
        np.multiply(z, self.scale[:, None], out=out)
        out += self.mean[:, None]

    def draw_chunks(self, n: int, rng: np.random.Generator):
        """Draw ``n`` samples of the unbounded coordinates, chunk by chunk.

        Ancestral sampling, one dimension at a time.  By the MADE degrees, hidden unit ``h``
        depends on dimensions ``< m_h`` only, so it is evaluated once, as soon as those are
        drawn, and its output-layer features are kept: sampling all ``d`` dimensions costs
        about one network pass.  Hidden units are reordered by degree so that the units
        known before dimension ``j`` are a prefix, and features are stored one row per
        feature (samples along rows): every step reads and writes contiguous memory, and
        the output layer multiplies only the known units.  Uniform and normal draws are
        taken in fixed-size chunks, so a seed gives the same draws whichever file the
        network came from and however many samples are asked for.

        Yields
        ------
        start : int
            Index of the chunk's first sample.
        y : numpy.ndarray, shape (m, d)
            The chunk (Fortran order: each parameter's samples contiguous), a view of a
            buffer that the next chunk overwrites.  All buffers are allocated once, not per
            chunk or block: fresh memory is page-faulted 4 kB at a time, which on a
            virtual machine cost a third of a first call's time.
        """
        first, last, order, n_known = self._sampling_network
        work = self._workspace(first, last, min(_BLOCK, n))
        size = min(_CHUNK, n)
        chunk = np.empty((self.n_dim, size))
        uniform_buffer = np.empty(self.n_dim * size, dtype=np.float32)
        normal_buffer = np.empty_like(uniform_buffer)
        for start in range(0, n, _CHUNK):
            m = min(_CHUNK, n - start)
            # Single-precision draws, one row per dimension, as the network consumes them.
            uniform = rng.random(dtype=np.float32,
                                 out=uniform_buffer[: self.n_dim * m].reshape(self.n_dim, m))
            normal = rng.standard_normal(
                dtype=np.float32, out=normal_buffer[: self.n_dim * m].reshape(self.n_dim, m))
            for block in range(0, m, _BLOCK):
                cols = slice(block, min(block + _BLOCK, m))
                self._draw_block(first, last, order, n_known, uniform[:, cols], normal[:, cols],
                                 chunk[:, cols], work)
            yield start, chunk[:, :m].T

    def sample_unbounded(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` samples of the unbounded coordinates, shape (n, d) (Fortran order);
        see :meth:`draw_chunks`."""
        rows = np.empty((self.n_dim, n))
        for start, y in self.draw_chunks(n, rng):
            rows[:, start : start + len(y)] = y.T
        return rows.T


def _draw_component(block: np.ndarray, k: int, uniform: np.ndarray, normal: np.ndarray,
                    columns: np.ndarray, out: np.ndarray) -> None:
    """One draw per column from the mixture in ``block`` (3k, m): logits, means, log sigmas.

    The component is the first whose cumulative weight exceeds ``uniform * total`` (inverse
    CDF); its mean and log sigma are then picked with one flat gather each.  Components are
    contiguous rows: reductions over them run row against row, fast; only the cumulative sum
    is a loop, as numpy's ``cumsum`` along that axis is some 20 times slower.  ``columns`` is
    ``arange(m)``; the draws go to ``out`` (m,).
    """
    logits = block[:k]
    peak = np.maximum.reduce(logits, axis=0)
    cumulative = np.subtract(logits, peak, out=logits)
    np.exp(cumulative, out=cumulative)
    for comp in range(1, k):
        cumulative[comp] += cumulative[comp - 1]
    threshold = cumulative[-1] * uniform
    # Number of cumulative weights below the threshold = index of the chosen component.
    index = np.add.reduce(cumulative[:-1] < threshold, axis=0, dtype=np.intp)
    index *= len(uniform)
    index += columns
    mean = np.take(block[k : 2 * k], index)
    log_sigma = np.take(block[2 * k :], index)
    np.clip(log_sigma, *LOG_SIGMA_BOUNDS, out=log_sigma)
    np.exp(log_sigma, out=log_sigma)
    log_sigma *= normal
    np.add(mean, log_sigma, out=out)


def _logsumexp(a: np.ndarray) -> np.ndarray:
    peak = a.max(axis=-1)
    return peak + np.log(np.exp(a - peak[..., None]).sum(axis=-1))
