r"""Shared settings of the speaker model and the three separators (paper Section 4.2).

Each system has its own file, which takes a size argument after a colon:
  python -m mirnet_jax.main --config=configs/vf_mirnet.py:demo --workdir=...
Sizes: `paper` (the default: VoiceFilter's Table 1 widths), `demo` (a 2-core CPU learns
the demo corpus in a few minutes) and `tiny` (tests; the numbers mean nothing).

Expected result (demo corpus, `bash launch/demo.sh`, 100 mixtures of 4 s of unseen
speakers): SDRi 1.98 dB (vf_enrolled), 2.15 dB (vf_mirnet), 2.17 dB (upit); the speaker
model reaches 37.9% validation accuracy (400 speakers, clean 2 s segments; 51.6% in a run
before the mesh's Auto axes: it is sensitive to small numeric changes).

Separator data: 2-speaker mixtures of the prepared shards, as for MIRNet, with the
per-source spectrograms as targets (the paper trains them on WSJ0-2mix: prepare it with
`python -m mirnet_jax.prepare --source=wsj0-2mix:/data/wsj0-2mix/wav16k/max
--train_subsets=tr --test_subsets=tt`).
"""

import ml_collections

from configs import default
from configs import demo as mirnet_demo
from configs import tiny

SIZES = ("paper", "demo", "tiny")


def _check_size(size: str):
  if size not in SIZES:
    raise ValueError(f"unknown size {size!r}: one of {', '.join(SIZES)}")


def separator(task: str, size: str = "paper") -> ml_collections.ConfigDict:
  """VoiceFilter (task vf_mirnet or vf_enrolled) or uPIT (task upit)."""
  _check_size(size)
  c = default.get_config()
  c.task = task
  c.model = ml_collections.ConfigDict(dict(
      conv_channels=64, conv_out_channels=8, dilations=(1, 2, 4, 8, 16), lstm_dim=400,
      fc_dim=600, dtype="float32"))
  # The embedding model the separator is conditioned on (frozen): a MIRNet workdir for
  # vf_mirnet, a speaker-model workdir for vf_enrolled; unused by upit.
  c.condition = ml_collections.ConfigDict(dict(workdir={
      "vf_mirnet": "runs/librispeech/mirnet", "vf_enrolled": "runs/librispeech/speaker"
  }.get(task, "")))
  c.batch_size = 32
  c.num_train_steps = 100_000
  c.eval_every = 2000
  c.data.val_hours = 1.0
  if size == "demo":
    c.data.shards = "runs/demo/shards"
    c.condition.workdir = {"vf_mirnet": "runs/demo/workdir",
                           "vf_enrolled": "runs/demo/speaker"}.get(task, "")
    c.data.crop_frames = 200
    c.data.train_hours = 1.0
    c.data.val_hours = 128 * 2.0 / 3600  # 128 mixtures of 2 s
    c.data.workers = 0
    c.data.read_threads = 2
    # Only the 1x7 and 7x1 convolutions, 8 channels: on a CPU, XLA runs few-channel 2-D
    # convolutions far below its matmul rate (measured: the two dilated 5x5 layers of
    # 4 channels took 3/4 of a step), and the BLSTM sees the whole crop anyway.
    c.model.update(dict(conv_channels=8, conv_out_channels=2, dilations=(), lstm_dim=64,
                        fc_dim=128))
    c.optim.learning_rate = 3e-3
    c.optim.warmup_steps = 50
    c.batch_size = 8
    c.num_train_steps = 600
    c.log_every = 50
    c.eval_every = 200
    c.keep_checkpoints = 2
  elif size == "tiny":
    _tiny(c)
    c.model.update(dict(conv_channels=4, conv_out_channels=1, dilations=(), lstm_dim=8,
                        fc_dim=8))
  if task == "upit":  # "doubling the dimension of the fully-connected layer and output"
    c.model.fc_dim *= 2
  return c


def speaker_model(size: str = "paper") -> ml_collections.ConfigDict:
  """The enrolled baseline's speaker model: ResNet-18 + TAP on clean segments."""
  _check_size(size)
  c = default.get_config()
  c.task = "speaker"
  c.data.num_speakers = 1
  m = c.model
  c.model = ml_collections.ConfigDict({k: m[k] for k in (
      "resnet_widths", "resnet_blocks", "resnet_stem_kernel", "resnet_stem_stride",
      "resnet_stem_pool", "embedding_dim", "dtype")})
  if size == "demo":
    d = mirnet_demo.get_config()
    c.data = d.data
    c.data.num_speakers = 1
    c.optim = d.optim
    c.model.update({k: d.model[k] for k in c.model})
    c.batch_size = 32
    # 400 demo speakers with 6 training utterances each: 900 steps left it at 27%
    # validation accuracy, too weak a reference for the enrolled baseline.
    c.num_train_steps = 1800
    c.log_every = 50
    c.eval_every = 300
    c.keep_checkpoints = 2
  elif size == "tiny":
    _tiny(c)
    c.model.update(dict(resnet_widths=(4, 8, 8, 8), resnet_blocks=(1, 1, 1, 1),
                        resnet_stem_kernel=3, embedding_dim=16))
  return c


def _tiny(c: ml_collections.ConfigDict):
  """configs/tiny.py's data, optimiser and schedule (not its model), keeping the number of
  speakers of `c`."""
  t = tiny.get_config()
  t.data.num_speakers = c.data.num_speakers
  c.data, c.optim = t.data, t.optim
  for key in ("batch_size", "num_train_steps", "log_every", "eval_every",
              "keep_checkpoints"):
    c[key] = t[key]
