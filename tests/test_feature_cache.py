"""data.feature_cache: same features as computed directly, keys, damage, parallel build."""

import wave

import numpy as np
import pytest

from data import audio
from data import datasets
from data import feature_cache


def _wav(path, samples, rate=8000):
  with wave.open(str(path), "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(rate)
    w.writeframes((np.clip(samples, -1, 0.999) * 32768).astype("<i2").tobytes())
  return path


@pytest.fixture
def clips(tmp_path, rng):
  folder = tmp_path / "wav"
  folder.mkdir()
  paths = [_wav(folder / f"{i}_a_{i}.wav", 0.3 * rng.normal(size=1200 + 100 * i),
                rate=16000 if i == 4 else 8000)
           for i in range(5)]
  (folder / "bad.wav").write_bytes(b"not a wav")
  return paths[:3] + [folder / "bad.wav"] + paths[3:]


def test_cached_features_equal_direct_ones_and_are_reused(clips, tmp_path, capsys):
  direct, keep_d, skipped_d = audio.features(clips, 12, "logmel32", 8000)
  cache = feature_cache.FeatureCache(tmp_path / "cache", workers=1, shard_size=2)
  x, keep, skipped = cache.features(clips, "logmel32", 12, 8000, dataset="t",
                                    split="train")
  # bad.wav unreadable, the last clip at another rate: both skipped, by reason.
  assert keep == keep_d == [0, 1, 2, 4]
  assert skipped == skipped_d
  assert {k: len(v) for k, v in skipped.items()} == {"unreadable": 1, "empty": 0,
                                                     "sample_rate": 1}
  np.testing.assert_array_equal(x, np.stack(direct))
  assert cache.last_stats["computed_shards"] == 3
  printed = capsys.readouterr().out
  assert "[feature_cache] computing 3 of 3 shard(s) (6 files)" in printed
  assert "[feature_cache] 6/6 files" in printed
  x2, keep2, skipped2 = cache.features(clips, "logmel32", 12, 8000, dataset="t",
                                       split="train")
  assert cache.last_stats["computed_shards"] == 0 and keep2 == keep and skipped2 == skipped
  np.testing.assert_array_equal(x2, x)


def test_a_changed_setting_or_file_list_makes_a_new_key(clips, tmp_path):
  cache = feature_cache.FeatureCache(tmp_path / "cache", workers=1)

  def entry(paths=clips, frontend="logmel32", frames=12, rate=8000, split="train"):
    return cache.entry(paths, frontend, frames, rate, dataset="t", split=split)[0]

  base = entry()
  assert entry() == base
  assert entry(frames=13) != base
  assert entry(frontend="micro32") != base
  assert entry(rate=16000) != base
  assert entry(split="val") != base
  assert entry(paths=clips[:-1]) != base
  _wav(clips[0], np.zeros(1500))  # same name, new content (size/mtime)
  assert entry() != base


def test_a_damaged_shard_is_detected_and_rebuilt(clips, tmp_path, capsys):
  cache = feature_cache.FeatureCache(tmp_path / "cache", workers=1, shard_size=2)
  x, _, _ = cache.features(clips, "logmel32", 12, 8000, dataset="t", split="train")
  folder = cache.last_stats["folder"]
  shard = sorted((tmp_path / "cache").glob("*/shard-00001.npz"))[0]
  data = bytearray(shard.read_bytes())
  data[len(data) // 2] ^= 0xFF
  shard.write_bytes(bytes(data))
  (shard.parent / "mine.txt").write_text("a user's file")
  x2, _, _ = cache.features(clips, "logmel32", 12, 8000, dataset="t", split="train")
  assert cache.last_stats["computed_shards"] == 1 and cache.last_stats["folder"] == folder
  assert "1 damaged shard(s)" in capsys.readouterr().out
  np.testing.assert_array_equal(x2, x)
  assert (shard.parent / "mine.txt").read_text() == "a user's file"


def test_parallel_build_equals_one_process(clips, tmp_path):
  one = feature_cache.FeatureCache(tmp_path / "a", workers=1, shard_size=2)
  two = feature_cache.FeatureCache(tmp_path / "b", workers=2, shard_size=2)
  x1, k1, s1 = one.features(clips, "logmel32", 12, 8000, dataset="t", split="train")
  x2, k2, s2 = two.features(clips, "logmel32", 12, 8000, dataset="t", split="train")
  assert two.last_stats["computed_shards"] == 3
  assert k1 == k2 and s1 == s2
  np.testing.assert_array_equal(x1, x2)


def test_fsdd_loader_through_the_cache(tmp_path, rng):
  folder = tmp_path / "fsdd"
  folder.mkdir()
  for digit in (0, 1):
    for index in (0, 5, 6, 7, 8, 9, 10, 11):
      _wav(folder / f"{digit}_a_{index}.wav", 0.3 * rng.normal(size=1000 + 50 * index))
  plain = datasets.load_dataset("fsdd", folder, max_frames=12)
  cached = datasets.load_dataset("fsdd", folder, max_frames=12,
                                 feature_cache=tmp_path / "cache")
  assert len(list((tmp_path / "cache").glob("fsdd-all-logmel32-*/shard-*.npz"))) == 1
  again = datasets.load_dataset("fsdd", folder, max_frames=12,
                                feature_cache=tmp_path / "cache")
  for ds in (cached, again):
    np.testing.assert_array_equal(plain.x_train, ds.x_train)
    np.testing.assert_array_equal(plain.y_train, ds.y_train)
    np.testing.assert_array_equal(plain.x_test, ds.x_test)
    assert ds.meta["skipped_files"] == plain.meta["skipped_files"]


def test_a_folder_not_made_by_the_cache_is_refused_untouched(clips, tmp_path):
  cache = feature_cache.FeatureCache(tmp_path / "cache", workers=1)
  folder, _ = cache.entry(clips, "logmel32", 12, 8000, dataset="t", split="train")
  folder.mkdir(parents=True)
  (folder / "shard-00000.npz").write_text("a user's file of that name")
  with pytest.raises(ValueError, match="is not a cache entry of these settings"):
    cache.features(clips, "logmel32", 12, 8000, dataset="t", split="train")
  assert (folder / "shard-00000.npz").read_text() == "a user's file of that name"
  assert sorted(p.name for p in folder.iterdir()) == ["shard-00000.npz"]


def test_an_entry_another_process_is_starting_is_not_refused(clips, tmp_path):
  cache = feature_cache.FeatureCache(tmp_path / "cache", workers=1)
  folder, _ = cache.entry(clips, "logmel32", 12, 8000, dataset="t", split="train")
  folder.mkdir(parents=True)
  (folder / ".key.json.k3j2x.json").write_text("{")  # its key.json, half written
  x, _, _ = cache.features(clips, "logmel32", 12, 8000, dataset="t", split="train")
  assert len(x) == 4 and (folder / "key.json").is_file()


def test_bad_arguments(tmp_path):
  (tmp_path / "file").write_text("x")
  with pytest.raises(ValueError, match="exists and is not a folder"):
    feature_cache.FeatureCache(tmp_path / "file")
  with pytest.raises(ValueError, match="workers must be a positive int"):
    feature_cache.FeatureCache(tmp_path / "c", workers=0)
  assert feature_cache.resolve("none") is None
