r"""The three separators of the paper's Table 2 (Section 4.2): one config, two arguments.

  python -m mirnet_jax.main --config=configs/separation.py:vf_mirnet,demo --workdir=...

The argument is `SYSTEM[,SIZE]`: SYSTEM is `vf_mirnet` (VoiceFilter conditioned on
MIRNet's slot embeddings of the mixture itself), `vf_enrolled` (conditioned on the speaker
model's embedding of an enrolment utterance; configs/speaker.py) or `upit` (no
conditioning, one mask per speaker); SIZE is `paper` (the default: VoiceFilter's Table 1
widths), `demo` (a 2-core CPU learns the demo corpus in a few minutes) or `tiny` (tests).
`config.condition.workdir` names the trained model a VoiceFilter is conditioned on.

Expected result (demo corpus, 300 mixtures of unseen speakers): SDRi about 3.5 dB (enrolled),
3.6 dB (vf_mirnet), 3.0 dB (upit).
"""

import ml_collections

from mirnet_jax.configs import common
from mirnet_jax.configs import default

# uPIT is "the same BLSTM structure while doubling the dimension of the fully-connected
# layer and output" (the output: one mask per speaker, tasks.UPIT).
FC_SCALE = {"vf_mirnet": 1, "vf_enrolled": 1, "upit": 2}
SYSTEMS = tuple(FC_SCALE)
# The trained model each VoiceFilter is conditioned on, by size.
CONDITIONERS = {"paper": {"vf_mirnet": "runs/librispeech/mirnet",
                          "vf_enrolled": "runs/librispeech/speaker"},
                "demo": {"vf_mirnet": "runs/demo/workdir", "vf_enrolled": "runs/demo/speaker"},
                "tiny": {}}


def get_config(arg: str = "vf_mirnet") -> ml_collections.ConfigDict:
  system, size = (arg.split(",") + ["paper"])[:2]
  if system not in SYSTEMS:
    raise ValueError(f"unknown separator {system!r}: one of {', '.join(SYSTEMS)}")
  common.size_arg(size)
  c = default.get_config()
  c.task = system
  # The fields of models.separation.MaskNet.
  c.model = ml_collections.ConfigDict(dict(
      conv_channels=64, conv_out_channels=8, dilations=(1, 2, 4, 8, 16), lstm_dim=400,
      fc_dim=600, dtype="float32"))
  c.condition = ml_collections.ConfigDict(dict(
      workdir=CONDITIONERS[size].get(system, "")))
  c.batch_size = 32
  c.num_train_steps = 100_000
  c.eval_every = 2000
  c.data.val_hours = 1.0
  if size == "demo":
    common.demo_size(c, val_mixtures=128)
    # Only the 1x7 and 7x1 convolutions, 8 channels: on a CPU, XLA runs few-channel 2-D
    # convolutions far below its matmul rate (measured: the two dilated 5x5 layers of
    # 4 channels took 3/4 of a step), and the BLSTM sees the whole crop anyway.
    c.model.update(dict(conv_channels=8, conv_out_channels=2, dilations=(), lstm_dim=64,
                        fc_dim=128))
    c.optim.learning_rate = 3e-3
    c.optim.warmup_steps = 50
    c.batch_size = 8
    # Up to 2,400 steps, stopping once 3 validations in a row bring no better SNRi: at
    # 600 steps (the earlier demo) they were still far from it (docs/results.md).
    c.num_train_steps = 2400
    c.eval_every = 200
    c.early_stopping_evals = 3
  elif size == "tiny":
    common.tiny_size(c)
    c.model.update(dict(conv_channels=4, conv_out_channels=1, dilations=(), lstm_dim=8,
                        fc_dim=8))
  c.model.fc_dim *= FC_SCALE[system]
  return c
