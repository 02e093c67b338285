"""The systems this project trains, one class each, in one registry.

`config.task` names one of REGISTRY; the training loop (train.py), inference
(inference.py) and the evaluations ask the task object, never the name:
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

A model is built from `config.model` as it stands: its fields are the model class's
(nested blocks such as `config.model.resnet` are a submodule's fields).
"""

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from mirnet_jax import errors
from mirnet_jax import features
from mirnet_jax import losses
from mirnet_jax.data import pipeline
from mirnet_jax.models import mirnet
from mirnet_jax.models import separation
from mirnet_jax.models import speaker


def model_fields(block) -> dict:
  """A config block as module keyword arguments: nested blocks as dicts, lists (as a
  config.json gives them back) as tuples, `dtype` as a dtype."""
  def frozen(value):
    if isinstance(value, (dict, ml_collections.ConfigDict)):
      return {k: frozen(v) for k, v in dict(value).items()}
    return tuple(frozen(v) for v in value) if isinstance(value, (list, tuple)) else value
  fields = frozen(block)
  if "dtype" in fields:
    fields["dtype"] = jnp.dtype(fields["dtype"])
  return fields


class Task:
  """What one trained system is: its model, batches, loss, validation metric, and the
  frozen model it is conditioned on (`conditioner`: that model's Task, or None)."""
  name: ClassVar[str]
  title: ClassVar[str]  # as the paper's tables name it
  is_separator: ClassVar[bool] = False
  best_metric: ClassVar[str] = "val/accuracy"  # higher is better; selects the checkpoint
  # The task of the frozen embedding model this one is conditioned on, if any.
  conditioner_task: ClassVar[str | None] = None
  # Whether the conditioning embeddings come from enrolment utterances of the target
  # speakers (then output i is enrolled speaker i's) rather than from the mixture.
  enrolled: ClassVar[bool] = False
  # Whether the model reads SpecAugment masks (config.data.augment) in training.
  takes_input_masks: ClassVar[bool] = False

  def __init__(self, config: ml_collections.ConfigDict, num_classes: int,
               conditioner: "Task | None" = None):
    if self.conditioner_task and (conditioner is None
                                  or conditioner.name != self.conditioner_task):
      got = "none" if conditioner is None else f"a {conditioner.name} model"
      raise errors.UserError(f"task {self.name} is conditioned on a trained "
                             f"{self.conditioner_task} model (config.condition.workdir), "
                             f"not {got}")
    self.config = config
    self.num_classes = num_classes
    self.conditioner = conditioner
    self.model = self.build_model(model_fields(config.model))
    # Validation and evaluation mixtures; training's add config.data.augment.
    self.spec = pipeline.MixtureSpec(config.data.num_speakers, config.data.crop_frames,
                                     config.data.gain_db_range,
                                     return_sources=self.is_separator,
                                     return_references=self.enrolled)
    self.train_spec = self._train_spec(config.data.get("augment"))

  def _train_spec(self, augment) -> pipeline.MixtureSpec:
    """The training mixtures' spec: `config.data.augment`'s wider level range and
    augmentation (a config without the block, as runs before it, trains without)."""
    if augment is None:
      return self.spec
    fields = dict(augment)
    extra_db = float(fields.pop("extra_gain_db_range", 0.0))
    if extra_db < 0:
      raise errors.UserError(f"config.data.augment.extra_gain_db_range must be >= 0, got "
                             f"{extra_db}")
    try:
      augmentation = pipeline.Augmentation(**fields)
    except (TypeError, ValueError) as e:
      raise errors.UserError(f"config.data.augment: {e}") from None
    if augmentation.masks and not self.takes_input_masks:
      raise errors.UserError(f"config.data.augment: task {self.name} takes no time or "
                               "frequency masks (time_masks, freq_masks must be 0)")
    return dataclasses.replace(self.spec, gain_db_range=self.spec.gain_db_range + extra_db,
                               augment=augmentation)

  def build_model(self, fields: dict) -> nn.Module:
    raise NotImplementedError

  @property
  def num_speakers(self) -> int:
    return self.spec.num_speakers

  @property
  def embedding_dim(self) -> int:
    return int(self.config.model.embedding_dim)

  # --------------------------------------------------------------------- batches

  @property
  def input_keys(self) -> tuple[str, ...]:
    """The model inputs of a validation or evaluation batch."""
    keys = ("mixture", "sources") if self.is_separator else ("mixture", "labels")
    return keys + (("references",) if self.enrolled else ())

  @property
  def train_input_keys(self) -> tuple[str, ...]:
    """The model inputs of a training batch: those, and the augmentation's masks."""
    masks = ("time_keep", "freq_keep") if self.train_spec.augment.masks else ()
    return self.input_keys + masks

  def abstract_batch(self, batch_size: int, sharding=None) -> dict:
    """The shapes of a training batch (what the compiled train step takes)."""
    t, n = self.spec.crop_frames, self.spec.num_speakers
    struct = lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)
    stft = lambda *lead: struct(lead + (t, features.NUM_BINS, 2), features.STORAGE_DTYPE)
    shapes = dict(mixture=stft(batch_size), labels=struct((batch_size, n), jnp.int32),
                  sources=stft(batch_size, n), references=stft(batch_size, n),
                  time_keep=struct((batch_size, t), jnp.bool_),
                  freq_keep=struct((batch_size, features.NUM_BINS), jnp.bool_))
    return {k: shapes[k] for k in self.train_input_keys}

  def init_variables(self, rng):
    batch = {k: jnp.zeros(v.shape, v.dtype) for k, v in self.abstract_batch(1).items()}
    return self.model.init(rng, batch["mixture"], train=False)

  def frozen_shapes(self):
    """Shapes of the conditioner's variables (`{}` when unconditioned)."""
    if self.conditioner is None:
      return {}
    return jax.eval_shape(self.conditioner.init_variables, jax.random.key(0))

  # --------------------------------------------------------------------- forward

  def loss(self, params, batch_stats, batch, frozen, train: bool):
    """(mean loss, per-example metrics {name: [B]}, new batch_stats); `frozen`: the
    conditioner's variables."""
    raise NotImplementedError


