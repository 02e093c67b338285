"""The systems this project trains: each one's model, batches, loss and validation metric.

`config.task` picks one; the training loop (train.py) is the same for all:
  * `mirnet`: MIRNet on N-speaker mixtures, permutation-min cross-entropy (paper Sec. 3).
  * `speaker`: a single-speaker embedding model (ResNet-18 + TAP) trained with
    cross-entropy on clean segments: the speaker model of the enrolled baseline.
  * `vf_mirnet`: VoiceFilter conditioned on the embeddings a frozen MIRNet extracts from
    the mixture itself, run once per output slot (paper Sec. 4.2, "Proposed"). Slots are
    not tied to speakers, so the loss is the utterance-level permutation-min MSE over the
    slots' outputs: a mask network that ignored its embedding would give every slot the
    same output and pay for it.
  * `vf_enrolled`: the same mask network conditioned on the frozen speaker model's
    embedding of another, clean utterance of each target speaker (the paper's VoiceFilter
    baseline); the output for a reference is compared with that reference's speaker.
  * `upit`: no conditioning; one BLSTM outputs a mask per speaker, utterance-level PIT.
Separators are validated by the magnitude-domain SNR improvement (`snri`, dB: SNR of the
masked magnitude minus SNR of the mixture magnitude, against each source, under the
chosen assignment); classifiers by PIT accuracy.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from mirnet_jax import features
from mirnet_jax import losses
from mirnet_jax.data import pipeline
from mirnet_jax.models import mirnet
from mirnet_jax.models import separation
from mirnet_jax.models import speaker

CLASSIFIERS = ("mirnet", "speaker")
SEPARATORS = ("vf_mirnet", "vf_enrolled", "upit")
CONDITIONER_TASK = {"vf_mirnet": "mirnet", "vf_enrolled": "speaker"}


@dataclasses.dataclass
class Conditioner:
  """A frozen, restored embedding model (see train.restore_inference)."""
  model: nn.Module
  variables: Any
  embedding_dim: int
  task: str


def task_name(config: ml_collections.ConfigDict) -> str:
  name = config.get("task", "mirnet")
  if name not in CLASSIFIERS + SEPARATORS:
    raise ValueError(f"unknown task {name!r}; one of {', '.join(CLASSIFIERS + SEPARATORS)}")
  return name


def build_model(config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
  m, name = config.model, task_name(config)
  dtype = jnp.dtype(m.dtype)
  if name == "mirnet":
    return mirnet.MIRNet(
        num_classes=num_classes, num_speakers=config.data.num_speakers,
        encoder_channels=tuple(m.encoder_channels), encoder_kernels=tuple(m.encoder_kernels),
        encoder_norm=m.encoder_norm, input_norm=m.input_norm, attention_dim=m.attention_dim,
        attention_out_dim=m.attention_out_dim, resnet_widths=tuple(m.resnet_widths),
        resnet_blocks=tuple(m.resnet_blocks), resnet_stem_kernel=m.resnet_stem_kernel,
        resnet_stem_stride=m.resnet_stem_stride, resnet_stem_pool=m.resnet_stem_pool,
        embedding_dim=m.embedding_dim, dtype=dtype)
  if name == "speaker":
    return speaker.SpeakerNet(
        num_classes=num_classes, resnet_widths=tuple(m.resnet_widths),
        resnet_blocks=tuple(m.resnet_blocks), resnet_stem_kernel=m.resnet_stem_kernel,
        resnet_stem_stride=m.resnet_stem_stride, resnet_stem_pool=m.resnet_stem_pool,
        embedding_dim=m.embedding_dim, dtype=dtype)
  return separation.MaskNet(
      num_masks=config.data.num_speakers if name == "upit" else 1,
      conv_channels=m.conv_channels, conv_out_channels=m.conv_out_channels,
      dilations=tuple(m.dilations), lstm_dim=m.lstm_dim, fc_dim=m.fc_dim, dtype=dtype)


def mixture_spec(config: ml_collections.ConfigDict) -> pipeline.MixtureSpec:
  name = task_name(config)
  return pipeline.MixtureSpec(config.data.num_speakers, config.data.crop_frames,
                              config.data.gain_db_range,
                              return_sources=name in SEPARATORS,
                              return_references=name == "vf_enrolled")


def snr_improvement(estimates, references, mixture_magnitude):
  """Per source: SNR(estimate) - SNR(mixture) in dB, magnitudes `[B, N, T, F]`."""
  def snr(est):
    signal = jnp.sum(references ** 2, axis=(-2, -1))
    noise = jnp.sum((references - est) ** 2, axis=(-2, -1))
    return 10 * jnp.log10((signal + 1e-8) / (noise + 1e-8))
  return snr(estimates) - snr(mixture_magnitude[:, None])


class Task:
  """Model, batch layout, loss and metrics of `config.task`."""

  def __init__(self, config: ml_collections.ConfigDict, num_classes: int,
               conditioner: Conditioner | None = None):
    self.name = task_name(config)
    self.config = config
    self.num_classes = num_classes
    self.model = build_model(config, num_classes)
    self.spec = mixture_spec(config)
    needed = CONDITIONER_TASK.get(self.name)
    if needed and (conditioner is None or conditioner.task != needed):
      raise ValueError(f"task {self.name} needs a trained {needed} model as its conditioner "
                       "(config.condition.workdir)")
    self.conditioner = conditioner
    self.is_separator = self.name in SEPARATORS
    self.best_metric = "val/snri" if self.is_separator else "val/accuracy"

  # --------------------------------------------------------------------- batches

  @property
  def input_keys(self) -> tuple[str, ...]:
    keys = ("mixture", "sources") if self.is_separator else ("mixture", "labels")
    return keys + (("references",) if self.spec.return_references else ())

  def abstract_batch(self, batch_size: int, sharding=None) -> dict:
    t, n = self.spec.crop_frames, self.spec.num_speakers
    stft = lambda *lead: jax.ShapeDtypeStruct(lead + (t, features.NUM_BINS, 2),
                                              features.STORAGE_DTYPE, sharding=sharding)
    shapes = dict(mixture=stft(batch_size),
                  labels=jax.ShapeDtypeStruct((batch_size, n), jnp.int32, sharding=sharding),
                  sources=stft(batch_size, n), references=stft(batch_size, n))
    return {k: shapes[k] for k in self.input_keys}

  def init_variables(self, rng):
    batch = {k: jnp.zeros(v.shape, v.dtype) for k, v in self.abstract_batch(1).items()}
    if self.name in ("vf_mirnet", "vf_enrolled"):
      embedding = jnp.zeros((1, self.conditioner.embedding_dim), jnp.float32)
      return self.model.init(rng, batch["mixture"], embedding, train=False)
    return self.model.init(rng, batch["mixture"], train=False)

  # --------------------------------------------------------------------- forward

  def frozen_variables(self):
    return {} if self.conditioner is None else self.conditioner.variables

  def conditioning(self, frozen, mixture, references=None):
    """The `[B, N, E]` embeddings a VoiceFilter is conditioned on (None for uPIT)."""
    if self.name == "vf_mirnet":  # every slot of the mixture's own MIRNet embeddings
      embeddings = self.conditioner.model.apply(frozen, mixture, train=False)["embeddings"]
    elif self.name == "vf_enrolled":  # one clean reference utterance per source
      b, n = references.shape[:2]
      folded = references.reshape((b * n,) + references.shape[2:])
      embeddings = self.conditioner.model.apply(frozen, folded, train=False)["embeddings"]
      embeddings = embeddings[:, 0].reshape(b, n, -1)
    else:
      return None
    return jax.lax.stop_gradient(embeddings)

  def masks(self, variables, mixture, embeddings=None, train=False):
    """Masks `[B, N, T, F]` (and BatchNorm updates when training) for `[B, T, F, 2]`
    mixtures; a VoiceFilter runs once per (mixture, embedding `[B, N, E]`)."""
    kwargs = dict(train=True, mutable=["batch_stats"]) if train else dict(train=False)
    if embeddings is None:
      out = self.model.apply(variables, mixture, **kwargs)
    else:
      b, n = embeddings.shape[:2]
      # Fold the N embeddings into the batch, each with its own copy of the mixture.
      out = self.model.apply(variables, jnp.repeat(mixture, n, axis=0),
                             embeddings.reshape(b * n, -1), **kwargs)
    masks, updates = out if train else (out, None)
    if embeddings is not None:  # [B*N, 1, T, F] -> [B, N, T, F]
      masks = masks[:, 0].reshape((b, n) + masks.shape[2:])
    return masks, updates

  def loss(self, params, batch_stats, batch, frozen, train: bool):
    """(mean loss, per-example metrics {name: [B]}, new batch_stats)."""
    variables = {"params": params, "batch_stats": batch_stats}
    if not self.is_separator:
      if train:
        out, updates = self.model.apply(variables, batch["mixture"], train=True,
                                        mutable=["batch_stats"])
      else:
        out, updates = self.model.apply(variables, batch["mixture"], train=False), None
      result = losses.permutation_min_ce(out["logits"], batch["labels"])
      per_example = dict(loss=result["loss"], accuracy=result["accuracy"])
    else:
      mixture = batch["mixture"]
      masks, updates = self.masks(
          variables, mixture, self.conditioning(frozen, mixture, batch.get("references")),
          train)
      mixture_magnitude = losses.magnitude(mixture)
      estimates = masks * mixture_magnitude[:, None]
      references = losses.magnitude(batch["sources"])
      if self.name == "vf_enrolled":  # output i is for reference i's speaker
        mse = losses.pairwise_compressed_mse(estimates, references)
        loss = jnp.mean(jnp.diagonal(mse, axis1=1, axis2=2), axis=-1)
        permutation = jnp.broadcast_to(jnp.arange(mse.shape[1]), mse.shape[:2])
      else:
        result = losses.permutation_min_mse(estimates, references)
        loss, permutation = result["loss"], result["permutation"]
      assigned = jnp.take_along_axis(references, permutation[:, :, None, None], axis=1)
      snri = snr_improvement(estimates, assigned, mixture_magnitude)
      per_example = dict(loss=loss, snri=snri.mean(axis=-1))
    new_stats = updates["batch_stats"] if updates is not None else batch_stats
    return per_example["loss"].mean(), per_example, new_stats
