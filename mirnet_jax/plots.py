"""Figures of the paper: t-SNE of slot embeddings (Fig. 3), attention over time (Fig. 2)
and DET curves of the verification conditions.

Figures are drawn on matplotlib's Agg canvas directly (`Figure` + `FigureCanvasAgg`),
without pyplot, so importing this module changes no global backend or state and figures
are freed when they go out of scope. Every function writes one PNG atomically (a local
temp file, then `os.replace`; one upload to a gs:// URL) and returns its path.
"""

import io
import os

from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np
from scipy import stats
from sklearn import metrics as skm

from mirnet_jax import storage

DPI = 120
_LOG10_E = np.log10(np.e)


def _save(fig: Figure, path: str) -> str:
  """Writes `fig` to `path` (local or gs://) as PNG, atomically."""
  storage.makedirs(os.path.dirname(storage.absolute(path)))
  FigureCanvasAgg(fig)
  png = io.BytesIO()
  fig.savefig(png, format="png", dpi=DPI)
  storage.write_bytes(path, png.getvalue())
  return path


def tsne(embeddings: np.ndarray, speakers: np.ndarray, slots: np.ndarray, path: str,
         seed: int = 0) -> str:
  """Two-panel t-SNE of slot embeddings, as the paper's Figure 3.

  Args:
    embeddings: `[M, E]` embeddings (e.g. every output slot of a set of mixtures).
    speakers: `[M]` int speaker of each embedding: the speaker the permutation decision
      assigned to that slot. Panel (a) colours by it (a qualitative 20-colour map; more
      speakers reuse colours, and the legend is dropped above 20).
    slots: `[M]` int output slot (0-based) each embedding came from; panel (b) colours by
      it, with legend "slot 1", "slot 2", ...
    path: output PNG.
    seed: t-SNE random state.

  Returns:
    `path`.
  """
  from sklearn.manifold import TSNE  # slow import; only this figure needs it

  x = np.asarray(embeddings, np.float64)
  speakers = np.asarray(speakers).ravel()
  slots = np.asarray(slots).ravel()
  m = len(x)
  if x.ndim != 2 or m < 3 or speakers.shape != (m,) or slots.shape != (m,):
    raise ValueError(f"need [M, E] embeddings (M >= 3) with [M] speakers and slots; got "
                     f"{x.shape}, {speakers.shape}, {slots.shape}")
  # sklearn requires perplexity < M; the usual 30 is for M in the hundreds, so scale it
  # down for small sets (M = 10 -> 3).
  perplexity = float(min(30.0, max(1.0, (m - 1) / 3)))
  # Exact gradients for small sets, where they are faster than Barnes-Hut (measured on
  # 2 cores: 0.3 s vs 1.2 s at M = 12; Barnes-Hut wins from a few hundred points).
  method = "exact" if m <= 200 else "barnes_hut"
  xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
            learning_rate="auto", method=method).fit_transform(x)

  fig = Figure(figsize=(11, 5), layout="constrained")
  ax_spk, ax_slot = fig.subplots(1, 2)
  unique_speakers = np.unique(speakers)
  # tab20 pairs a dark and a light shade of each hue; take the dark shades first so up to
  # 10 speakers all get different hues.
  palette = colormaps["tab20"]
  order = list(range(0, 20, 2)) + list(range(1, 20, 2))
  for k, s in enumerate(unique_speakers):
    sel = speakers == s
    ax_spk.scatter(xy[sel, 0], xy[sel, 1], s=22, color=palette(order[k % 20]),
                   label=str(s), edgecolors="none", alpha=0.85)
  reused = ", colours reused" if len(unique_speakers) > 20 else ""
  ax_spk.set_title(f"(a) by assigned speaker ({len(unique_speakers)} speakers{reused})")
  if len(unique_speakers) <= 20:
    ax_spk.legend(title="speaker", fontsize=8, title_fontsize=9, markerscale=1.2,
                  ncols=1 if len(unique_speakers) <= 10 else 2, loc="center left",
                  bbox_to_anchor=(1.0, 0.5), frameon=False)

  slot_palette = colormaps["tab10"]
  for k in np.unique(slots):
    sel = slots == k
    ax_slot.scatter(xy[sel, 0], xy[sel, 1], s=22, color=slot_palette(int(k) % 10),
                    label=f"slot {int(k) + 1}", edgecolors="none", alpha=0.85)
  ax_slot.set_title("(b) by output slot")
  ax_slot.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
  for ax in (ax_spk, ax_slot):
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    ax.tick_params(labelsize=8)
  fig.suptitle(f"t-SNE of {m} slot embeddings (perplexity {perplexity:.0f})")
  return _save(fig, path)