class Classifier(Task):
  """An embedding model trained through a speaker classifier (permutation-min CE)."""
  takes_input_masks = True

  def loss(self, params, batch_stats, batch, frozen, train: bool):
    del frozen
    variables = {"params": params, "batch_stats": batch_stats}
    if train:
      masks = {k: batch[k] for k in ("time_keep", "freq_keep") if k in batch}
      out, updates = self.model.apply(variables, batch["mixture"], train=True,
                                      mutable=["batch_stats"], **masks)
      batch_stats = updates["batch_stats"]
    else:
      out = self.model.apply(variables, batch["mixture"], train=False)
    result = losses.permutation_min_ce(out["logits"], batch["labels"])
    per_example = dict(loss=result["loss"], accuracy=result["accuracy"])
    return per_example["loss"].mean(), per_example, batch_stats


class MIRNetTask(Classifier):
  name = "mirnet"
  title = "MIRNet"

  def build_model(self, fields):
    return mirnet.MIRNet(num_classes=self.num_classes,
                         num_speakers=self.config.data.num_speakers, **fields)


class SpeakerTask(Classifier):
  name = "speaker"
  title = "speaker model (ResNet-18 + TAP)"

  def build_model(self, fields):
    return speaker.SpeakerNet(num_classes=self.num_classes, **fields)


def snr_improvement(estimates, references, mixture_magnitude):
  """Per source: SNR(estimate) - SNR(mixture) in dB, magnitudes `[B, N, T, F]`."""
  def snr(est):
    signal = jnp.sum(references ** 2, axis=(-2, -1))
    noise = jnp.sum((references - est) ** 2, axis=(-2, -1))
    return 10 * jnp.log10((signal + 1e-8) / (noise + 1e-8))
  return snr(estimates) - snr(mixture_magnitude[:, None])


