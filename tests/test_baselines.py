"""The low-rank LSTM baseline against a NumPy LSTM with explicit weights."""

import numpy as np

from tf_fastgrnn import baselines
from tf_fastgrnn._keras import keras


def sig(v):
  return 1 / (1 + np.exp(-v))


def test_low_rank_lstm_matches_numpy(rng):
  b, t, d, h = 2, 3, 4, 5
  cell = baselines.LowRankLSTMCell(h, w_rank=2, u_rank=3)
  layer = keras.layers.RNN(cell, return_sequences=True)
  x = rng.normal(0, 1, (b, t, d))
  layer(x.astype(np.float32))
  w = {v.name.split("/")[-1].split(":")[0]: rng.normal(0, 0.5, v.shape) for v in cell.weights}
  for v in cell.weights:
    v.assign(w[v.name.split("/")[-1].split(":")[0]].astype(np.float32))
  hh, cc, want = np.zeros((b, h)), np.zeros((b, h)), []
  for step in range(t):
    z = x[:, step] @ w["W1"] @ w["W2"] + hh @ w["U1"] @ w["U2"] + w["bias"]
    i, f, g, o = np.split(z, 4, -1)
    cc = sig(f) * cc + sig(i) * np.tanh(g)
    hh = sig(o) * np.tanh(cc)
    want.append(hh)
  np.testing.assert_allclose(layer(x.astype(np.float32)).numpy(), np.stack(want, 1),
                             atol=1e-5)


def test_config_round_trip_and_save(rng, tmp_path):
  model = keras.Sequential([keras.Input((3, 4)),
                            keras.layers.RNN(baselines.LowRankLSTMCell(5, 2, 3)),
                            keras.layers.Dense(2)])
  model.save(tmp_path / "m.keras")
  x = rng.normal(0, 1, (2, 3, 4)).astype(np.float32)
  loaded = keras.models.load_model(tmp_path / "m.keras")
  np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