def _frame_power_db(logmag: np.ndarray) -> np.ndarray:
  """`[T, F]` natural-log magnitudes -> `[T]` frame power in dB (10 log10 sum |X|^2)."""
  two = 2.0 * np.asarray(logmag, np.float64)
  peak = two.max(axis=1, keepdims=True)
  return 10 * _LOG10_E * (peak[:, 0] + np.log(np.exp(two - peak).sum(axis=1)))


def attention(mixture_logmag: np.ndarray, source_logmags: np.ndarray,
              attention: np.ndarray, path: str, hop_seconds: float = 0.01,
              sample_rate: int = 16000, dynamic_range_db: float = 80.0,
              source_names=None) -> str:
  """Spectrograms with attention weights over time, as the paper's Figure 2.

  Top panel: the mixture's spectrogram. Then one panel per source: its spectrogram with,
  on a twin y-axis from 0 to 1, the attention weight of the output slot matched to it
  (yellow) and its power contour (blue). The power contour is the frame power
  `10 log10 sum_f |X[t, f]|^2` in dB, clipped to `dynamic_range_db` below its maximum
  and mapped linearly to [0, 1] (1 = the source's loudest frame), so it shows where the
  source is active on the same axis as the attention.

  Args:
    mixture_logmag: `[T, F]` natural-log magnitude of the mixture
      (`features.log_magnitude`), F bins from 0 Hz to sample_rate / 2.
    source_logmags: `[N, T, F]` the same for each (gain-scaled) source.
    attention: `[N, T]` attention weights in [0, 1]. `attention[i]` must already be the
      slot matched to source i (e.g. by the permutation that minimised the loss or by
      the embedding distances); this function does no matching.
    path: output PNG.
    hop_seconds: frame hop (x axis in seconds).
    sample_rate: for the frequency axis (kHz).
    dynamic_range_db: the spectrograms' colour range and the power contour's floor, in
      dB below the maximum.
    source_names: optional N panel labels (default "source 1", ...).

  Returns:
    `path`.
  """
  mix = np.asarray(mixture_logmag, np.float64)
  src = np.asarray(source_logmags, np.float64)
  att = np.asarray(attention, np.float64)
  n, t, f = src.shape
  if mix.shape != (t, f) or att.shape != (n, t):
    raise ValueError(f"shapes disagree: mixture {mix.shape}, sources {src.shape}, "
                     f"attention {att.shape}")
  names = list(source_names) if source_names is not None else [
      f"source {i + 1}" for i in range(n)]
  to_db = 20 * _LOG10_E  # log|X| -> dB
  vmax = to_db * max(mix.max(), src.max())
  vmin = vmax - dynamic_range_db
  extent = (0.0, t * hop_seconds, 0.0, sample_rate / 2000)
  seconds = (np.arange(t) + 0.5) * hop_seconds

  fig = Figure(figsize=(10, 2.3 * (n + 1) + 0.6), layout="constrained")
  axes = fig.subplots(n + 1, 1, sharex=True, squeeze=False)[:, 0]
  # Greyscale spectrograms so the yellow and blue lines stand out on every panel.
  image_kw = dict(origin="lower", aspect="auto", extent=extent, cmap="gray",
                  vmin=vmin, vmax=vmax, interpolation="nearest")
  image = axes[0].imshow(to_db * mix.T, **image_kw)
  axes[0].set_title("mixture")
  for i in range(n):
    ax = axes[i + 1]
    ax.imshow(to_db * src[i].T, **image_kw)
    ax.set_title(names[i])
    power = _frame_power_db(src[i])
    power = np.clip((power - (power.max() - dynamic_range_db)) / dynamic_range_db, 0, 1)
    twin = ax.twinx()
    power_line, = twin.plot(seconds, power, color="deepskyblue", lw=1.4)
    attention_line, = twin.plot(seconds, att[i], color="gold", lw=1.8)
    twin.set_ylim(-0.02, 1.02)
    twin.set_ylabel("attention / power")
  for ax in axes:
    ax.set_ylabel("frequency (kHz)")
  axes[-1].set_xlabel("time (s)")
  # One legend and one colour bar for the whole figure, outside the data.
  fig.legend([attention_line, power_line],
             ["attention weight of the matched slot",
              f"source power (dB, top {dynamic_range_db:g} dB mapped to 0..1)"],
             loc="outside upper center", ncols=2, fontsize=9, frameon=False)
  fig.colorbar(image, ax=list(axes), label="level (dB)", shrink=0.5, pad=0.02,
               aspect=30)
  return _save(fig, path)