class Separator(Task):
  """A mask network trained on the compressed-magnitude MSE of each source."""
  is_separator = True
  best_metric = "val/snri"
  num_masks: ClassVar[int | None] = 1  # None: one per speaker

  def build_model(self, fields):
    return separation.MaskNet(num_masks=self.num_masks or self.config.data.num_speakers,
                              **fields)

  def init_variables(self, rng):
    if self.conditioner is None:
      return super().init_variables(rng)
    mixture = jnp.zeros(self.abstract_batch(1)["mixture"].shape, features.STORAGE_DTYPE)
    embedding = jnp.zeros((1, self.conditioner.embedding_dim), jnp.float32)
    return self.model.init(rng, mixture, embedding, train=False)

  def conditioning(self, frozen, mixture, references=None):
    """The `[B, N, E]` embeddings the mask network is conditioned on (None: none)."""
    del frozen, mixture, references
    return None

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

  def assignment(self, estimates, references):
    """(loss [B], permutation [B, N]: the reference each output is scored against)."""
    result = losses.permutation_min_mse(estimates, references)
    return result["loss"], result["permutation"]

  def loss(self, params, batch_stats, batch, frozen, train: bool):
    variables = {"params": params, "batch_stats": batch_stats}
    mixture = batch["mixture"]
    masks, updates = self.masks(
        variables, mixture, self.conditioning(frozen, mixture, batch.get("references")),
        train)
    mixture_magnitude = losses.magnitude(mixture)
    estimates = masks * mixture_magnitude[:, None]
    references = losses.magnitude(batch["sources"])
    loss, permutation = self.assignment(estimates, references)
    assigned = jnp.take_along_axis(references, permutation[:, :, None, None], axis=1)
    snri = snr_improvement(estimates, assigned, mixture_magnitude)
    per_example = dict(loss=loss, snri=snri.mean(axis=-1))
    new_stats = updates["batch_stats"] if updates is not None else batch_stats
    return per_example["loss"].mean(), per_example, new_stats


class VoiceFilterMIRNet(Separator):
  name = "vf_mirnet"
  title = "VoiceFilter + MIRNet (proposed)"
  conditioner_task = "mirnet"

  def conditioning(self, frozen, mixture, references=None):
    # Every slot of the mixture's own MIRNet embeddings.
    embeddings = self.conditioner.model.apply(frozen, mixture, train=False)["embeddings"]
    return jax.lax.stop_gradient(embeddings)


class VoiceFilterEnrolled(Separator):
  name = "vf_enrolled"
  title = "VoiceFilter + enrolled reference (speaker model)"
  conditioner_task = "speaker"
  enrolled = True

  def conditioning(self, frozen, mixture, references=None):
    # One clean reference utterance per source.
    b, n = references.shape[:2]
    folded = references.reshape((b * n,) + references.shape[2:])
    embeddings = self.conditioner.model.apply(frozen, folded, train=False)["embeddings"]
    return jax.lax.stop_gradient(embeddings[:, 0].reshape(b, n, -1))

  def assignment(self, estimates, references):
    # Output i is for reference i's speaker.
    mse = losses.pairwise_compressed_mse(estimates, references)
    loss = jnp.mean(jnp.diagonal(mse, axis1=1, axis2=2), axis=-1)
    return loss, jnp.broadcast_to(jnp.arange(mse.shape[1]), mse.shape[:2])


class UPIT(Separator):
  name = "upit"
  title = "uPIT (no conditioning)"
  num_masks = None


# In the order of the paper's tables (Table 2: enrolled, proposed, uPIT).
REGISTRY: dict[str, type[Task]] = {
    t.name: t for t in (MIRNetTask, SpeakerTask, VoiceFilterEnrolled, VoiceFilterMIRNet,
                        UPIT)}


def get(config: ml_collections.ConfigDict) -> type[Task]:
  """The Task class `config.task` names (errors.UserError if none)."""
  name = config.get("task", "mirnet")
  if name not in REGISTRY:
    raise errors.UserError(f"unknown task {name!r} (config.task); one of {', '.join(REGISTRY)}")
  return REGISTRY[name]


def create(config: ml_collections.ConfigDict, num_classes: int,
           conditioner: Task | None = None) -> Task:
  """The Task of `config` for `num_classes` training speakers."""
  return get(config)(config, num_classes, conditioner)

