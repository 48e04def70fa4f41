"""Dynamic stock models (dynamic material-flow accounting) for products in use.

How much Nd/Pr/Dy/Tb sits in magnets in use, how much reaches end of life, and so what
recycling could supply. Two models, both on equal annual time steps:

- `inflow_driven(inflow, lifetime)`: products put into use each year -> stock in use and
  end-of-life outflow;
- `stock_driven(stock, lifetime)`: stock in use each year -> the inflow needed to keep it
  there and the outflow.

Lifetime models (`FixedLifetime`, `NormalLifetime`, `FoldedNormalLifetime`,
`LogNormalLifetime`, `WeibullLifetime`) are small frozen objects whose parameters are scalars
or arrays broadcastable over the non-time dimensions (numpy-style, aligned from the last
axis); an array with one more leading axis of length T makes the lifetime vary by cohort.

Conventions (identical to flodym 1.1, which the tests use as an oracle to 1e-9):

- Time step t covers the year [t - 1/2, t + 1/2). Inflow of year c enters at mid-year by
  default (``inflow_at="middle"``), so at the end of year t cohort c has age t - c + 1/2;
  ``"start"`` gives age t - c + 1 and ``"end"`` age t - c. Survival is evaluated at that age:
  ``stock[t] = sum_{c<=t} inflow[c] * sf(t - c + 1/2)``.
- The outflow of cohort c in year t is its loss over the year,
  ``sf(age at end of t-1) - sf(age at end of t)``, with sf = 1 before entry; the outflow is
  computed from these losses (not by differencing the stock) so small outflows keep their
  relative accuracy. inflow - outflow = stock change holds to rounding.
- `FixedLifetime(mean)`: a cohort is in use while its age is < mean; with mid-year entry a
  2-year lifetime keeps inflow of year c in the stock at the end of years c and c + 1 and
  removes it in year c + 2.
- `NormalLifetime` is not truncated at 0: the probability of a negative lifetime leaves in
  the year of entry. `FoldedNormalLifetime` takes the mean and std of the normal
  distribution *before* folding (as flodym does); `LogNormalLifetime` takes the mean and std
  of the lifetime itself, not of its log.

Numerics: when the lifetime does not vary by cohort, survival depends on age only, the
survival matrix is lower-triangular Toeplitz and the stock is a convolution of inflow with
sf over age. With the same lifetime for every series that is one BLAS matrix product
(T x T survival matrix times T x N inflow) and, for `stock_driven`, one LAPACK triangular
solve with all series as right-hand sides. With per-series lifetimes (e.g. a mean per
region x product, or per Monte Carlo sample) each series has its own kernel; the
convolution is summed directly, one vectorised reduction per time step over all series at
once. Direct sums of non-negative terms are accurate to ~1e-15 relative in every cell, which
FFT convolution is not (its error scales with the largest value, so small early or late
values lose relative accuracy), and at T = 200 the direct sum is as fast. Lifetimes that vary
by cohort use the dense survival tensor sf[t, c, ...]. Series are processed in column chunks
(bounded memory) on a few threads.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import xarray as xr
from scipy.linalg import solve_triangular
from scipy.special import ndtr

__all__ = [
    "MASS_BALANCE_RTOL",
    "FixedLifetime",
    "FoldedNormalLifetime",
    "LifetimeModel",
    "LogNormalLifetime",
    "MassBalanceError",
    "MFAError",
    "NegativeInflowError",
    "NormalLifetime",
    "StockResult",
    "WeibullLifetime",
    "check_mass_balance",
    "inflow_driven",
    "stock_driven",
]

TIME_DIM = "time"
"""Name of the time dimension of DataArray inputs; it must be their first dimension."""

MASS_BALANCE_RTOL = 1e-9
"""Default tolerance of `check_mass_balance`, relative to the size of each series."""

NEGATIVE_INFLOW_RTOL = 1e-9
"""`stock_driven(negative_inflow="raise")` ignores negative inflows smaller than this times
the largest stock of that series: they are rounding noise where the exact inflow is 0."""

InflowAt = Literal["start", "middle", "end"]
NegativeInflowPolicy = Literal["allow", "raise", "zero"]
Method = Literal["auto", "convolution", "cohort"]

_AGE_OFFSET = {"start": 1.0, "middle": 0.5, "end": 0.0}
"""Age at the end of the entry year, by when in the year inflow enters (flodym's bounds)."""

_CONV_CHUNK = 4096
"""Series per chunk on the per-series convolution path (working set ~ a few MB per array)."""

_DENSE_CHUNK_ELEMENTS = 1 << 21
"""Elements of one dense sf[t, c, series] chunk (16 MB) on the cohort path."""


class MFAError(ValueError):
    """Invalid input to a dynamic stock model, or a result that violates its contract."""


class MassBalanceError(MFAError):
    """inflow - outflow differs from the stock change by more than the tolerance."""


class NegativeInflowError(MFAError):
    """`stock_driven(negative_inflow="raise")` needed a negative inflow."""


# --------------------------------------------------------------------------------------------
# lifetime models


def _validate_param(model: str, name: str, value: Any, rule: str) -> np.ndarray | xr.DataArray:
    """A lifetime parameter as a float array (or float DataArray), checked finite and in range."""
    is_da = isinstance(value, xr.DataArray)
    raw = value.values if is_da else value
    try:
        arr = np.asarray(raw)
        if arr.dtype.kind not in "biuf" or arr.dtype.kind == "b":
            raise TypeError
        arr = arr.astype(float)
    except (TypeError, ValueError):
        raise MFAError(
            f"{model}: {name} must be a number or a numeric array (or DataArray), "
            f"got {type(value).__name__}"
            + (f" of dtype {np.asarray(raw).dtype}" if hasattr(raw, "dtype") else "")
        ) from None
    allowed = "> 0" if rule == "positive" else ">= 0"
    bad = ~np.isfinite(arr)
    what = "finite"
    if not bad.any():
        bad = arr <= 0 if rule == "positive" else arr < 0
        what = allowed
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        where = f" at index {idx}" if arr.ndim else ""
        raise MFAError(
            f"{model}: {name} must be finite and {allowed}, but is {float(arr[idx]):g}{where} "
            f"(not {what})"
        )
    if is_da:
        return value.copy(data=arr)
    return arr


class LifetimeModel(ABC):
    """Base class: a lifetime distribution with array parameters and a survival function.

    Subclasses are frozen dataclasses; their parameters are stored as float arrays (or
    DataArrays, aligned to DataArray data by dimension name). Parameters must broadcast over
    the non-time dimensions of the data (numpy rules, aligned from the last axis); an extra
    leading axis of length T (or a DataArray dimension "time") makes them vary by cohort.
    """

    _rules: ClassVar[dict[str, str]] = {}
    """Parameter name -> "positive" (> 0) or "nonnegative" (>= 0), in `_survival` order."""

    def __post_init__(self) -> None:
        model = type(self).__name__
        for name, rule in self._rules.items():
            object.__setattr__(self, name, _validate_param(model, name, getattr(self, name), rule))
        numpy_shapes = {n: p.shape for n, p in self.params.items() if isinstance(p, np.ndarray)}
        try:
            np.broadcast_shapes(*numpy_shapes.values())
        except ValueError:
            shapes = ", ".join(f"{n} {s}" for n, s in numpy_shapes.items())
            raise MFAError(
                f"{model}: parameter shapes do not broadcast together ({shapes})"
            ) from None

    @property
    def params(self) -> dict[str, np.ndarray | xr.DataArray]:
        """The parameters by name, in the order `_survival` takes them."""
        return {name: getattr(self, name) for name in self._rules}

    def sf(self, age: Any) -> np.ndarray | xr.DataArray:
        """Share of a cohort still in use at `age` (years), broadcast against the parameters.

        Evaluated exactly as flodym evaluates it (same formulas as scipy.stats). With DataArray
        parameters pass a DataArray (or scalar) age; broadcasting is then by dimension name.
        """
        params = list(self.params.values())
        if isinstance(age, xr.DataArray) or any(isinstance(p, xr.DataArray) for p in params):
            return xr.apply_ufunc(self._survival, age, *params)
        return self._survival(np.asarray(age, dtype=float), *params)

    @staticmethod
    @abstractmethod
    def _survival(age: np.ndarray, *params: np.ndarray) -> np.ndarray:
        """sf at `age`; all arguments are numpy arrays broadcastable together."""


@dataclass(frozen=True, eq=False)
class FixedLifetime(LifetimeModel):
    """Every unit is used for exactly `mean` years: in use while age < mean (flodym's rule).

    mean >= 0; 0 means everything leaves in the year it enters.
    """

    mean: Any

    _rules: ClassVar[dict[str, str]] = {"mean": "nonnegative"}

    @staticmethod
    def _survival(age: np.ndarray, mean: np.ndarray) -> np.ndarray:
        return (age < mean).astype(float)


@dataclass(frozen=True, eq=False)
class NormalLifetime(LifetimeModel):
    """Normally distributed lifetime (mean > 0, std > 0), not truncated at 0 (as flodym)."""

    mean: Any
    std: Any

    _rules: ClassVar[dict[str, str]] = {"mean": "positive", "std": "positive"}

    @staticmethod
    def _survival(age: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        # scipy.stats.norm.sf(age, loc=mean, scale=std)
        return ndtr(-((age - mean) / std))


def _on_support(x: np.ndarray, value: np.ndarray) -> np.ndarray:
    """scipy.stats convention for distributions on [0, inf): sf = 1 at and below 0."""
    return np.where(x <= 0, 1.0, value)


@dataclass(frozen=True, eq=False)
class FoldedNormalLifetime(LifetimeModel):
    """|X| with X ~ Normal(mean, std): mean >= 0 and std > 0 are those of X *before* folding.

    Same parameterisation as flodym (scipy.stats.foldnorm(c=mean/std, scale=std)).
    """

    mean: Any
    std: Any

    _rules: ClassVar[dict[str, str]] = {"mean": "nonnegative", "std": "positive"}

    @staticmethod
    def _survival(age: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        x = age / std
        c = mean / std
        return _on_support(x, ndtr(-(x - c)) + ndtr(-(x + c)))


@dataclass(frozen=True, eq=False)
class LogNormalLifetime(LifetimeModel):
    """Log-normally distributed lifetime with the given mean > 0 and std > 0 of the lifetime
    itself (not of its log)."""

    mean: Any
    std: Any

    _rules: ClassVar[dict[str, str]] = {"mean": "positive", "std": "positive"}

    @staticmethod
    def _survival(age: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        mean_square = mean * mean
        std_square = std * std
        log_mean = np.log(mean_square / np.sqrt(mean_square + std_square))
        log_std = np.sqrt(np.log(1 + std_square / mean_square))
        x = age / np.exp(log_mean)
        with np.errstate(divide="ignore", invalid="ignore"):
            value = ndtr(-(np.log(x) / log_std))
        return _on_support(x, value)


@dataclass(frozen=True, eq=False)
class WeibullLifetime(LifetimeModel):
    """Weibull lifetime, sf(age) = exp(-(age / scale) ** shape), shape > 0, scale > 0."""

    shape: Any
    scale: Any

    _rules: ClassVar[dict[str, str]] = {"shape": "positive", "scale": "positive"}

    @staticmethod
    def _survival(age: np.ndarray, shape: np.ndarray, scale: np.ndarray) -> np.ndarray:
        x = age / scale
        with np.errstate(invalid="ignore"):
            value = np.exp(-np.power(x, shape))
        return _on_support(x, value)


# --------------------------------------------------------------------------------------------
# inputs


@dataclass(frozen=True)
class _Series:
    """A validated input: float64 values of shape (T, *rest) and the DataArray it came from."""

    name: str
    values: np.ndarray
    template: xr.DataArray | None

    @property
    def n_time(self) -> int:
        return self.values.shape[0]

    @property
    def rest(self) -> tuple[int, ...]:
        return self.values.shape[1:]

    @property
    def n_series(self) -> int:
        return int(np.prod(self.rest, dtype=np.int64))

    def where(self, index: tuple[int, ...]) -> str:
        """Human-readable position of `index` (labels for DataArrays)."""
        return _where(index, self.template)

    def wrap(self, values: np.ndarray, name: str) -> np.ndarray | xr.DataArray:
        values = values.reshape(self.values.shape)
        if self.template is None:
            return values
        return xr.DataArray(values, dims=self.template.dims, coords=self.template.coords,
                            name=name)


def _where(index: tuple[int, ...], template: xr.DataArray | None) -> str:
    if template is None:
        return f"index {tuple(int(i) for i in index)}"
    parts = []
    for dim, i in zip(template.dims, index, strict=False):
        if dim in template.indexes:
            parts.append(f"{dim}={template[dim].values[i].item()!r}")
        else:
            parts.append(f"{dim}={int(i)}")
    return ", ".join(parts)


def _as_series(x: Any, name: str, *, nonnegative: bool, check_time: bool = True) -> _Series:
    """Validate a time series argument: numeric, time first, finite, optionally >= 0."""
    template = None
    if isinstance(x, xr.DataArray):
        if x.ndim == 0 or x.dims[0] != TIME_DIM:
            raise MFAError(
                f"{name}: the first dimension must be named {TIME_DIM!r}, got dims {x.dims}; "
                f"use .transpose({TIME_DIM!r}, ...)"
            )
        if check_time and TIME_DIM in x.indexes and x.sizes[TIME_DIM] > 1:
            t = np.asarray(x.indexes[TIME_DIM])
            if t.dtype.kind in "iuf" and not np.all(np.diff(t) == 1):
                raise MFAError(
                    f"{name}: the {TIME_DIM!r} coordinate must be consecutive years (step 1); "
                    f"got steps {sorted(set(np.diff(t).tolist()))[:5]}"
                )
        template = x
        raw = x.values
    else:
        try:
            if x is None or isinstance(x, str | bytes | dict):
                raise TypeError
            raw = np.asarray(x)
        except (TypeError, ValueError):
            raise MFAError(
                f"{name} must be a numeric numpy array or xarray DataArray with time first, "
                f"got {type(x).__name__}"
            ) from None
    if raw.dtype.kind not in "iuf":
        raise MFAError(f"{name} must be numeric (int or float), got dtype {raw.dtype}")
    if raw.ndim == 0:
        raise MFAError(f"{name} must have a time axis first, got a scalar")
    if raw.shape[0] == 0:
        raise MFAError(f"{name} has an empty time axis")
    values = np.ascontiguousarray(raw, dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        idx = tuple(np.argwhere(bad)[0])
        raise MFAError(
            f"{name} must be finite, but has {int(bad.sum())} NaN/inf value(s), the first "
            f"({float(values[idx]):g}) at {_where(idx, template)}"
        )
    if nonnegative:
        neg = values < 0
        if neg.any():
            idx = tuple(np.argwhere(neg)[0])
            raise MFAError(
                f"{name} must be >= 0, but has {int(neg.sum())} negative value(s), the first "
                f"({float(values[idx]):g}) at {_where(idx, template)}"
            )
    return _Series(name, values, template)


def _resolve_param(model: str, name: str, p: np.ndarray | xr.DataArray,
                   data: _Series) -> np.ndarray:
    """Parameter as an array of ndim 1 + len(rest): (1 or T, each axis 1 or the data's size)."""
    shape = data.values.shape
    ndim = len(shape)
    allowed = (
        f"allowed: a scalar, an array broadcastable to the non-time shape {data.rest} "
        f"(aligned from the last axis), or one with a leading cohort axis of length "
        f"{shape[0]} to vary by cohort"
    )
    if isinstance(p, xr.DataArray):
        tpl = data.template
        if tpl is None:
            raise MFAError(
                f"{model}.{name} is a DataArray but {data.name} is a numpy array; pass numpy "
                f"parameters, or {data.name} as a DataArray to align by dimension name"
            )
        extra = [d for d in p.dims if d not in tpl.dims]
        if extra:
            raise MFAError(
                f"{model}.{name} has dimension(s) {extra} that {data.name} lacks "
                f"(its dims are {tpl.dims})"
            )
        for d in p.dims:
            if d in p.indexes and d in tpl.indexes and not p.indexes[d].equals(tpl.indexes[d]):
                missing = set(tpl.indexes[d]) - set(p.indexes[d])
                if missing:
                    raise MFAError(
                        f"{model}.{name} lacks {d} labels {sorted(map(str, missing))[:5]} "
                        f"present in {data.name}"
                    )
                p = p.sel({d: tpl.indexes[d]})
            elif p.sizes[d] not in (1, tpl.sizes[d]):
                raise MFAError(
                    f"{model}.{name} has {p.sizes[d]} entries along {d!r}, "
                    f"{data.name} has {tpl.sizes[d]}"
                )
        p = p.transpose(*[d for d in tpl.dims if d in p.dims])
        arr = p.values.reshape([p.sizes[d] if d in p.dims else 1 for d in tpl.dims])
    else:
        arr = p
        if arr.ndim > ndim:
            raise MFAError(
                f"{model}.{name} has shape {arr.shape}, more axes than {data.name} "
                f"{shape}; {allowed}"
            )
        arr = arr.reshape((1,) * (ndim - arr.ndim) + arr.shape)
    if any(a not in (1, s) for a, s in zip(arr.shape, shape, strict=True)):
        raise MFAError(
            f"{model}.{name} (shape {np.shape(p)}) does not fit {data.name} of shape "
            f"{shape}; {allowed}"
        )
    return arr


def _check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise MFAError(f"{name} must be one of {choices}, got {value!r}")


def _n_threads(threads: int | None) -> int:
    if threads is None:
        return max(1, min(8, os.cpu_count() or 1))
    if isinstance(threads, bool) or not isinstance(threads, int | np.integer) or threads < 1:
        raise MFAError(f"threads must be a positive integer or None, got {threads!r}")
    return int(threads)


@dataclass(frozen=True)
class _Plan:
    """What a model run needs: validated data, parameters, and which path to take."""

    data: _Series
    lifetime: LifetimeModel
    params: tuple[np.ndarray, ...]
    offset: float
    path: Literal["shared", "series", "cohort"]
    threads: int

    def param_columns(self, a: int, b: int) -> list[np.ndarray]:
        """Parameters of series a..b-1 (flattened non-time axes): arrays of shape (1 or T, b-a)."""
        rest = self.data.rest
        out = []
        idx = np.unravel_index(np.arange(a, b), rest) if rest else ()
        for p in self.params:
            if all(s == 1 for s in p.shape[1:]):
                out.append(np.broadcast_to(p.reshape(p.shape[0], 1), (p.shape[0], b - a)))
            else:
                sel = tuple(i if s > 1 else 0 for i, s in zip(idx, p.shape[1:], strict=True))
                out.append(p[(slice(None), *sel)])
        return out


def _plan(data: _Series, lifetime: Any, inflow_at: Any, method: Any, threads: Any) -> _Plan:
    if not isinstance(lifetime, LifetimeModel):
        raise MFAError(
            "lifetime must be a lifetime model (FixedLifetime, NormalLifetime, "
            "FoldedNormalLifetime, LogNormalLifetime or WeibullLifetime), "
            f"got {type(lifetime).__name__}"
        )
    _check_choice("inflow_at", inflow_at, tuple(_AGE_OFFSET))
    _check_choice("method", method, ("auto", "convolution", "cohort"))
    model = type(lifetime).__name__
    params = [_resolve_param(model, n, p, data) for n, p in lifetime.params.items()]
    by_cohort = data.n_time > 1 and any(p.shape[0] > 1 for p in params)
    if by_cohort and method == "auto" and all(np.all(p == p[:1]) for p in params):
        params = [p[:1] for p in params]  # constant over cohorts: the fast path applies
        by_cohort = False
    if by_cohort and method == "convolution":
        raise MFAError(
            f"method='convolution' needs a lifetime that does not vary by cohort, but "
            f"{model} has parameters with a cohort axis of length {data.n_time}; "
            f"use method='auto' or 'cohort'"
        )
    if method == "cohort" or by_cohort:
        path = "cohort"
    elif all(s == 1 for p in params for s in p.shape[1:]):
        path = "shared"
    else:
        path = "series"
    return _Plan(data, lifetime, tuple(params), _AGE_OFFSET[inflow_at], path,
                 _n_threads(threads))


# --------------------------------------------------------------------------------------------
# kernels


def _age_kernels(plan: _Plan, params: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Survival S[k] and outflow share P[k] by age step k (T, n): P[0] = 1 - S[0],
    P[k] = S[k-1] - S[k] (what a cohort loses in the year it turns k)."""
    t = plan.data.n_time
    age = np.arange(t, dtype=float)[:, None] + plan.offset
    surv = plan.lifetime._survival(age, *params)
    surv = np.ascontiguousarray(np.broadcast_to(surv, (t, surv.shape[1])))
    loss = np.empty_like(surv)
    loss[0] = 1.0 - surv[0]
    np.subtract(surv[:-1], surv[1:], out=loss[1:])
    return surv, loss


def _toeplitz(kernel: np.ndarray) -> np.ndarray:
    """Lower-triangular matrix M[t, c] = kernel[t - c] for kernels of shape (T,) or (T, n)."""
    t = kernel.shape[0]
    k = np.arange(t)[:, None] - np.arange(t)[None, :]
    m = kernel[np.maximum(k, 0)]
    m[k < 0] = 0.0
    return m


def _cohort_kernels(plan: _Plan, params: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Dense sf[t, c, n] and outflow share pdf[t, c, n] with cohort-indexed parameters."""
    t = plan.data.n_time
    k = np.arange(t)[:, None] - np.arange(t)[None, :]
    lower = k >= 0
    age = (np.maximum(k, 0) + plan.offset)[:, :, None]
    n = params[0].shape[1]
    surv = plan.lifetime._survival(age, *[p[None, :, :] for p in params])
    surv = np.broadcast_to(surv, (t, t, n)) * lower[:, :, None]
    prev = np.zeros_like(surv)
    prev[1:] = surv[:-1]
    diag = np.arange(t)
    prev[diag, diag] = 1.0
    prev -= surv
    return surv, prev


def _convolve(kernel: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """out[t] = sum_{k<=t} kernel[k] * x[t-k], column by column, all columns at once."""
    t_len = x.shape[0]
    rev = np.ascontiguousarray(kernel[::-1])
    for t in range(t_len):
        np.einsum("kn,kn->n", rev[t_len - 1 - t:], x[: t + 1], out=out[t])


def _run_chunks(fn: Callable[[int, int], None], n_cols: int, chunk: int, threads: int) -> None:
    bounds = [(a, min(a + chunk, n_cols)) for a in range(0, n_cols, chunk)]
    if threads <= 1 or len(bounds) <= 1:
        for a, b in bounds:
            fn(a, b)
        return
    with ThreadPoolExecutor(min(threads, len(bounds))) as pool:
        for f in [pool.submit(fn, a, b) for a, b in bounds]:
            f.result()


def _dense_chunk(n_time: int) -> int:
    return max(1, _DENSE_CHUNK_ELEMENTS // (n_time * n_time))


# --------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True, eq=False)
class StockResult:
    """inflow, outflow and stock of a dynamic stock model, each of shape (T, ...).

    Arrays are numpy arrays or DataArrays, matching the input. The input series (inflow of
    `inflow_driven`, stock of `stock_driven`) is the validated input, not a copy, when it
    already was a float64 C-ordered array. `stock_by_cohort`, if asked for, has shape
    (T, T, ...) = (time, cohort, ...).
    """

    inflow: np.ndarray | xr.DataArray
    outflow: np.ndarray | xr.DataArray
    stock: np.ndarray | xr.DataArray
    stock_by_cohort: np.ndarray | xr.DataArray | None = None

    def mass_balance_residual(self) -> np.ndarray | xr.DataArray:
        """inflow - outflow - (stock[t] - stock[t-1]), with stock[-1] = 0; ~0 up to rounding."""
        stock = np.asarray(self.stock, dtype=float)
        change = np.diff(stock, axis=0, prepend=np.zeros((1,) + stock.shape[1:]))
        res = np.asarray(self.inflow, dtype=float) - np.asarray(self.outflow, dtype=float) - change
        if isinstance(self.stock, xr.DataArray):
            return self.stock.copy(data=res).rename("mass_balance_residual")
        return res


def check_mass_balance(inflow: Any, outflow: Any, stock: Any, rtol: float = MASS_BALANCE_RTOL,
                       atol: float = 0.0) -> None:
    """Raise `MassBalanceError` unless inflow - outflow equals the stock change everywhere.

    The stock before the first time step is 0, so stock[0] must equal inflow[0] - outflow[0].
    Each cell may be off by ``rtol * m + atol``, where m is the largest |inflow|, |outflow| or
    |stock| over time of that series (same non-time index). Why rtol = 1e-9: model results are
    sums of at most T products, each exact to ~1e-16 relative, so rounding leaves residuals
    around 1e-14 of the series' size; anything real (a lost cohort, a sign error, a mismatched
    unit) is many orders larger, while 1e-9 leaves room for long series and for inputs that
    were themselves rounded (e.g. read from CSV at 12 significant digits). Scaling by the
    series rather than the cell keeps cells with tiny values from failing on rounding that
    is small relative to the rest of their series. The error names the first offending time
    step and index, the residual and the tolerance.
    """
    arrays = [
        _as_series(a, n, nonnegative=False, check_time=False)
        for a, n in ((inflow, "inflow"), (outflow, "outflow"), (stock, "stock"))
    ]
    shapes = {s.name: s.values.shape for s in arrays}
    if len(set(shapes.values())) > 1:
        raise MFAError(f"check_mass_balance: shapes differ: {shapes}")
    dims = {s.name: s.template.dims for s in arrays if s.template is not None}
    if len(set(dims.values())) > 1:
        raise MFAError(f"check_mass_balance: dims differ: {dims}")
    for name, value in (("rtol", rtol), ("atol", atol)):
        if not np.isfinite(value) or value < 0:
            raise MFAError(f"check_mass_balance: {name} must be finite and >= 0, got {value!r}")
    i, o, s = (a.values for a in arrays)
    template = next((a.template for a in arrays if a.template is not None), None)
    change = np.diff(s, axis=0, prepend=np.zeros((1,) + s.shape[1:]))
    residual = i - o - change
    size = np.maximum(np.maximum(np.abs(i), np.abs(o)), np.abs(s)).max(axis=0)
    tol = rtol * size + atol
    bad = np.abs(residual) > tol
    if bad.any():
        idx = tuple(int(j) for j in np.argwhere(bad)[0])
        worst = np.unravel_index(np.argmax(np.where(bad, np.abs(residual), -1)), residual.shape)
        raise MassBalanceError(
            f"mass balance violated in {int(bad.sum())} cell(s); first at time step {idx[0]} "
            f"({_where(idx, template)}): inflow - outflow - stock change = {residual[idx]:.6g}, "
            f"allowed {tol[idx[1:]]:.3g} (rtol {rtol:g} x series size {size[idx[1:]]:.6g} + atol "
            f"{atol:g}); largest {residual[worst]:.6g} at {_where(worst, template)}"
        )


# --------------------------------------------------------------------------------------------
# models


def inflow_driven(inflow: Any, lifetime: LifetimeModel, *, inflow_at: InflowAt = "middle",
                  return_cohorts: bool = False, method: Method = "auto",
                  threads: int | None = None) -> StockResult:
    """Stock in use and outflow from the inflow into use.

    Args:
        inflow: inflow per year, >= 0, shape (T, ...): time first, then any axes (region,
            sector, element, Monte Carlo sample, ...). numpy array or DataArray whose first
            dim is "time" (consecutive years if numeric); results keep its coords.
        lifetime: a lifetime model; parameters broadcast over the non-time axes, or vary by
            cohort with a leading axis of length T.
        inflow_at: when in the year inflow enters: "middle" (default, flodym's default),
            "start" or "end".
        return_cohorts: also return `stock_by_cohort`, shape (T, T, ...) (time, cohort, ...);
            memory grows as T^2 per series.
        method: "auto" (default) uses the convolution unless the lifetime varies by cohort;
            "convolution" or "cohort" force a path ("cohort" evaluates the dense sf[t, c]).
        threads: worker threads for chunks of series (default: CPU count, at most 8).

    Returns:
        StockResult(inflow, outflow, stock[, stock_by_cohort]).
    """
    data = _as_series(inflow, "inflow", nonnegative=True)
    plan = _plan(data, lifetime, inflow_at, method, threads)
    t, n = data.n_time, data.n_series
    x = data.values.reshape(t, n)
    stock = np.zeros((t, n))
    outflow = np.zeros((t, n))
    cohorts = np.zeros((t, t, n)) if return_cohorts else None

    if plan.path == "shared":
        surv, loss = _age_kernels(plan, [p.reshape(1, 1) for p in plan.params])
        s_mat, p_mat = _toeplitz(surv[:, 0]), _toeplitz(loss[:, 0])
        np.matmul(s_mat, x, out=stock)
        np.matmul(p_mat, x, out=outflow)
        if cohorts is not None:
            np.multiply(s_mat[:, :, None], x[None, :, :], out=cohorts)
    elif plan.path == "series":

        def work(a: int, b: int) -> None:
            surv, loss = _age_kernels(plan, plan.param_columns(a, b))
            xc = np.ascontiguousarray(x[:, a:b])
            buf = np.empty_like(xc)
            _convolve(surv, xc, buf)
            stock[:, a:b] = buf
            _convolve(loss, xc, buf)
            outflow[:, a:b] = buf
            if cohorts is not None:
                cohorts[:, :, a:b] = _toeplitz(surv) * xc[None, :, :]

        _run_chunks(work, n, _CONV_CHUNK, plan.threads)
    else:

        def work(a: int, b: int) -> None:
            surv, pdf = _cohort_kernels(plan, plan.param_columns(a, b))
            xc = x[:, a:b]
            stock[:, a:b] = np.einsum("tcn,cn->tn", surv, xc)
            outflow[:, a:b] = np.einsum("tcn,cn->tn", pdf, xc)
            if cohorts is not None:
                cohorts[:, :, a:b] = surv * xc[None, :, :]

        _run_chunks(work, n, _dense_chunk(t), plan.threads)

    by_cohort = None
    if cohorts is not None:
        by_cohort = cohorts.reshape((t, t) + data.rest)
        tpl = data.template
        if tpl is not None:
            coords = {d: tpl.indexes[d] for d in tpl.dims[1:] if d in tpl.indexes}
            if TIME_DIM in tpl.indexes:
                coords[TIME_DIM] = tpl.indexes[TIME_DIM]
                coords["cohort"] = np.asarray(tpl.indexes[TIME_DIM])
            by_cohort = xr.DataArray(by_cohort, dims=(TIME_DIM, "cohort") + tpl.dims[1:],
                                     coords=coords, name="stock_by_cohort")
    return StockResult(
        inflow=data.wrap(data.values, "inflow"),
        outflow=data.wrap(outflow, "outflow"),
        stock=data.wrap(stock, "stock"),
        stock_by_cohort=by_cohort,
    )


def _first_sf_zero(plan: _Plan) -> str | None:
    """Where the lifetime keeps nothing through the entry year (stock_driven cannot solve)."""
    params = np.broadcast_arrays(*plan.params)
    first = plan.lifetime._survival(np.asarray(plan.offset), *params)
    bad = first <= 0
    if not bad.any():
        return None
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    parts = [f"cohort {idx[0]}" if params[0].shape[0] > 1 else "all cohorts"]
    shape = params[0].shape
    parts += [f"axis {k + 1} index {i}" for k, i in enumerate(idx[1:]) if shape[k + 1] > 1]
    return ", ".join(parts)


def _forward_solve(row: Callable[[int], np.ndarray], diag: Callable[[int], np.ndarray],
                   s: np.ndarray, clip: bool) -> tuple[np.ndarray, np.ndarray]:
    """Solve sum_{c<=t} sf[t, c] x[c] = s[t] by forward substitution over t, all columns at once.

    row(t) gives sf[t, c] for c < t (shape (t, n)), diag(t) gives sf[t, t]. With clip=True a
    negative x[t] is set to 0 and the surviving cohorts are scaled down proportionally to
    s[t] (early retirement); they then age on their own survival curves. Returns x and a
    per-column flag telling whether anything was clipped.
    """
    t_len, n = s.shape
    x = np.zeros((t_len, n))
    w = np.zeros((t_len, n)) if clip else x  # cohort sizes after any early retirement
    clipped = np.zeros(n, dtype=bool)
    surv = np.zeros(n)
    for t in range(t_len):
        if t:
            np.einsum("cn,cn->n", row(t), w[:t], out=surv)
        need = s[t] - surv
        xt = need / diag(t)
        if clip:
            neg = need < 0
            if neg.any():
                xt[neg] = 0.0
                w[:t, neg] *= s[t, neg] / surv[neg]
                clipped |= neg
            w[t] = xt
        x[t] = xt
    return x, clipped


def stock_driven(stock: Any, lifetime: LifetimeModel, *,
                 negative_inflow: NegativeInflowPolicy = "allow", inflow_at: InflowAt = "middle",
                 method: Method = "auto", threads: int | None = None) -> StockResult:
    """Inflow and outflow that keep the given stock in use.

    Solves stock[t] = sum_{c<=t} inflow[c] * sf[t, c] for the inflow (forward substitution,
    inflow[t] = (stock[t] - sum_{c<t} inflow[c] sf[t, c]) / sf[t, t]); the outflow follows
    from the cohorts' losses as in `inflow_driven`.

    A stock that falls faster than its cohorts retire needs a negative inflow. Policy:

    - ``"allow"`` (default, as flodym): keep it; the balance is exact and the stock is met,
      but the inflow is negative (and so can be the outflow).
    - ``"raise"``: raise `NegativeInflowError` naming the first time step and index where the
      inflow is below -1e-9 x the largest stock of that series (smaller negatives are
      rounding noise where the exact inflow is 0, and are kept).
    - ``"zero"``: set the inflow to 0 and retire the excess early: all cohorts in use are
      scaled down by the same factor so the stock is met, the excess leaves as extra outflow
      in that year (outflow = inflow - stock change, so mass still balances), and the scaled
      cohorts keep ageing on their survival curves. Series that never need a negative inflow
      get the same result as with "allow".

    Args:
        stock: stock in use per year, >= 0, shape (T, ...); numpy array or DataArray with
            first dim "time".
        lifetime: a lifetime model, as for `inflow_driven`. It must keep a positive share
            through the entry year (sf at the first age > 0), or no inflow can build stock.
        negative_inflow: "allow", "raise" or "zero", see above.
        inflow_at, method, threads: as for `inflow_driven`.

    Returns:
        StockResult(inflow, outflow, stock); stock is the input.
    """
    data = _as_series(stock, "stock", nonnegative=True)
    _check_choice("negative_inflow", negative_inflow, ("allow", "raise", "zero"))
    plan = _plan(data, lifetime, inflow_at, method, threads)
    where_zero = _first_sf_zero(plan)
    if where_zero is not None:
        raise MFAError(
            f"lifetime: {type(lifetime).__name__} keeps nothing through the year of entry "
            f"(sf at age {plan.offset} is 0 for {where_zero}), so no inflow can build the "
            f"stock; use a longer lifetime or inflow_at='start'"
        )
    clip = negative_inflow == "zero"
    t, n = data.n_time, data.n_series
    s = data.values.reshape(t, n)
    inflow = np.zeros((t, n))
    outflow = np.zeros((t, n))
    clipped = np.zeros(n, dtype=bool)

    if plan.path == "shared":
        surv, loss = _age_kernels(plan, [p.reshape(1, 1) for p in plan.params])
        s_mat = _toeplitz(surv[:, 0])
        if n:
            inflow[...] = solve_triangular(s_mat, s, lower=True, check_finite=False)
        if clip and (inflow < 0).any():
            cols = np.flatnonzero((inflow < 0).any(axis=0))
            sr = np.ascontiguousarray(surv[::-1])
            x_c, clipped_c = _forward_solve(lambda k: sr[t - 1 - k: t - 1], lambda k: sr[t - 1],
                                            np.ascontiguousarray(s[:, cols]), clip=True)
            inflow[:, cols] = x_c
            clipped[cols] = clipped_c
        np.matmul(_toeplitz(loss[:, 0]), inflow, out=outflow)
    elif plan.path == "series":

        def work(a: int, b: int) -> None:
            surv, loss = _age_kernels(plan, plan.param_columns(a, b))
            sr = np.ascontiguousarray(surv[::-1])
            x_c, clipped_c = _forward_solve(lambda k: sr[t - 1 - k: t - 1], lambda k: sr[t - 1],
                                            np.ascontiguousarray(s[:, a:b]), clip=clip)
            inflow[:, a:b] = x_c
            clipped[a:b] = clipped_c
            buf = np.empty_like(x_c)
            _convolve(loss, x_c, buf)
            outflow[:, a:b] = buf

        _run_chunks(work, n, _CONV_CHUNK, plan.threads)
    else:

        def work(a: int, b: int) -> None:
            surv, pdf = _cohort_kernels(plan, plan.param_columns(a, b))
            x_c, clipped_c = _forward_solve(lambda k: surv[k, :k], lambda k: surv[k, k],
                                            np.ascontiguousarray(s[:, a:b]), clip=clip)
            inflow[:, a:b] = x_c
            clipped[a:b] = clipped_c
            outflow[:, a:b] = np.einsum("tcn,cn->tn", pdf, x_c)

        _run_chunks(work, n, _dense_chunk(t), plan.threads)

    if clipped.any():
        # early retirement: outflow is whatever leaves so the given stock is met
        change = np.diff(s[:, clipped], axis=0, prepend=np.zeros((1, int(clipped.sum()))))
        outflow[:, clipped] = inflow[:, clipped] - change
    if negative_inflow == "raise":
        tol = NEGATIVE_INFLOW_RTOL * s.max(axis=0, initial=0.0)
        neg = inflow < -tol
        if neg.any():
            t0 = int(np.argmax(neg.any(axis=1)))
            col = int(np.argmax(neg[t0]))
            idx = (t0, *(int(i) for i in np.unravel_index(col, data.rest)))
            raise NegativeInflowError(
                f"stock_driven: the stock falls faster than {type(lifetime).__name__} "
                f"retires it, needing a negative inflow of {inflow[t0, col]:.6g} "
                f"first at time step {t0} ({data.where(idx)}); {int(neg.sum())} cell(s) in "
                f"all. Use negative_inflow='allow' to keep negative inflows (exact balance) "
                f"or 'zero' to clip them and retire the excess early"
            )
    return StockResult(
        inflow=data.wrap(inflow, "inflow"),
        outflow=data.wrap(outflow, "outflow"),
        stock=data.wrap(data.values, "stock"),
    )