def det(curves: dict, path: str, title: str = "DET curves") -> str:
  """Detection error trade-off curves on normal-deviate axes.

  Args:
    curves: {condition name: (target_scores, nontarget_scores)}; higher score = target.
    path: output PNG.
    title: figure title.

  Returns:
    `path`. Each condition's line is labelled with its EER (`verification.eer`) and its
    EER point marked; the dashed diagonal is FAR = FRR.
  """
  from mirnet_jax import verification  # pure numpy/sklearn; avoids a cycle at import

  ticks = np.array([0.1, 0.5, 1, 2, 5, 10, 20, 40, 60, 80])  # percent
  lo, hi = 0.05, 85.0  # percent range of both axes
  # Rates of 0 and 1 have no normal deviate; clipping them far outside the axes makes the
  # curve leave the frame instead of running along its edge.
  clip = lambda p: np.clip(p, 1e-9, 1 - 1e-9)
  fig = Figure(figsize=(6.2, 6.0), layout="constrained")
  ax = fig.subplots()
  palette = colormaps["tab10"]
  for k, (name, (target, nontarget)) in enumerate(curves.items()):
    target = np.asarray(target, np.float64).ravel()
    nontarget = np.asarray(nontarget, np.float64).ravel()
    y = np.r_[np.ones(target.size), np.zeros(nontarget.size)]
    fpr, fnr, _ = skm.det_curve(y, np.r_[target, nontarget])
    rate, _ = verification.eer(target, nontarget)
    color = palette(k % 10)
    ax.plot(stats.norm.ppf(clip(fpr)), stats.norm.ppf(clip(fnr)), color=color, lw=1.6,
            label=f"{name} (EER {rate:.2f}%)")
    point = stats.norm.ppf(clip(rate / 100))
    ax.plot([point], [point], "o", color=color, ms=5)
  span = stats.norm.ppf([lo / 100, hi / 100])
  ax.plot(span, span, "--", color="0.5", lw=0.8, label="FAR = FRR")
  positions = stats.norm.ppf(ticks / 100)
  labels = [f"{v:g}" for v in ticks]
  ax.set_xticks(positions, labels)
  ax.set_yticks(positions, labels)
  ax.set_xlim(*span)
  ax.set_ylim(*span)
  ax.set_aspect("equal")
  ax.grid(True, color="0.85", lw=0.6)
  ax.set_xlabel("false acceptance rate (%)")
  ax.set_ylabel("false rejection rate (%)")
  ax.set_title(title)
  ax.legend(loc="upper right", fontsize=9)
  return _save(fig, path)
